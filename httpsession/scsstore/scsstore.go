package scsstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
	"github.com/sessionmesh/sessionmesh/replication"
)

var (
	// ErrInvalidToken is returned by Commit for a token the store cannot
	// hold: empty, longer than 256 bytes, or starting with the reserved
	// prefix of sessionmesh's own records ("~"). scs never generates one.
	ErrInvalidToken = errors.New("scsstore: invalid session token")

	// ErrAsync is returned by New for a backend that acknowledges writes
	// before every owner has them (replication.Async): scs's cookie
	// carries no version for the next request to wait for, so on another
	// node it could miss what this one committed.
	ErrAsync = errors.New("scsstore: asynchronous replication is not supported; use the default synchronous write concern")

	// ErrKeyTooLong is returned by Commit, with KeyCodec, for a key longer
	// than 1000 bytes.
	ErrKeyTooLong = errors.New("scsstore: session key too long")

	// ErrCookieUnchanged is returned by Commit, with KeepCookie, once the
	// session is stored, when the cookie scs would set next is the one the
	// browser holds already (same token, an expiry that moved by less than
	// a step): scs then hands it to its ErrorFunc instead of setting the
	// cookie, and ErrorFunc lets the response go out. It is not a failure.
	ErrCookieUnchanged = errors.New("scsstore: session stored; the browser's cookie needs no update")
)

// The attributes of a session written by this package.
const (
	dataAttr   = "scs.data"   // scs's blob, as scs encoded it (Codec other than KeyCodec)
	expiryAttr = "scs.expiry" // the expiry of the last commit, Unix nanoseconds, big-endian
	cookieAttr = "scs.cookie" // with KeepCookie: the expiry of the last cookie set, Unix nanoseconds, big-endian
	// With KeyCodec, each value in an attribute of its own, and scs's
	// deadline in another, instead of dataAttr.
	keyPrefix    = "scs.k."       // + the key: the value, gob-encoded on its own
	deadlineAttr = "scs.deadline" // scs's deadline, Unix nanoseconds, big-endian
)

// touchFraction sets how far a commit that changes no value must move the
// expiry before it is replicated: an eighth of the time the new expiry
// lies ahead.
const touchFraction = 8

// maxTokenLen is the longest token the store accepts as a session ID.
const maxTokenLen = 256

// maxKeyLen is the longest key KeyCodec's values may have (attribute names
// are limited to 1024 bytes).
const maxKeyLen = 1000

// Backend is what a Store needs from the session store.
// *replication.Store implements it. A Backend that also has Retire and
// Renamed, as *replication.Store does, lets the Store keep a browser's
// renewed token when a request that left with the old one commits (see
// FindCtx).
type Backend interface {
	Get(ctx context.Context, id string) (replication.Session, bool, error)
	Save(ctx context.Context, id string, c replication.Changes) (replication.Version, error)
	Destroy(ctx context.Context, id string) error
	Scan(ctx context.Context, fn func(replication.Session) bool) error
}

var _ Backend = (*replication.Store)(nil)

// asyncBackend is implemented by backends with a write concern;
// *replication.Store is one.
type asyncBackend interface {
	WriteConcern() replication.WriteConcern
}

// renewingBackend is implemented by backends that can end a session as a
// renewal and tell it later (see replication.Store.Retire and Renamed);
// *replication.Store is one. With a backend without it, Delete destroys,
// and a request that left with a token just renewed, and that writes,
// gets a new session whose cookie replaces the renewed one.
type renewingBackend interface {
	Retire(ctx context.Context, id string) error
	Renamed(ctx context.Context, id string) (bool, error)
}

// Store is an scs session store on a replicated session store. Assign it to
// scs.SessionManager.Store. Create one with New; change its fields before
// serving. It is safe for concurrent use.
type Store struct {
	// Backend holds the sessions. Set by New.
	Backend Backend

	// Codec must be the SessionManager's Codec. Find hands scs sessions
	// in its format, and Commit decodes blobs with it to tell a commit
	// that changes no value (whose bytes may differ, since gob writes maps
	// in random order) from one that does; a blob it cannot decode counts
	// as changed. With a *KeyCodec, each value is stored on its own (see
	// KeyCodec). Default scs.GobCodec{}, scs's default.
	Codec scs.Codec

	// Now returns the current time. Default time.Now.
	Now func() time.Time

	// KeepCookie makes Commit fail with ErrCookieUnchanged, after storing
	// the session, when the browser already holds the cookie scs would set:
	// the session existed under the token before this commit, and the
	// expiry moved by less than an eighth of the time it lies ahead since
	// the last cookie set. scs then sets no cookie. Install ErrorFunc as
	// the SessionManager's ErrorFunc with it, or every such request
	// answers 500.
	//
	// Without it, scs sets the cookie on every commit, and a request in
	// flight with a token that a login in another request renews can hand
	// the old token back to the browser after the login's response brought
	// the new one, logging the user out: when its commit reaches the store
	// just before the renewal and its response arrives just after the
	// login's. With it, only a commit that moves the cookie's expiry a step
	// (with an IdleTimeout, once in IdleTimeout/8) still sets the cookie,
	// so a persistent cookie expires at most that much before the session.
	// A change of scs's RememberMe alone, under the same token, reaches the
	// cookie with its next step (RememberMe is usually called at login,
	// with RenewToken, whose new token always gets its cookie). Code that
	// calls the SessionManager's Commit itself must treat
	// ErrCookieUnchanged as success. Default false.
	KeepCookie bool
}

var (
	_ scs.Store            = (*Store)(nil)
	_ scs.CtxStore         = (*Store)(nil)
	_ scs.IterableStore    = (*Store)(nil)
	_ scs.IterableCtxStore = (*Store)(nil)
)

// New returns a Store that keeps scs's sessions in b, usually a
// *replication.Store. A backend that replicates asynchronously is refused
// with ErrAsync.
func New(b Backend) (*Store, error) {
	if a, ok := b.(asyncBackend); ok && a.WriteConcern() == replication.Async {
		return nil, ErrAsync
	}
	return &Store{Backend: b, Codec: scs.GobCodec{}, Now: time.Now}, nil
}

// ErrorFunc returns an error handler for scs.SessionManager.ErrorFunc that
// lets the response of a request whose session ended while it was in
// flight go out as the handler writes it, without a session cookie, does
// the same for a commit that needs no cookie (ErrCookieUnchanged, see
// Store.KeepCookie), answers a session refused by a full node
// (replication.ErrOverloaded) 503 Service Unavailable with Retry-After:
// 10, and hands every other error to next (nil: scs's default, a logged
// 500).
//
// Commit fails for such a session (see CommitCtx), and scs then calls
// ErrorFunc instead of setting the cookie. When the session's token was
// renewed by a login in another request, the browser holds the new token
// or receives it with the login's response: a cookie with the old token
// would log the user out, and so would scs's default error page, in its
// way. When the session was destroyed, the logout's response clears the
// cookie. Install it with the store:
//
//	sessionManager.ErrorFunc = scsstore.ErrorFunc(nil)
func ErrorFunc(next func(http.ResponseWriter, *http.Request, error)) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		switch {
		case errors.Is(err, replication.ErrSessionEnded):
			return // the changes are lost; the handler's response goes out
		case errors.Is(err, ErrCookieUnchanged):
			return // stored; the browser's cookie is right as it is
		case errors.Is(err, replication.ErrOverloaded):
			w.Header().Set("Retry-After", "10")
			http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
		case next != nil:
			next(w, r, err)
		default:
			_ = log.Output(2, err.Error())
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		}
	}
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
//
// A token deleted less than replication.RenameGrace ago (by scs's
// RenewToken, or Destroy: Delete serves both) is found as an empty session
// whose commits fail (see CommitCtx). A request that left with the token
// just before the browser received the renewed one then neither reads the
// session nor hands the browser the cookie of a new one, which would log
// the user out; a browser that logged out no longer sends the token.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	if !validToken(token) {
		return nil, false, nil
	}
	sess, ok, err := s.Backend.Get(ctx, token)
	if err != nil {
		return nil, false, fmt.Errorf("scsstore: find session: %w", err)
	}
	if !ok {
		return s.findRenewed(ctx, token)
	}
	b, ok, err := s.blob(sess, s.Now())
	if err != nil || !ok {
		return nil, false, err
	}
	return b, true, nil
}

// findRenewed answers Find for token, which names no session: an empty
// session when it was renewed (or deleted) moments ago, else not found.
func (s *Store) findRenewed(ctx context.Context, token string) ([]byte, bool, error) {
	rb, ok := s.Backend.(renewingBackend)
	if !ok {
		return nil, false, nil
	}
	renewed, err := rb.Renamed(ctx, token)
	if err != nil {
		return nil, false, fmt.Errorf("scsstore: find session: %w", err)
	}
	if !renewed {
		return nil, false, nil
	}
	// Any deadline ahead will do: a commit of this session fails.
	deadline := s.Now().Add(time.Hour).UTC()
	if s.keyCodec() {
		kb := &keyBlob{Deadline: deadline.UnixNano(), Token: token, Values: map[string][]byte{}}
		b, err := kb.marshal()
		return b, err == nil, err
	}
	codec := s.Codec
	if codec == nil {
		codec = scs.GobCodec{}
	}
	b, err := codec.Encode(deadline, map[string]interface{}{})
	if err != nil {
		return nil, false, fmt.Errorf("scsstore: find session: %w", err)
	}
	return b, true, nil
}

// blob returns the blob of sess in the format of s.Codec (a copy), unless
// sess was not written by this package or its expiry has passed.
func (s *Store) blob(sess replication.Session, now time.Time) ([]byte, bool, error) {
	if exp, ok := timeAttr(sess, expiryAttr); ok && !now.Before(exp) {
		return nil, false, nil
	}
	if _, ok := sess.Value(deadlineAttr); ok {
		return s.keysBlob(sess)
	}
	b, ok := sess.Value(dataAttr)
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(b), true, nil
}

// timeAttr returns the time stored in attribute name of sess.
func timeAttr(sess replication.Session, name string) (time.Time, bool) {
	b, ok := sess.Value(name)
	if !ok || len(b) != 8 {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b))), true
}

// expiryOf returns the expiry stored with sess.
func expiryOf(sess replication.Session) (time.Time, bool) { return timeAttr(sess, expiryAttr) }

func encodeTime(t time.Time) []byte {
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
// the past deletes the session. It reads the stored session first, to
// compare: locally on a node that owns it, with one round trip to an owner
// otherwise. A blob of KeyCodec writes only the values the request changed.
//
// A commit to a session that ended while the request was in flight, because
// another request renewed its token (scs's RenewToken) or destroyed it, is
// dropped with an error that matches replication.ErrSessionEnded, so that
// scs does not set the cookie to the dead token: after a renewal that would
// log the user out. Install ErrorFunc to let such a response go out
// without the cookie instead of as an error. With KeepCookie, a commit
// under a token the store held already returns ErrCookieUnchanged once the
// session is stored, unless the cookie's expiry must move (see KeepCookie).
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	if !validToken(token) {
		return fmt.Errorf("scsstore: commit session: %w", ErrInvalidToken)
	}
	if a, ok := s.Backend.(asyncBackend); ok && a.WriteConcern() == replication.Async {
		return fmt.Errorf("scsstore: commit session: %w", ErrAsync)
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
	var oldExp time.Time
	if found {
		oldExp, _ = expiryOf(cur)
		c.Base = cur
	}
	if kb, ok := parseKeyBlob(b); ok {
		if err := s.keyChanges(&c, token, kb, cur, found); err != nil {
			return fmt.Errorf("scsstore: commit session: %w", err)
		}
	} else {
		old, hasData := cur.Value(dataAttr)
		if !hasData || !s.sameValues(old, b) {
			c.Set[dataAttr] = bytes.Clone(b)
		}
		// A session KeyCodec stored goes back to one blob.
		for name := range cur.All() {
			if name == deadlineAttr || strings.HasPrefix(name, keyPrefix) {
				c.Delete = append(c.Delete, name)
			}
		}
	}
	changed := len(c.Set) > 0 || len(c.Delete) > 0
	if changed && !expiry.Equal(oldExp) || moved(oldExp, expiry, now) {
		c.Set[expiryAttr] = encodeTime(expiry)
		changed = true
	}
	keep := false
	if s.KeepCookie {
		cookieExp, _ := timeAttr(cur, cookieAttr)
		if keep = found && !moved(cookieExp, expiry, now); !keep {
			c.Set[cookieAttr] = encodeTime(expiry)
			changed = true
		}
	}
	if changed {
		if _, err := s.Backend.Save(ctx, token, c); err != nil {
			return fmt.Errorf("scsstore: commit session: %w", err)
		}
	}
	if keep {
		return ErrCookieUnchanged
	}
	return nil // when unchanged, only the expiry moved, by less than a step
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
//
// scs deletes the old token both when it renews it (RenewToken) and when
// it destroys the session, so the store cannot tell a login from a logout
// here: it ends the session as a renewal (replication.Store.Retire), which
// for a logout comes to the same, since the logout's response clears the
// cookie (see FindCtx).
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	if !validToken(token) {
		return nil
	}
	end := s.Backend.Destroy
	if rb, ok := s.Backend.(renewingBackend); ok {
		end = rb.Retire
	}
	if err := end(ctx, token); err != nil {
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
	var failed error
	err := s.Backend.Scan(ctx, func(sess replication.Session) bool {
		if !validToken(sess.ID()) {
			return true
		}
		b, ok, err := s.blob(sess, now)
		if err != nil {
			failed = err
			return false
		}
		if ok {
			out[sess.ID()] = b
		}
		return true
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		return nil, fmt.Errorf("scsstore: list sessions: %w", err)
	}
	return out, nil
}
