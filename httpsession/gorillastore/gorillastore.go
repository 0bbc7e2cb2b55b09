package gorillastore

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
	"github.com/sessionmesh/sessionmesh/replication"
)

var (
	// ErrInvalidKeys is returned by New without key pairs, with an empty
	// hash key, or with a block key that is not 16, 24 or 32 bytes long.
	ErrInvalidKeys = errors.New("gorillastore: invalid securecookie keys")

	// ErrKeyTooLong is returned by Save for a string key longer than 1000
	// bytes.
	ErrKeyTooLong = errors.New("gorillastore: session key too long")

	// ErrAsync is returned by New for a backend that acknowledges writes
	// before every owner has them (replication.Async): the adapter's
	// reads carry no version to wait for, so the next request, on another
	// node, could miss what this one saved.
	ErrAsync = errors.New("gorillastore: asynchronous replication is not supported; use the default synchronous write concern")
)

// DefaultMaxAge is the default Options.MaxAge: one day, in seconds.
const DefaultMaxAge = 86400

// The attributes of a session written by this package.
const (
	// valuePrefix prefixes the string keys of Session.Values: each value
	// with a string key has an attribute of its own.
	valuePrefix = "v."
	// othersAttr holds the values whose keys are not strings, together, as
	// a gob-encoded map[interface{}]interface{}.
	othersAttr = "o"
	// maxKeyLen is the longest string key (attribute names are limited to
	// 1024 bytes).
	maxKeyLen = 1000
)

// touchFraction sets how far a Save that changes no value must move the
// deadline before it is written: an eighth of MaxAge.
const touchFraction = 8

// Backend is what a Store needs from the session store.
// *replication.Store implements it. A Backend that also has Renamed, as
// *replication.Store does, lets Save keep a browser's renewed ID when a
// request with the old one writes (see RenewID).
type Backend interface {
	Get(ctx context.Context, id string) (replication.Session, bool, error)
	Save(ctx context.Context, id string, c replication.Changes) (replication.Version, error)
	Destroy(ctx context.Context, id string) error
	Rename(ctx context.Context, oldID, newID string, c replication.Changes) (replication.Version, error)
}

var _ Backend = (*replication.Store)(nil)

// renamedBackend is implemented by backends that can tell a renewed
// session ID from an ended one (see replication.Store.Renamed);
// *replication.Store does.
type renamedBackend interface {
	Renamed(ctx context.Context, id string) (bool, error)
}

// asyncBackend is implemented by backends with a write concern;
// *replication.Store is one.
type asyncBackend interface {
	WriteConcern() replication.WriteConcern
}

// Store is a gorilla/sessions Store on a replicated session store: the
// cookie holds the signed session ID, the values live in the cluster.
// Create one with New; change Options (or call MaxAge) before serving.
// It is safe for concurrent use.
type Store struct {
	// Backend holds the sessions. Set by New.
	Backend Backend

	// Codecs sign (and with a block key, encrypt) the session ID in the
	// cookie. Set by New from its key pairs.
	Codecs []securecookie.Codec

	// Options are the default options of new sessions. Default: Path "/",
	// MaxAge DefaultMaxAge, HttpOnly, Secure, SameSite=Lax. Turn Secure
	// off only for plain-HTTP development setups.
	Options *sessions.Options

	// Logger receives the store's logs: debug logs (such as cookies that
	// failed their signature check) and warnings about stored values that
	// no longer decode. Default slog.Default().
	Logger *slog.Logger

	// DropUndecodable makes New (and Get) drop stored values that do not
	// decode, say of a type that changed between two builds of the
	// application or was not registered with gob, with a warning in the
	// log, and return the session without an error. The values are left
	// in the store as they are unless the request sets their keys, so the
	// nodes whose build can read them still do. Default false: New returns
	// the error along with the session and the values that decoded.
	//
	// Set it when handlers treat an error from Get as fatal (many answer
	// 500), and the application should keep serving during a deploy that
	// changes a value's type: a user then loses one value on the nodes
	// that cannot read it, not the whole page. Leave it false when a
	// missing value must not go unnoticed and the handlers handle the
	// error.
	DropUndecodable bool
}

var _ sessions.Store = (*Store)(nil)

// New returns a Store that keeps sessions in b (usually a
// *replication.Store) and signs cookies with keyPairs: a hash key (32 or 64
// random bytes) optionally followed by a block key (16, 24 or 32 bytes, or
// nil) to encrypt them too, then older pairs, still accepted, during a
// key rotation. A backend that replicates asynchronously is refused with
// ErrAsync.
func New(b Backend, keyPairs ...[]byte) (*Store, error) {
	if a, ok := b.(asyncBackend); ok && a.WriteConcern() == replication.Async {
		return nil, ErrAsync
	}
	if len(keyPairs) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrInvalidKeys)
	}
	for i, k := range keyPairs {
		switch {
		case i%2 == 0 && len(k) == 0:
			return nil, fmt.Errorf("%w: hash key %d is empty", ErrInvalidKeys, i/2)
		case i%2 == 1 && k != nil && len(k) != 16 && len(k) != 24 && len(k) != 32:
			return nil, fmt.Errorf("%w: block key %d has %d bytes", ErrInvalidKeys, i/2, len(k))
		}
	}
	s := &Store{
		Backend: b,
		Codecs:  securecookie.CodecsFromPairs(keyPairs...),
		Options: &sessions.Options{
			Path:     "/",
			HttpOnly: true,
			Secure:   true,
			SameSite: http.SameSiteLaxMode,
		},
	}
	s.MaxAge(DefaultMaxAge)
	return s, nil
}

// MaxAge sets the lifetime of sessions in seconds (Options.MaxAge) and the
// age after which signed cookies are refused, as gorilla's stores do.
func (s *Store) MaxAge(age int) {
	s.Options.MaxAge = age
	for _, c := range s.Codecs {
		if sc, ok := c.(*securecookie.SecureCookie); ok {
			sc.MaxAge(age)
		}
	}
}

func (s *Store) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Get returns the session called name of request r, from the request's
// registry: loaded on the first call, the same *sessions.Session after.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New loads the session called name of request r: the one its cookie
// names, or a new, empty one when the cookie is missing, tampered with,
// too old, or names a session that has ended. It returns an error only when
// the store fails (with a new, empty session) or a stored value cannot be
// decoded, say of a type not registered with gob (with the session and the
// values that could be decoded; Save leaves the others as they are). With
// DropUndecodable, values that do not decode are logged instead.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	session := sessions.NewSession(s, name)
	opts := *s.Options
	session.Options = &opts
	session.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return session, nil
	}
	var id string
	if err := securecookie.DecodeMulti(name, c.Value, &id, s.Codecs...); err != nil {
		s.logger().Debug("session cookie refused", "name", name, "err", err)
		return session, nil
	}
	if !sessionid.Valid(id) {
		return session, nil
	}
	stored, ok, err := s.Backend.Get(r.Context(), id)
	if err != nil {
		return session, fmt.Errorf("gorillastore: load session %q: %w", name, err)
	}
	if !ok {
		// Save asks whether it was renewed before it replaces it.
		stateOf(r).setFresh(session, &fresh{carried: id})
		return session, nil
	}
	values, attrs, err := decodeSession(stored)
	session.ID, session.IsNew, session.Values = id, false, values
	stateOf(r).set(session, &loaded{id: id, attrs: attrs, expires: stored.Expires()})
	if err != nil && s.DropUndecodable {
		s.logger().Warn("gorillastore: dropped stored values that do not decode", "name", name, "err", err)
		return session, nil
	}
	if err != nil {
		return session, fmt.Errorf("gorillastore: load session %q: %w", name, err)
	}
	return session, nil
}

// RenewID makes the next Save of session, a session of request r, move it
// to a new ID with all its values and end the old ID on every node at the
// same moment. Call it at login, and whenever the user's privileges change:
// an attacker who planted a session ID in the victim's browser (session
// fixation) is left with a dead one. A new session gets a fresh ID anyway.
//
// Requests of the same user that were in flight with the old ID, or sent
// with it before the browser received the new one, do not log the user
// out: their Save writes nothing (the changes are lost) and sets no cookie,
// so the browser keeps the new ID. They never read or write the session
// under its new ID.
func (s *Store) RenewID(r *http.Request, session *sessions.Session) {
	st := stateOf(r)
	if ld := st.get(session); ld != nil {
		ld.renew = true
	} else if f := st.getFresh(session); f != nil {
		f.renew = true
	}
}

// Save writes what the request changed in session to the store and sets
// its cookie when the cookie changes: for a new or renewed session, and
// when the session's deadline moves (see the package documentation). With
// Options.MaxAge <= 0 it destroys the session everywhere and clears the
// cookie instead. A new session with no values is not stored. A Save of a
// session whose ID another request renewed meanwhile writes nothing and
// sets no cookie (see RenewID). A new session on a node over its memory
// budget fails with an error wrapping replication.ErrOverloaded: answer
// 503 with Retry-After, the node takes new sessions again once others
// end.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, session *sessions.Session) error {
	ctx := r.Context()
	st := stateOf(r)
	if session.Options == nil {
		session.Options = &sessions.Options{}
	}
	if session.Options.MaxAge <= 0 {
		if session.ID != "" {
			if err := s.Backend.Destroy(ctx, session.ID); err != nil {
				return fmt.Errorf("gorillastore: destroy session %q: %w", session.Name(), err)
			}
		}
		st.set(session, nil)
		session.ID = ""
		http.SetCookie(w, sessions.NewCookie(session.Name(), "", session.Options))
		return nil
	}
	attrs, err := encodeValues(session.Values)
	if err != nil {
		return fmt.Errorf("gorillastore: save session %q: %w", session.Name(), err)
	}
	now := time.Now()
	maxAge := time.Duration(session.Options.MaxAge) * time.Second
	ld := st.get(session)
	if session.ID != "" && (ld == nil || ld.id != session.ID) {
		// Saved with another request than it was loaded with: compare
		// with the stored session.
		if ld, err = s.reload(ctx, session.ID); err != nil {
			return fmt.Errorf("gorillastore: save session %q: %w", session.Name(), err)
		}
	}
	if ld == nil && len(attrs) > 0 {
		if f := st.getFresh(session); f != nil && !f.renew && f.carried != "" {
			// The cookie named no session: a new one must not replace
			// the ID of a renewed session in the browser.
			renamed, err := s.renamed(ctx, f.carried)
			if err != nil {
				return fmt.Errorf("gorillastore: save session %q: %w", session.Name(), err)
			}
			if renamed {
				s.logger().Debug("gorillastore: session ID renewed by another request; this one's changes are dropped", "name", session.Name())
				return nil
			}
		}
	}
	var next *loaded
	if ld == nil {
		next, err = s.create(ctx, attrs, now, maxAge)
	} else {
		next, err = s.update(ctx, ld, attrs, now, maxAge)
	}
	if errors.Is(err, replication.ErrSessionRenewed) {
		// Renewed meanwhile, by a login in another request: the browser
		// holds the new ID, or gets it with that request's response.
		s.logger().Debug("gorillastore: session ID renewed by another request; this one's changes are dropped", "name", session.Name())
		return nil
	}
	if err != nil {
		return fmt.Errorf("gorillastore: save session %q: %w", session.Name(), err)
	}
	st.set(session, next)
	if next == nil {
		// Nothing to keep, or the session was destroyed meanwhile (a
		// logout in another tab): the logout wins.
		if session.ID != "" {
			session.ID = ""
			expired := *session.Options
			expired.MaxAge = -1
			http.SetCookie(w, sessions.NewCookie(session.Name(), "", &expired))
		}
		return nil
	}
	if ld != nil && next.id == ld.id && next.expires.Equal(ld.expires) {
		// The cookie the browser has says all there is: the ID, and the
		// deadline as of the last write. Setting it again would, for a
		// request still in flight when another one renewed the ID, hand
		// the browser the old ID back.
		return nil
	}
	session.ID = next.id
	encoded, err := securecookie.EncodeMulti(session.Name(), session.ID, s.Codecs...)
	if err != nil {
		return fmt.Errorf("gorillastore: save session %q: sign cookie: %w", session.Name(), err)
	}
	http.SetCookie(w, sessions.NewCookie(session.Name(), encoded, session.Options))
	return nil
}

// renamed reports whether id, which a request's cookie carried and which
// named no session, was renewed by another request.
func (s *Store) renamed(ctx context.Context, id string) (bool, error) {
	rb, ok := s.Backend.(renamedBackend)
	if !ok {
		return false, nil
	}
	return rb.Renamed(ctx, id)
}

// reload reads session id as stored, for a Save without the state of its
// load; nil when it has ended.
func (s *Store) reload(ctx context.Context, id string) (*loaded, error) {
	stored, ok, err := s.Backend.Get(ctx, id)
	if err != nil || !ok {
		return nil, err
	}
	ld := &loaded{id: id, attrs: map[string][]byte{}, expires: stored.Expires()}
	for name, b := range stored.All() {
		if ours(name) {
			ld.attrs[name] = b
		}
	}
	return ld, nil
}

// create stores a new session with attrs; nil when there is nothing to
// store.
func (s *Store) create(ctx context.Context, attrs map[string]value, now time.Time, maxAge time.Duration) (*loaded, error) {
	if len(attrs) == 0 {
		return nil, nil
	}
	next := &loaded{id: sessionid.New(), attrs: make(map[string][]byte, len(attrs)), expires: now.Add(maxAge)}
	c := replication.Changes{Set: make(map[string][]byte, len(attrs)), Lifetime: maxAge, ExpiresAt: next.expires}
	for name, v := range attrs {
		c.Set[name], next.attrs[name] = v.enc, v.enc
	}
	if _, err := s.Backend.Save(ctx, next.id, c); err != nil {
		return nil, err
	}
	return next, nil
}

// update writes what changed between ld, the session as loaded, and
// attrs, and renames the session if RenewID asked for it. It returns the
// session as now stored, nil when it has ended meanwhile, or
// ErrSessionRenewed when another request renewed its ID.
func (s *Store) update(ctx context.Context, ld *loaded, attrs map[string]value, now time.Time, maxAge time.Duration) (*loaded, error) {
	next := &loaded{id: ld.id, attrs: make(map[string][]byte, len(attrs)), expires: ld.expires}
	c := replication.Changes{Set: map[string][]byte{}}
	for name, v := range attrs {
		next.attrs[name] = v.enc
		if old, ok := ld.attrs[name]; !ok || !v.same(old) {
			c.Set[name] = v.enc
		}
	}
	for name := range ld.attrs {
		if _, ok := attrs[name]; !ok {
			c.Delete = append(c.Delete, name)
		}
	}
	if deadline := now.Add(maxAge); deadline.Sub(ld.expires) >= maxAge/touchFraction {
		c.ExpiresAt, next.expires = deadline, deadline
	}
	var err error
	switch {
	case ld.renew:
		next.id = sessionid.New()
		if _, err = s.Backend.Rename(ctx, ld.id, next.id, c); errors.Is(err, replication.ErrSessionEnded) {
			// Ended or renewed by another request meanwhile: the login
			// goes on in a session of its own.
			return s.create(ctx, attrs, now, maxAge)
		}
	case len(c.Set) == 0 && len(c.Delete) == 0 && c.ExpiresAt.IsZero():
		return next, nil // nothing changed, the deadline is recent enough
	default:
		if _, err = s.Backend.Save(ctx, ld.id, c); errors.Is(err, replication.ErrSessionEnded) && !errors.Is(err, replication.ErrSessionRenewed) {
			return nil, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return next, nil
}

// loaded is a session as the request loaded (or last saved) it.
type loaded struct {
	id      string
	attrs   map[string][]byte // this package's attributes, encoded
	expires time.Time         // the absolute deadline as stored
	renew   bool              // RenewID was called
}

// fresh is a new session of a request: the ID its cookie carried, when
// that named no session, and whether RenewID was called.
type fresh struct {
	carried string
	renew   bool
}

// requestState holds what a request loaded, by session, in the request's
// context, where Save finds it.
type requestState struct {
	mu       sync.Mutex
	sessions map[*sessions.Session]*loaded // guards: loaded sessions
	fresh    map[*sessions.Session]*fresh  // guards: new sessions whose cookie named none
}

// stateKey is the context key of a request's requestState.
type stateKey struct{}

// stateOf returns the state of request r, adding it to r the way
// sessions.GetRegistry adds the registry (by replacing *r) on first use.
func stateOf(r *http.Request) *requestState {
	if st, ok := r.Context().Value(stateKey{}).(*requestState); ok {
		return st
	}
	st := &requestState{sessions: map[*sessions.Session]*loaded{}, fresh: map[*sessions.Session]*fresh{}}
	*r = *r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	return st
}

func (st *requestState) get(s *sessions.Session) *loaded {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sessions[s]
}

func (st *requestState) set(s *sessions.Session, ld *loaded) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if ld == nil {
		delete(st.sessions, s)
		return
	}
	st.sessions[s] = ld
}

func (st *requestState) getFresh(s *sessions.Session) *fresh {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.fresh[s]
}

func (st *requestState) setFresh(s *sessions.Session, f *fresh) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.fresh[s] = f
}

// value is an attribute about to be saved: its encoding, and the Go value
// it encodes, to compare with a loaded encoding that differs in bytes.
type value struct {
	enc    []byte
	v      any
	others bool // v is the map of the values with non-string keys
}

// same reports whether old, a loaded encoding, holds the same value.
func (v value) same(old []byte) bool {
	if bytes.Equal(v.enc, old) {
		return true
	}
	if v.others {
		var dec map[interface{}]interface{}
		return gobDecode(old, &dec) == nil && reflect.DeepEqual(dec, v.v)
	}
	var dec any
	return gobDecode(old, &dec) == nil && reflect.DeepEqual(dec, v.v)
}

// encodeValues encodes session values into attributes.
func encodeValues(values map[interface{}]interface{}) (map[string]value, error) {
	out := make(map[string]value, len(values))
	var others map[interface{}]interface{}
	for k, v := range values {
		key, ok := k.(string)
		if !ok {
			if others == nil {
				others = map[interface{}]interface{}{}
			}
			others[k] = v
			continue
		}
		if len(key) > maxKeyLen {
			return nil, fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(key))
		}
		b, err := gobEncode(&v)
		if err != nil {
			return nil, fmt.Errorf("encode value %q: %w", key, err)
		}
		out[valuePrefix+key] = value{enc: b, v: v}
	}
	if others != nil {
		b, err := gobEncode(&others)
		if err != nil {
			return nil, fmt.Errorf("encode values with non-string keys: %w", err)
		}
		out[othersAttr] = value{enc: b, v: others, others: true}
	}
	return out, nil
}

// decodeSession decodes a stored session's values. attrs holds the
// encodings of the attributes that decoded, so that a Save neither deletes
// nor overwrites the others unless the request set their keys. The error
// reports the attributes that did not decode.
func decodeSession(stored replication.Session) (values map[interface{}]interface{}, attrs map[string][]byte, err error) {
	values = map[interface{}]interface{}{}
	attrs = map[string][]byte{}
	var errs []error
	for name, b := range stored.All() {
		switch {
		case strings.HasPrefix(name, valuePrefix):
			var v any
			if err := gobDecode(b, &v); err != nil {
				errs = append(errs, fmt.Errorf("decode value %q: %w", name[len(valuePrefix):], err))
				continue
			}
			values[name[len(valuePrefix):]] = v
			attrs[name] = b
		case name == othersAttr:
			var others map[interface{}]interface{}
			if err := gobDecode(b, &others); err != nil {
				errs = append(errs, fmt.Errorf("decode values with non-string keys: %w", err))
				continue
			}
			for k, v := range others {
				values[k] = v
			}
			attrs[name] = b
		}
	}
	return values, attrs, errors.Join(errs...)
}

// ours reports whether attribute name was written by this package.
func ours(name string) bool {
	return strings.HasPrefix(name, valuePrefix) || name == othersAttr
}

func gobEncode(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gobDecode(b []byte, v any) error {
	return gob.NewDecoder(bytes.NewReader(b)).Decode(v)
}
