package scsstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
	"github.com/sessionmesh/sessionmesh/replication"
)

// ErrInvalidToken is returned by Commit for a token the store cannot hold:
// empty, longer than 256 bytes, or starting with the reserved prefix of sessionmesh's own records ("~").
// scs never generates one.
var ErrInvalidToken = errors.New("scsstore: invalid session token")

// The attributes of a session written by this package.
const (
	dataAttr   = "scs.data"   // scs's blob, as scs encoded it
	expiryAttr = "scs.expiry" // the expiry of the last commit, Unix nanoseconds, big-endian
)

// touchFraction sets how far a commit that changes no value must move the
// expiry before it is replicated: an eighth of the time the new expiry
// lies ahead.
const touchFraction = 8

// maxTokenLen is the longest token the store accepts as a session ID.
const maxTokenLen = 256

// Backend is what a Store needs from the session store.
// *replication.Store implements it.
type Backend interface {
	Get(ctx context.Context, id string) (replication.Session, bool, error)
	Save(ctx context.Context, id string, c replication.Changes) (replication.Version, error)
	Destroy(ctx context.Context, id string) error
	Scan(ctx context.Context, fn func(replication.Session) bool) error
}

var _ Backend = (*replication.Store)(nil)

// Store is an scs session store on a replicated session store. Assign it to
// scs.SessionManager.Store. Create one with New; change its fields before
// serving. It is safe for concurrent use.
type Store struct {
	// Backend holds the sessions. Set by New.
	Backend Backend

	// Codec must be the SessionManager's Codec: Commit decodes blobs with
	// it to tell a commit that changes no value (whose bytes may differ,
	// since gob writes maps in random order) from one that does. Default
	// scs.GobCodec{}, scs's default. A blob it cannot decode counts as
	// changed.
	Codec scs.Codec

	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

var (
	_ scs.Store            = (*Store)(nil)
	_ scs.CtxStore         = (*Store)(nil)
	_ scs.IterableStore    = (*Store)(nil)
	_ scs.IterableCtxStore = (*Store)(nil)
)

// New returns a Store that keeps scs's sessions in b, usually a
// *replication.Store.
func New(b Backend) *Store {
	return &Store{Backend: b, Codec: scs.GobCodec{}, Now: time.Now}
}

// validToken reports whether token can name a session in the store.
func validToken(token string) bool {
	return token != "" && len(token) <= maxTokenLen && !sessionid.Reserved(token)
}

// Find returns the blob of session token; see FindCtx.
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// FindCtx returns the blob of session token and true, or false when the
// session is unknown, expired or destroyed or the token is malformed. Errors
// are the store's failures only.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	if !validToken(token) {
		return nil, false, nil
	}
	sess, ok, err := s.Backend.Get(ctx, token)
	if err != nil {
		return nil, false, fmt.Errorf("scsstore: find session: %w", err)
	}
	if !ok {
		return nil, false, nil
	}
	b, ok := s.blob(sess, s.Now())
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(b), true, nil
}

// blob returns the blob of sess, unless sess was not written by this
// package or its expiry has passed.
func (s *Store) blob(sess replication.Session, now time.Time) ([]byte, bool) {
	b, ok := sess.Value(dataAttr)
	if !ok {
		return nil, false
	}
	if exp, ok := expiryOf(sess); ok && !now.Before(exp) {
		return nil, false
	}
	return b, true
}

// expiryOf returns the expiry stored with sess.
func expiryOf(sess replication.Session) (time.Time, bool) {
	b, ok := sess.Value(expiryAttr)
	if !ok || len(b) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))), true
}

func encodeExpiry(t time.Time) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
}

// Commit stores session token; see CommitCtx.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// CommitCtx stores blob b of session token until expiry and replicates it,
// returning once every live owner has it. A commit that changes no value is
// replicated only when it moved the expiry by at least an eighth of the
// time the expiry lies ahead (see the package documentation); an expiry in
// the past deletes the session. A commit to a session destroyed meanwhile is
// dropped, without error: the logout wins. It reads the stored session
// first, to compare: locally on a node that owns it, with one round trip to
// an owner otherwise.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	if !validToken(token) {
		return fmt.Errorf("scsstore: commit session: %w", ErrInvalidToken)
	}
	now := s.Now()
	if !expiry.After(now) {
		return s.DeleteCtx(ctx, token)
	}
	cur, found, err := s.Backend.Get(ctx, token)
	if err != nil {
		return fmt.Errorf("scsstore: commit session: %w", err)
	}
	c := replication.Changes{
		Set:       map[string][]byte{},
		Lifetime:  expiry.Sub(now), // when the commit creates the session
		ExpiresAt: expiry,          // when it exists: deadlines only move forward
	}
	var (
		old     []byte
		oldExp  time.Time
		hasData bool
	)
	if found {
		old, hasData = cur.Value(dataAttr)
		oldExp, _ = expiryOf(cur)
	}
	if !hasData || !s.sameValues(old, b) {
		c.Set[dataAttr] = bytes.Clone(b)
	}
	if len(c.Set) > 0 && !expiry.Equal(oldExp) || moved(oldExp, expiry, now) {
		c.Set[expiryAttr] = encodeExpiry(expiry)
	}
	if len(c.Set) == 0 {
		return nil // only the expiry moved, by less than a step
	}
	if _, err := s.Backend.Save(ctx, token, c); err != nil {
		if errors.Is(err, replication.ErrSessionEnded) {
			return nil
		}
		return fmt.Errorf("scsstore: commit session: %w", err)
	}
	return nil
}

// moved reports whether a commit at now that moves the expiry from old to
// new must be replicated though it changes no value: when there is no old
// expiry, when it moves back, or forward by at least 1/touchFraction of the
// time the new expiry lies ahead.
func moved(old, new, now time.Time) bool {
	switch {
	case old.IsZero(), new.Before(old):
		return true
	default:
		return new.Sub(old) >= new.Sub(now)/touchFraction
	}
}

// sameValues reports whether blobs a and b hold the same deadline and
// values.
func (s *Store) sameValues(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if len(a) != len(b) || s.Codec == nil {
		// gob's output for equal values differs only in the order of map
		// entries, not in length.
		return false
	}
	da, va, err := s.Codec.Decode(a)
	if err != nil {
		return false
	}
	db, vb, err := s.Codec.Decode(b)
	if err != nil {
		return false
	}
	return da.Equal(db) && reflect.DeepEqual(va, vb)
}

// Delete destroys session token; see DeleteCtx.
func (s *Store) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

// DeleteCtx destroys session token on every node. Its tombstone outlives
// any late commit, so the session never comes back. Deleting an unknown or
// malformed token does nothing.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	if !validToken(token) {
		return nil
	}
	if err := s.Backend.Destroy(ctx, token); err != nil {
		return fmt.Errorf("scsstore: delete session: %w", err)
	}
	return nil
}

// All returns the live sessions of the cluster; see AllCtx.
func (s *Store) All() (map[string][]byte, error) {
	return s.AllCtx(context.Background())
}

// AllCtx returns the blob of every live session of the cluster by token
// (an empty map when there is none), reading the partitions this node does
// not hold from their owners. It skips sessionmesh's own records and the
// sessions not written through this package. The cost grows with the number
// of sessions in the cluster: it is meant for administration, not for
// requests.
func (s *Store) AllCtx(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	now := s.Now()
	err := s.Backend.Scan(ctx, func(sess replication.Session) bool {
		if !validToken(sess.ID()) {
			return true
		}
		if b, ok := s.blob(sess, now); ok {
			out[sess.ID()] = bytes.Clone(b)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("scsstore: list sessions: %w", err)
	}
	return out, nil
}
