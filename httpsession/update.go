package httpsession

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
	"github.com/sessionmesh/sessionmesh/replication"
)

// Update atomically replaces the value of key in the session of ctx with
// fn's result and returns the new value. Concurrent Updates of one key
// never lose each other's changes, whichever nodes the requests land on: a
// visit counter updated by parallel requests counts every one, where
// Get-then-Put loses increments. Use it for read-modify-write of one value;
// Put stays the cheaper way to set a value that does not depend on the old
// one.
//
// Unlike Put, Update writes at once, not when the response starts, so fn
// sees the value as the cluster has it now. fn receives the current value
// decoded as T (the zero T and false when the key is not set) and may run
// several times, so it must have no side effects; an error from fn aborts
// the update and is returned. A Put of the same key earlier in the request
// is dropped. A session that does not exist yet is created with fn's
// result. See replication.Store.Update for the guarantees under failures.
//
// When another request renewed the session's ID (a login in another tab,
// see RenewID), Update returns an error that matches
// replication.ErrSessionRenewed and stores nothing: the client keeps its
// new ID, and the old one never reaches the session. When another request
// rotated it (see Manager.RotateEvery), the update goes to the session
// under its new ID, which the response brings the client.
func Update[T any](ctx context.Context, m *Manager, key string, fn func(old T, exists bool) (T, error)) (T, error) {
	var zero T
	sd := m.data(ctx)
	if sd == nil {
		return zero, ErrNoSession
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	delete(sd.changes, key)
	var result T
	if sd.id == "" && sd.carried != "" {
		renamed, err := m.renamed(ctx, sd.carried)
		if err != nil {
			return zero, fmt.Errorf("httpsession: update %q: %w", key, err)
		}
		if renamed {
			// A new session would replace the renewed ID in the client.
			return zero, fmt.Errorf("httpsession: update %q: %w", key, replication.ErrSessionRenewed)
		}
	}
	if sd.id == "" {
		// A new session has no other writer yet: a plain write is atomic.
		v, err := fn(zero, false)
		if err != nil {
			return zero, err
		}
		b, err := msgpack.Marshal(v)
		if err != nil {
			return zero, fmt.Errorf("httpsession: encode %q: %w", key, err)
		}
		id := sessionid.New()
		version, err := m.Store.Save(ctx, id, replication.Changes{
			Set: map[string][]byte{key: b}, IdleTimeout: m.IdleTimeout, Lifetime: m.Lifetime,
		})
		if err != nil {
			return zero, fmt.Errorf("httpsession: update %q: %w", key, err)
		}
		sd.id, sd.fresh = id, true
		sd.remember(key, b, version)
		return v, nil
	}
	update := func(old []byte, exists bool) ([]byte, error) {
		v := zero
		if exists {
			if err := msgpack.Unmarshal(old, &v); err != nil {
				return nil, fmt.Errorf("httpsession: decode %q: %w", key, err)
			}
		}
		var err error
		if result, err = fn(v, exists); err != nil {
			return nil, err
		}
		return msgpack.Marshal(result)
	}
	b, version, err := m.storeUpdate(ctx, sd.id, key, max(sd.seen, sd.updated), update)
	if errors.Is(err, replication.ErrSessionRenewed) && m.RotateEvery > 0 {
		// Rotated while this request was in flight: the update goes to
		// the session under its new ID (see Manager.RotateEvery).
		to, s, ok, serr := m.successor(ctx, sd.id)
		if serr != nil {
			return zero, fmt.Errorf("httpsession: update %q: %w", key, serr)
		}
		if ok {
			sd.id, sd.loaded, sd.forwarded = to, s, true
			b, version, err = m.storeUpdate(ctx, to, key, 0, update)
		}
	}
	if errors.Is(err, replication.ErrSessionEnded) && !errors.Is(err, replication.ErrSessionRenewed) {
		if renamed, rerr := m.renamed(ctx, sd.id); rerr == nil && renamed {
			err = replication.ErrSessionRenewed
		}
	}
	if err != nil {
		return zero, fmt.Errorf("httpsession: update %q: %w", key, err)
	}
	sd.remember(key, b, version)
	return result, nil
}

// remember records a value an Update stored, so the rest of the request
// reads it.
func (sd *sessionData) remember(key string, value []byte, v replication.Version) {
	if sd.applied == nil {
		sd.applied = map[string][]byte{}
	}
	sd.applied[key] = value
	sd.updated = max(sd.updated, v)
}

// storeUpdate runs the store's Update of id, telling a store that can hear
// it the version of the session this request has seen (with asynchronous
// writes, an owner may not have the user's last write yet).
func (m *Manager) storeUpdate(ctx context.Context, id, key string, seen replication.Version, fn replication.UpdateFunc) ([]byte, replication.Version, error) {
	if us, ok := m.Store.(updateAtLeastStore); ok && seen != 0 {
		return us.UpdateAtLeast(ctx, id, key, seen, fn)
	}
	return m.Store.Update(ctx, id, key, fn)
}
