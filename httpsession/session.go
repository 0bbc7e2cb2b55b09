package httpsession

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sessionmesh/sessionmesh/replication"
)

// ErrNoSession is returned when a session method is called with a context
// that did not come through LoadAndSave.
var ErrNoSession = errors.New("httpsession: no session in context (is the handler wrapped with LoadAndSave?)")

// contextKey is the type of the context key under which LoadAndSave stores
// the request's session. A pointer to an unexported type can't collide.
type contextKey struct{ name string }

var sessionKey = &contextKey{"session"}

// change is one attribute changed by the current request.
type change struct {
	value   []byte // msgpack-encoded; nil when removed
	removed bool
}

// sessionData is the session of one request: what was loaded and what the
// request changed.
type sessionData struct {
	mu          sync.Mutex
	id          string              // guards: the session's ID; "" until the session exists
	carried     string              // guards: the ID the request carried when it named no session
	loaded      replication.Session // guards: the session as loaded
	changes     map[string]change   // guards: attributes changed by this request
	renew       bool                // guards: RenewID was called
	destroyedID string              // guards: the ID Destroy ended, to remove from the store
	updated     replication.Version // guards: the version of this request's latest Update
	fresh       bool                // guards: Update created the session in this request
	applied     map[string][]byte   // guards: values this request's Updates stored
	forwarded   bool                // guards: the request carried an ID a rotation replaced; id is its successor
	seen        replication.Version // guards: the version the cookie named (asynchronous writes only), which the load reached
}

func (m *Manager) data(ctx context.Context) *sessionData {
	sd, _ := ctx.Value(sessionKey).(*sessionData)
	return sd
}

// storeChanges converts the request's changes for the store.
func (sd *sessionData) storeChanges(idle, lifetime time.Duration) replication.Changes {
	c := replication.Changes{IdleTimeout: idle, Lifetime: lifetime}
	for k, ch := range sd.changes {
		if ch.removed {
			c.Delete = append(c.Delete, k)
			continue
		}
		if c.Set == nil {
			c.Set = make(map[string][]byte, len(sd.changes))
		}
		c.Set[k] = ch.value
	}
	return c
}

// raw returns the encoded value of key as the request sees it.
func (sd *sessionData) raw(key string) ([]byte, bool) {
	if ch, ok := sd.changes[key]; ok {
		return ch.value, !ch.removed
	}
	if v, ok := sd.applied[key]; ok {
		return v, true
	}
	return sd.loaded.Value(key)
}

func (m *Manager) raw(ctx context.Context, key string) ([]byte, bool) {
	sd := m.data(ctx)
	if sd == nil {
		return nil, false
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	return sd.raw(key)
}

// Put sets key to val in the session of ctx. val is encoded with msgpack at
// once: a value msgpack cannot encode is an error here, not later. The
// session is created (and its cookie set) when the response is written.
func (m *Manager) Put(ctx context.Context, key string, val any) error {
	sd := m.data(ctx)
	if sd == nil {
		return ErrNoSession
	}
	b, err := msgpack.Marshal(val)
	if err != nil {
		return fmt.Errorf("httpsession: encode %q: %w", key, err)
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.changes == nil {
		sd.changes = make(map[string]change)
	}
	sd.changes[key] = change{value: b}
	return nil
}

// Remove deletes key from the session of ctx.
func (m *Manager) Remove(ctx context.Context, key string) error {
	sd := m.data(ctx)
	if sd == nil {
		return ErrNoSession
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if _, ok := sd.raw(key); !ok {
		return nil
	}
	if sd.changes == nil {
		sd.changes = make(map[string]change)
	}
	sd.changes[key] = change{removed: true}
	return nil
}

// Exists reports whether key is set in the session of ctx.
func (m *Manager) Exists(ctx context.Context, key string) bool {
	_, ok := m.raw(ctx, key)
	return ok
}

// Keys returns the keys set in the session of ctx, sorted.
func (m *Manager) Keys(ctx context.Context) []string {
	sd := m.data(ctx)
	if sd == nil {
		return nil
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	var keys []string
	for k := range sd.loaded.All() {
		_, changed := sd.changes[k]
		_, updated := sd.applied[k]
		if !changed && !updated {
			keys = append(keys, k)
		}
	}
	for k := range sd.applied {
		if _, changed := sd.changes[k]; !changed {
			keys = append(keys, k)
		}
	}
	for k, ch := range sd.changes {
		if !ch.removed {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Get returns the value of key decoded into a generic Go value (msgpack's
// choice of types: integers come back as the smallest type that holds
// them), or nil. Prefer the typed getters or the generic Get function.
func (m *Manager) Get(ctx context.Context, key string) any {
	b, ok := m.raw(ctx, key)
	if !ok {
		return nil
	}
	var v any
	if err := msgpack.Unmarshal(b, &v); err != nil {
		return nil
	}
	return v
}

// Get returns the value of key in the session of ctx decoded as a T, and
// whether it was there and decoded.
func Get[T any](ctx context.Context, m *Manager, key string) (T, bool) {
	var v T
	b, ok := m.raw(ctx, key)
	if !ok {
		return v, false
	}
	if err := unmarshal(b, &v); err != nil {
		var zero T
		return zero, false
	}
	return v, true
}

// GetString returns the string value of key, or "".
func (m *Manager) GetString(ctx context.Context, key string) string {
	v, _ := Get[string](ctx, m, key)
	return v
}

// GetInt returns the integer value of key, or 0. Any integer type that was
// stored decodes.
func (m *Manager) GetInt(ctx context.Context, key string) int {
	v, _ := Get[int64](ctx, m, key)
	return int(v)
}

// GetInt64 returns the integer value of key, or 0.
func (m *Manager) GetInt64(ctx context.Context, key string) int64 {
	v, _ := Get[int64](ctx, m, key)
	return v
}

// GetBool returns the boolean value of key, or false.
func (m *Manager) GetBool(ctx context.Context, key string) bool {
	v, _ := Get[bool](ctx, m, key)
	return v
}

// GetFloat returns the float value of key, or 0.
func (m *Manager) GetFloat(ctx context.Context, key string) float64 {
	v, _ := Get[float64](ctx, m, key)
	return v
}

// GetBytes returns the []byte value of key, or nil.
func (m *Manager) GetBytes(ctx context.Context, key string) []byte {
	v, _ := Get[[]byte](ctx, m, key)
	return v
}

// GetTime returns the time.Time value of key, or the zero time.
func (m *Manager) GetTime(ctx context.Context, key string) time.Time {
	v, _ := Get[time.Time](ctx, m, key)
	return v
}

// ID returns the ID of the session of ctx, or "" when it has none yet (a
// new session gets its ID when it is first saved).
func (m *Manager) ID(ctx context.Context) string {
	sd := m.data(ctx)
	if sd == nil {
		return ""
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	return sd.id
}

// RenewID gives the session of ctx a new ID when the response is written,
// keeping its data, and ends the old ID everywhere in the cluster at the
// same moment. Call it whenever the user's privileges change, above all at
// login: an attacker who planted a session ID in the victim's browser
// before login (session fixation) is left holding a dead ID.
//
// Renewal is not logout. Other requests of the same browser that carry the
// old ID, because they were in flight during the renewal or left before
// the browser received the new ID, keep the user logged in: their changes
// are dropped (an Update fails with replication.ErrSessionRenewed), and
// their responses leave the cookie alone, so the browser keeps the new ID.
// They never read or write the session under its new ID. Only a destroyed
// or expired session clears the cookie.
func (m *Manager) RenewID(ctx context.Context) error {
	sd := m.data(ctx)
	if sd == nil {
		return ErrNoSession
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	sd.renew = true
	return nil
}

// Destroy ends the session of ctx everywhere in the cluster when the
// response is written, and clears the cookie. Data put after Destroy in the
// same request goes into a new session with a new ID.
func (m *Manager) Destroy(ctx context.Context) error {
	sd := m.data(ctx)
	if sd == nil {
		return ErrNoSession
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.id != "" {
		sd.destroyedID = sd.id
	}
	sd.id, sd.carried = "", ""
	sd.loaded = replication.Session{}
	sd.changes = nil
	sd.renew = false
	sd.applied, sd.updated, sd.fresh = nil, 0, false
	return nil
}

// decoders reuses msgpack decoders and their readers across requests:
// msgpack.Unmarshal allocates both on every call.
var decoders = sync.Pool{New: func() any {
	d := &pooledDecoder{}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}}

type pooledDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

// unmarshal decodes b into v like msgpack.Unmarshal.
func unmarshal(b []byte, v any) error {
	d := decoders.Get().(*pooledDecoder)
	defer decoders.Put(d)
	d.r.Reset(b)
	d.dec.Reset(&d.r)
	return d.dec.Decode(v)
}
