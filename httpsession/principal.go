package httpsession

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
	"github.com/sessionmesh/sessionmesh/replication"
)

// The principal index: which sessions belong to which user.
//
// SetPrincipal stores the user in the session under PrincipalKey. When the
// session is saved, its ID is added to an index record of that user kept in
// the session store itself, next to the sessions: a record whose ID starts
// with a reserved prefix ("~"; session IDs never do) and whose attributes are the
// user's session IDs. The index is replicated like any session, so every
// node sees the same index and a node failure loses nothing; and because
// records merge attribute by attribute (an LWW-map), two logins of one user
// on two nodes at the same moment both land in it.
//
// Index records are bucketed by the day their sessions expire, so that a
// record ends when its last session does and a user's record never grows
// for ever: a user who logs in every minute fills one bucket with a day's
// logins, not with every login since the first. A bucket that reaches the
// store's attribute limit (replication.Limits.MaxAttributes) continues in an
// overflow record. Entries of destroyed or expired sessions are removed
// lazily, when the user's sessions are listed.

// PrincipalKey is the session key under which SetPrincipal stores the
// principal (a msgpack string, readable with GetString or Principal).
// Putting or removing it directly updates the index the same way.
const PrincipalKey = "sessionmesh.principal"

var (
	// ErrNoLifetime is returned by SetPrincipal when the Manager's
	// Lifetime is zero: the index keeps a user's sessions until their
	// absolute deadline, so sessions need one.
	ErrNoLifetime = errors.New("httpsession: the principal index needs sessions with a Lifetime")

	// ErrIndexFull is returned when a user's index bucket has no room left
	// even in its last overflow record (more than about 256 times the
	// store's attribute limit of logins expiring on one day).
	ErrIndexFull = errors.New("httpsession: principal index full")
)

const (
	// indexBucket is the width of the expiry buckets of the index.
	indexBucket = 24 * time.Hour
	// indexMargin keeps an index record a little longer than the sessions
	// it lists, whose deadlines were estimated on this node's clock.
	indexMargin = time.Minute
	// maxOverflow bounds the overflow records of one bucket.
	maxOverflow = 256
)

// indexGrace is how old an entry must be before listing removes it for
// want of its session: a younger one may belong to a login whose write has
// not reached this node yet (asynchronous replication, a partition).
// A variable for tests.
var indexGrace = time.Minute

// SessionInfo describes one live session of a principal.
//
// The ID is a credential: whoever holds it is logged in as the user. Show
// the creation times in a "your sessions" page, not the IDs.
type SessionInfo struct {
	// ID is the session's ID.
	ID string
	// Created is when the session was created (the first write, before
	// any RenewID).
	Created time.Time
	// Expires is the session's absolute deadline.
	Expires time.Time
}

// SetPrincipal tags the session of ctx with principal (a user name or ID):
// when the response is written, the session is added to the principal's
// index, so Sessions lists it and DestroyAll ends it, on every node. Call it
// at login, usually right after RenewID. An empty principal removes the tag.
//
// With MaxSessionsPerPrincipal set, saving the session ends the principal's
// sessions beyond the cap that were tagged longest ago (the oldest logins).
// The index needs sessions with an absolute deadline: SetPrincipal returns
// ErrNoLifetime when the Manager's Lifetime is zero.
func (m *Manager) SetPrincipal(ctx context.Context, principal string) error {
	if principal == "" {
		return m.Remove(ctx, PrincipalKey)
	}
	if m.Lifetime <= 0 {
		return ErrNoLifetime
	}
	return m.Put(ctx, PrincipalKey, principal)
}

// Principal returns the principal the session of ctx is tagged with, or "".
func (m *Manager) Principal(ctx context.Context) string {
	return m.GetString(ctx, PrincipalKey)
}

// Sessions returns the live sessions tagged with principal, on the whole
// cluster, oldest first. It removes index entries of sessions that were
// destroyed or have expired. ctx need not come through LoadAndSave.
//
// It reads the principal's index records (two or more, for the days on
// which its sessions end) and each session they list: local reads with
// AllToAll, a round trip to an owner each with Backups(n). Every node must
// use the same Lifetime: a session created with a longer Lifetime than
// this Manager's is not found.
func (m *Manager) Sessions(ctx context.Context, principal string) ([]SessionInfo, error) {
	live, _, err := m.principalSessions(ctx, principal)
	if err != nil {
		return nil, fmt.Errorf("list sessions of principal: %w", err)
	}
	out := make([]SessionInfo, len(live))
	for i, e := range live {
		out[i] = e.info
	}
	return out, nil
}

// DestroyAll ends every session tagged with principal, on every node ("log
// out everywhere"), and returns how many were live. A session saved while
// DestroyAll runs may survive it, as if it had been created just after.
// When the session of ctx is one of them, its cookie is not cleared until
// the next request finds the session gone.
func (m *Manager) DestroyAll(ctx context.Context, principal string) (int, error) {
	live, pending, err := m.principalSessions(ctx, principal)
	if err != nil {
		return 0, fmt.Errorf("destroy sessions of principal: %w", err)
	}
	// Entries whose session this node cannot see yet are destroyed too: a
	// tombstone wins over a write still on its way.
	for _, e := range append(live, pending...) {
		if err := m.Store.Destroy(ctx, e.id); err != nil {
			return 0, fmt.Errorf("destroy sessions of principal: %w", err)
		}
	}
	m.dropEntries(ctx, append(live, pending...))
	return len(live), nil
}

// indexEntry is one session ID found in an index record.
type indexEntry struct {
	id      string              // the session's ID
	record  string              // the ID of the index record holding it
	tagged  time.Time           // when the entry was written
	version replication.Version // the version of the write that tagged the session
	info    SessionInfo         // the session, once read
}

// entrySize is the size of an encoded index entry.
const entrySize = 16

// encodeEntry encodes an index entry's value: when it was written, in Unix
// milliseconds, and the version of the session write that tagged it, so
// that a reader on another node can wait for that write (GetAtLeast).
func encodeEntry(tagged time.Time, v replication.Version) []byte {
	b := make([]byte, entrySize)
	binary.BigEndian.PutUint64(b, uint64(tagged.UnixMilli()))
	binary.BigEndian.PutUint64(b[8:], uint64(v))
	return b
}

func decodeEntry(b []byte) (tagged time.Time, v replication.Version, ok bool) {
	if len(b) != entrySize {
		return time.Time{}, 0, false
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(b))), replication.Version(binary.BigEndian.Uint64(b[8:])), true
}

// indexID returns the ID of overflow record n of principal's index bucket
// b. The principal is hashed: any string fits, and IDs have a fixed size.
func indexID(principal string, b int64, n int) string {
	h := sha256.Sum256([]byte(principal))
	id := sessionid.ReservedPrefix + "p." + base64.RawURLEncoding.EncodeToString(h[:]) + "." + strconv.FormatInt(b, 36)
	if n > 0 {
		id += "." + strconv.Itoa(n)
	}
	return id
}

// bucketOf returns the index bucket of a session that expires at t.
func bucketOf(t time.Time) int64 { return t.UnixMilli() / indexBucket.Milliseconds() }

// bucketEnd returns when the sessions of bucket b have all expired.
func bucketEnd(b int64) time.Time { return time.UnixMilli((b + 1) * indexBucket.Milliseconds()) }

// principalOf returns the principal a stored session is tagged with.
func principalOf(s replication.Session) string {
	b, ok := s.Value(PrincipalKey)
	if !ok {
		return ""
	}
	var p string
	if msgpack.Unmarshal(b, &p) != nil {
		return ""
	}
	return p
}

// indexPrincipal keeps the index in step with a commit that has just saved
// the session of sd (now sd.id; before the commit prevID) at version v. It
// adds the session to the index of its principal when the request tagged it
// or renamed it. The entry of a renamed-away ID, or of a principal the
// session no longer has, is removed lazily by the next listing. It runs with
// sd.mu held.
//
// When the entry cannot be written, the session is destroyed and the error
// returned: a session missing from its principal's index would survive
// DestroyAll.
func (m *Manager) indexPrincipal(ctx context.Context, sd *sessionData, prevID string, v replication.Version) error {
	if _, changed := sd.changes[PrincipalKey]; sd.id == "" || !changed && sd.id == prevID {
		return nil // the common request: nothing to index
	}
	before := principalOf(sd.loaded)
	after := before
	if ch, changed := sd.changes[PrincipalKey]; changed {
		after = ""
		if !ch.removed {
			_ = msgpack.Unmarshal(ch.value, &after)
		}
	}
	if after == "" || after == before && sd.id == prevID {
		return nil
	}
	now := time.Now()
	expires := now.Add(m.Lifetime)
	if e := sd.loaded.Expires(); prevID != "" && sd.loaded.ID() == prevID && !e.IsZero() {
		expires = e // renamed sessions keep their deadline
	}
	if err := m.addEntry(ctx, after, sd.id, now, expires, v); err != nil {
		if derr := m.Store.Destroy(ctx, sd.id); derr != nil {
			m.logger().Warn("session left out of its principal's index", "err", derr)
		}
		return fmt.Errorf("index session of principal: %w", err)
	}
	if m.MaxSessionsPerPrincipal > 0 {
		if err := m.enforceCap(ctx, after, sd.id); err != nil {
			m.logger().Warn("cannot enforce MaxSessionsPerPrincipal", "err", err)
		}
	}
	return nil
}

// addEntry adds session id, written at version v and ending at expires, to
// the index of principal: to the bucket of its deadline, continuing in the
// next overflow record while one is full.
func (m *Manager) addEntry(ctx context.Context, principal, id string, now, expires time.Time, v replication.Version) error {
	b := bucketOf(expires)
	c := replication.Changes{
		Set:       map[string][]byte{id: encodeEntry(now, v)},
		ExpiresAt: bucketEnd(b).Add(indexMargin),
	}
	for n := 0; n < maxOverflow; n++ {
		_, err := m.Store.Save(ctx, indexID(principal, b, n), c)
		switch {
		case errors.Is(err, replication.ErrSessionTooLarge), errors.Is(err, replication.ErrSessionEnded):
			continue
		case err != nil:
			return err
		}
		return nil
	}
	return ErrIndexFull
}

// entries returns every entry of principal's index that may name a live
// session: those of the buckets from now to a Lifetime ahead.
func (m *Manager) entries(ctx context.Context, principal string) ([]indexEntry, error) {
	now := time.Now()
	var out []indexEntry
	for b := bucketOf(now); b <= bucketOf(now.Add(m.Lifetime+indexMargin)); b++ {
		for n := 0; n < maxOverflow; n++ {
			rid := indexID(principal, b, n)
			rec, ok, err := m.Store.GetAtLeast(ctx, rid, 0)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
			for id, val := range rec.All() {
				tagged, v, ok := decodeEntry(val)
				if ok && sessionid.Valid(id) {
					out = append(out, indexEntry{id: id, record: rid, tagged: tagged, version: v})
				}
			}
		}
	}
	return out, nil
}

// principalSessions reads principal's index and each session in it. It
// returns the entries of the live sessions tagged with principal, oldest
// first, and those whose session this node cannot see but which are too
// young to be dropped. The entries of sessions that are gone, or that now
// belong to someone else, are removed from the index.
func (m *Manager) principalSessions(ctx context.Context, principal string) (live, pending []indexEntry, err error) {
	es, err := m.entries(ctx, principal)
	if err != nil {
		return nil, nil, err
	}
	var dead []indexEntry
	seen := make(map[string]bool, len(es))
	now := time.Now()
	for _, e := range es {
		young := now.Sub(e.tagged) < indexGrace
		if seen[e.id] {
			dead = append(dead, e) // a second entry, left by a rename race
			continue
		}
		seen[e.id] = true
		// Wait for the tagging write only while it may be on its way: a
		// session that is gone for good would make the read wait in vain.
		var want replication.Version
		if young {
			want = e.version
		}
		s, ok, err := m.Store.GetAtLeast(ctx, e.id, want)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case ok && principalOf(s) == principal:
			e.info = SessionInfo{ID: e.id, Created: s.Created(), Expires: s.Expires()}
			live = append(live, e)
		case ok:
			dead = append(dead, e) // tagged with another principal since
		case young:
			pending = append(pending, e)
		default:
			dead = append(dead, e)
		}
	}
	m.dropEntries(ctx, dead)
	slices.SortFunc(live, func(a, b indexEntry) int {
		return cmp.Or(a.info.Created.Compare(b.info.Created), cmp.Compare(a.version, b.version), cmp.Compare(a.id, b.id))
	})
	return live, pending, nil
}

// dropEntries removes entries from their index records, best effort: what
// is left is removed by a later listing, or ends with its record.
func (m *Manager) dropEntries(ctx context.Context, es []indexEntry) {
	byRecord := map[string][]string{}
	for _, e := range es {
		byRecord[e.record] = append(byRecord[e.record], e.id)
	}
	for rid, ids := range byRecord {
		_, err := m.Store.Save(ctx, rid, replication.Changes{Delete: ids})
		if err != nil && !errors.Is(err, replication.ErrSessionEnded) {
			m.logger().Debug("cannot remove entries from a principal index", "err", err)
		}
	}
}

// enforceCap ends the sessions of principal tagged longest ago beyond
// MaxSessionsPerPrincipal, never the session keep. The order is that of
// the tagging writes' versions: sequential logins are ordered as they
// happened, whichever nodes took them, even within one millisecond.
func (m *Manager) enforceCap(ctx context.Context, principal, keep string) error {
	live, _, err := m.principalSessions(ctx, principal)
	if err != nil {
		return err
	}
	slices.SortFunc(live, func(a, b indexEntry) int {
		return cmp.Or(cmp.Compare(a.version, b.version), cmp.Compare(a.id, b.id))
	})
	excess := len(live) - m.MaxSessionsPerPrincipal
	var evicted []indexEntry
	for _, e := range live {
		if excess <= 0 {
			break
		}
		if e.id == keep {
			continue
		}
		if err := m.Store.Destroy(ctx, e.id); err != nil {
			return err
		}
		evicted = append(evicted, e)
		excess--
	}
	m.dropEntries(ctx, evicted)
	return nil
}
