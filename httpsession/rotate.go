package httpsession

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
	"github.com/sessionmesh/sessionmesh/replication"
)

// Periodic rotation (Manager.RotateEvery).
//
// A rotation renames the session like RenewID, but first writes a
// successor record: a record under a reserved ID derived from the old ID
// (a hash of it), whose attributes name the IDs that rotations of the old
// ID chose, with the time of each rotation: they count for RotateGrace. A request that carries the old ID
// finds no session under it and follows the successor record to the live
// session; a write of a request that loaded the session under the old ID,
// before the rotation, and saves after it, follows the record too. The
// record is written before the rename, so no moment exists at which the old
// ID is renamed and has no successor. Two requests that rotate the same ID
// at once both list their new ID; the one whose rename wins is the live
// one, and the other follows it. RenewID writes no successor record, so an
// ID renewed at login (possibly planted by an attacker) never reaches the
// session, and the successor of a rotated ID that is later renewed is no
// longer live.

// IssuedKey is the session key under which a Manager with RotateEvery
// records when the session's current ID was issued (at RenewID and at each
// rotation; a msgpack time, readable with GetTime). A session without it
// counts from its creation.
const IssuedKey = "sessionmesh.issued"

// defaultRotateGrace is RotateGrace's default.
const defaultRotateGrace = 30 * time.Second

func (m *Manager) clock() time.Time {
	if m.now != nil {
		return m.now()
	}
	return time.Now()
}

func (m *Manager) rotateGrace() time.Duration {
	if m.RotateGrace > 0 {
		return m.RotateGrace
	}
	return defaultRotateGrace
}

// withIssued returns c setting IssuedKey to now, leaving c's map alone.
func withIssued(c replication.Changes, now time.Time) replication.Changes {
	b, err := msgpack.Marshal(now)
	if err != nil {
		return c // a time always encodes
	}
	set := make(map[string][]byte, len(c.Set)+1)
	maps.Copy(set, c.Set)
	set[IssuedKey] = b
	c.Set = set
	return c
}

// issued returns when the ID of s was issued.
func issued(s replication.Session) time.Time {
	if b, ok := s.Value(IssuedKey); ok {
		var t time.Time
		if unmarshal(b, &t) == nil {
			return t
		}
	}
	return s.Created()
}

// rotationDue reports whether the request's commit must rotate the
// session's ID: an authenticated session, loaded under an ID older than
// RotateEvery, that the request neither renews nor destroys.
func (m *Manager) rotationDue(sd *sessionData) bool {
	if m.RotateEvery <= 0 || sd.renew || sd.id == "" || sd.destroyedID != "" || sd.loaded.ID() != sd.id {
		return false
	}
	if principalOf(sd.loaded) == "" {
		return false
	}
	return m.clock().Sub(issued(sd.loaded)) >= m.RotateEvery
}

// successorID is the ID of the record that names the successors of id.
func successorID(id string) string {
	h := sha256.Sum256([]byte(id))
	return sessionid.ReservedPrefix + "r." + base64.RawURLEncoding.EncodeToString(h[:])
}

// successor returns the live session that a rotation of id, less than
// RotateGrace ago on this Manager's clock, moved it to. A rename still on
// its way to this node (its successor record is written first) is waited
// for, up to the store's read wait.
func (m *Manager) successor(ctx context.Context, id string) (string, replication.Session, bool, error) {
	rec, ok, err := m.Store.GetAtLeast(ctx, successorID(id), 0)
	if err != nil || !ok {
		return "", replication.Session{}, false, err
	}
	now := m.clock()
	var candidates []string
	for to, b := range rec.All() {
		var at time.Time
		if !sessionid.Valid(to) || unmarshal(b, &at) != nil || !now.Before(at.Add(m.rotateGrace())) {
			continue
		}
		candidates = append(candidates, to)
	}
	// Renames come after their successor record's write, hence have a
	// later version: on a second pass, wait for them.
	for _, want := range []replication.Version{0, rec.Version()} {
		for _, to := range candidates {
			s, ok, err := m.Store.GetAtLeast(ctx, to, want)
			if err != nil {
				return "", replication.Session{}, false, err
			}
			if ok {
				return to, s, true, nil
			}
		}
	}
	return "", replication.Session{}, false, nil
}

// rotate moves the session of sd to a new ID, applying changes, after
// naming the new ID in the old one's successor record. When another
// request rotated it first, the changes go to that request's new ID.
func (m *Manager) rotate(ctx context.Context, sd *sessionData, changes replication.Changes) (replication.Version, error) {
	now := m.clock()
	at, err := msgpack.Marshal(now)
	if err != nil {
		return 0, fmt.Errorf("rotate session ID: %w", err)
	}
	to := sessionid.New()
	// The record outlives the grace by a margin for the nodes' clocks; the
	// grace itself is judged by the time it holds.
	if _, err := m.Store.Save(ctx, successorID(sd.id), replication.Changes{
		Set:      map[string][]byte{to: at},
		Lifetime: m.rotateGrace() + time.Minute,
	}); err != nil {
		return 0, fmt.Errorf("rotate session ID: %w", err)
	}
	version, err := m.Store.Rename(ctx, sd.id, to, withIssued(changes, now))
	switch {
	case err == nil:
		m.logger().Debug("session ID rotated")
		sd.id = to
		return version, nil
	case errors.Is(err, replication.ErrSessionRenewed):
		return m.forward(ctx, sd, changes)
	default:
		return 0, err
	}
}

// forward saves changes, which failed because the session's ID was
// renewed, to the session a rotation moved it to, and makes that the
// request's session. Without a successor (a RenewID, or the grace is over)
// it returns replication.ErrSessionRenewed.
func (m *Manager) forward(ctx context.Context, sd *sessionData, changes replication.Changes) (replication.Version, error) {
	to, s, ok, err := m.successor(ctx, sd.id)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, replication.ErrSessionRenewed
	}
	sd.id, sd.loaded, sd.forwarded = to, s, true
	if len(changes.Set) == 0 && len(changes.Delete) == 0 {
		return 0, nil
	}
	changes.Base = s
	return m.Store.Save(ctx, to, changes)
}
