package httpsession

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
	"github.com/sessionmesh/sessionmesh/replication"
)

// Store is what a Manager needs from the session store.
// *replication.Store implements it. A Store that also has Renamed, as
// *replication.Store does, lets the Manager keep a client's renewed ID
// when a request with the old one writes (see RenewID).
type Store interface {
	GetAtLeast(ctx context.Context, id string, v replication.Version) (replication.Session, bool, error)
	Save(ctx context.Context, id string, c replication.Changes) (replication.Version, error)
	Touch(ctx context.Context, s replication.Session) error
	Destroy(ctx context.Context, id string) error
	Rename(ctx context.Context, oldID, newID string, c replication.Changes) (replication.Version, error)
	Update(ctx context.Context, id, key string, fn replication.UpdateFunc) ([]byte, replication.Version, error)
}

// asyncStore is implemented by stores that may acknowledge a write before
// every owner has it; *replication.Store does.
type asyncStore interface {
	WriteConcern() replication.WriteConcern
}

// updateAtLeastStore is implemented by stores whose Update can be told the
// version of the session the caller has seen (see
// replication.Store.UpdateAtLeast); *replication.Store does.
type updateAtLeastStore interface {
	UpdateAtLeast(ctx context.Context, id, key string, want replication.Version, fn replication.UpdateFunc) ([]byte, replication.Version, error)
}

// renamedStore is implemented by stores that can tell a session ID that
// was renewed from one that ended (see replication.Store.Renamed);
// *replication.Store does. With a Store without it, a request that carries
// a renewed ID and writes gets a new session, as with an ended one.
type renamedStore interface {
	Renamed(ctx context.Context, id string) (bool, error)
}

var _ Store = (*replication.Store)(nil)

// Manager loads and saves sessions around HTTP requests and gives handlers
// access to them. Create one with New, adjust its fields before serving, and
// wrap handlers with LoadAndSave. It is safe for concurrent use.
type Manager struct {
	// Store holds the sessions. Set by New.
	Store Store

	// IdleTimeout ends a session that has not been used for this long.
	// Zero (the default) means sessions end only at their Lifetime.
	IdleTimeout time.Duration

	// Lifetime ends a session this long after it was created, however
	// active it is. Default 24h.
	Lifetime time.Duration

	// Cookie configures the session cookie.
	Cookie Cookie

	// ErrorFunc writes the response when the store fails (not for unknown
	// or expired sessions, which simply get a new one). Default: a plain
	// 503 Service Unavailable with Retry-After when the store refuses
	// writes because its node's clock is off (replication.ErrClockOffset:
	// another node can serve the request; Retry-After: 5), refuses because
	// its node is in a minority of the cluster (replication.ErrMinority:
	// likewise), or refuses a new
	// session because its node is full (replication.ErrOverloaded:
	// Retry-After from OverloadRetryAfter), else 500 Internal Server
	// Error.
	ErrorFunc func(http.ResponseWriter, *http.Request, error)

	// OverloadRetryAfter is the Retry-After of the default ErrorFunc's
	// answer to a request that would start a session on a node over its
	// budget (replication.ErrOverloaded): how long the client should wait
	// before it tries again. Requests of sessions that exist are never
	// refused for the budget. Default 10s; it is rounded up to whole
	// seconds.
	OverloadRetryAfter time.Duration

	// Logger receives the manager's logs. Default slog.Default().
	Logger *slog.Logger

	// Header, when set, names a request header that carries the session
	// ID instead of the cookie, for API clients: a request that sends it
	// (empty to start a session) gets new and renewed IDs back in the same
	// response header, and no cookie. Default "": cookies only.
	Header string

	// MaxSessionsPerPrincipal, when positive, caps the sessions one
	// principal (see SetPrincipal) may have: saving a tagged session ends
	// the principal's oldest sessions beyond the cap. Default 0: no cap.
	MaxSessionsPerPrincipal int

	// RotateEvery, when positive, gives an authenticated session (one
	// tagged with a principal, see SetPrincipal) a new ID on its first
	// request once its ID is this old (since the login's RenewID, or the
	// last rotation; since its creation for a session that has neither),
	// as OWASP recommends for long-lived sessions: an ID that leaked stops
	// working RotateEvery plus RotateGrace after it was issued, at the
	// latest, unless it is used meanwhile. Unlike RenewID, a rotation
	// keeps the replaced ID working for RotateGrace, since it was as
	// secret as the new one: a request that carries it reads and writes
	// the session under its new ID and its response brings the new ID.
	// So requests in flight during a rotation, or sent before the browser
	// had the new ID, neither log the user out nor lose their changes;
	// a write that reaches the old session just before the rotation
	// renames it can still be lost, as with RenewID. Whoever uses the old
	// ID within the grace is handed the new one: rotation ends an ID that
	// leaked and is not used meanwhile, not one in active use by a thief
	// (that takes DestroyAll). The rotating request pays two writes (the
	// rename, and a record naming the new ID under a hash of the old one),
	// once per RotateEvery; a request whose cookie names no session pays
	// one more read. With replication.Async, a request with the old ID on
	// a node the rotation has not reached yet writes the old session, and
	// that write is lost. Every node must use the same settings. Default 0: IDs
	// change only by RenewID.
	RotateEvery time.Duration

	// RotateGrace is how long the ID a rotation replaced keeps working
	// (see RotateEvery), on the rotating node's clock. Default 30 s.
	RotateGrace time.Duration

	now func() time.Time // the time; nil: time.Now
}

// Cookie configures the session cookie. The defaults are the safe ones:
// HttpOnly, Secure, SameSite=Lax, Path=/.
type Cookie struct {
	// Name of the cookie. Default "session".
	Name string
	// Domain of the cookie. Default: none (host-only).
	Domain string
	// Path of the cookie. Default "/".
	Path string
	// Secure sends the cookie over HTTPS only. Default true; turn it off
	// only for plain-HTTP development setups.
	Secure bool
	// HttpOnly hides the cookie from JavaScript. Default true.
	HttpOnly bool //nolint:revive // named as in net/http.Cookie
	// SameSite restricts cross-site sending. Default http.SameSiteLaxMode.
	SameSite http.SameSite
	// Persist makes the cookie outlive the browser session, expiring with
	// the session's Lifetime. Default true.
	Persist bool
}

// New returns a Manager with the default settings that keeps its sessions
// in store.
func New(store Store) *Manager {
	m := &Manager{
		Store:    store,
		Lifetime: 24 * time.Hour,
		Cookie: Cookie{
			Name:     "session",
			Path:     "/",
			Secure:   true,
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
			Persist:  true,
		},
		OverloadRetryAfter: defaultOverloadRetryAfter,
	}
	m.ErrorFunc = m.defaultErrorFunc
	return m
}

// defaultOverloadRetryAfter is the default of Manager.OverloadRetryAfter.
const defaultOverloadRetryAfter = 10 * time.Second

// defaultErrorFunc answers 503 with Retry-After when the store refuses
// for a while (its clock is off, or it is in a minority of the cluster:
// another node can serve the request; or it is full and refuses new
// sessions), 500 otherwise.
func (m *Manager) defaultErrorFunc(w http.ResponseWriter, _ *http.Request, err error) {
	switch {
	case errors.Is(err, replication.ErrClockOffset), errors.Is(err, replication.ErrMinority):
		w.Header().Set("Retry-After", "5")
	case errors.Is(err, replication.ErrOverloaded):
		d := m.OverloadRetryAfter
		if d <= 0 {
			d = defaultOverloadRetryAfter
		}
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	default:
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	http.Error(w, http.StatusText(http.StatusServiceUnavailable), http.StatusServiceUnavailable)
}

func (m *Manager) logger() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

// LoadAndSave is the middleware that gives next access to the session of
// each request: it loads the session named by the request's cookie (a
// missing, malformed, unknown or expired one gives a new, empty session),
// and saves what next changed before the first byte of the response is
// written, setting the cookie when the session is new or renewed. Only the
// attributes next changed are written, so concurrent requests of one
// session that change different attributes both keep their changes, and a
// request that changes nothing writes nothing.
func (m *Manager) LoadAndSave(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Cookie")
		if m.Header != "" {
			w.Header().Add("Vary", m.Header)
		}
		sd, err := m.load(r)
		if err != nil {
			m.ErrorFunc(w, r, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), sessionKey, sd))
		sw := &responseWriter{ResponseWriter: w, req: r, m: m, sd: sd}
		next.ServeHTTP(sw, r)
		if !sw.committed {
			sw.commit()
		}
	})
}

// load reads the request's session.
func (m *Manager) load(r *http.Request) (*sessionData, error) {
	sd := &sessionData{}
	value, ok := m.requestID(r)
	if !ok {
		return sd, nil
	}
	id, version, ok := parseCookie(value)
	if !ok {
		return sd, nil
	}
	if !m.hints() {
		// With synchronous writes every owner has the last write already:
		// a version from the client only lets it make this node wait.
		version = 0
	}
	s, ok, err := m.Store.GetAtLeast(r.Context(), id, version)
	if err != nil {
		return nil, fmt.Errorf("load session: %w", err)
	}
	if ok {
		sd.id, sd.loaded, sd.seen = id, s, version
		return sd, nil
	}
	if m.RotateEvery > 0 {
		// An ID a rotation replaced moments ago names its successor.
		to, s, ok, err := m.successor(r.Context(), id)
		if err != nil {
			return nil, fmt.Errorf("load session: %w", err)
		}
		if ok {
			sd.id, sd.loaded, sd.forwarded = to, s, true
			return sd, nil
		}
	}
	sd.carried = id
	return sd, nil
}

// renamed reports whether id, an ID a request carried that named no
// session, was renewed by another request.
func (m *Manager) renamed(ctx context.Context, id string) (bool, error) {
	rs, ok := m.Store.(renamedStore)
	if !ok {
		return false, nil
	}
	renamed, err := rs.Renamed(ctx, id)
	if err != nil {
		return false, fmt.Errorf("save session: %w", err)
	}
	return renamed, nil
}

// keepRenewed ends the commit of a request whose session ID was renewed by
// another request (a login in another tab, or while this request was in
// flight): its changes are dropped, and the client keeps the ID it has,
// since the renewal's response brings it the new one. Neither this request
// nor its response reaches the session under its new ID.
func (m *Manager) keepRenewed(sd *sessionData) bool {
	m.logger().Debug("session ID renewed by another request; the changes of this one are dropped")
	sd.changes = nil
	sd.renew = false
	return true
}

// parseCookie splits a cookie value into the session ID and the version
// hint that follows it after a dot, if any. Malformed values are not ok.
func parseCookie(value string) (id string, v replication.Version, ok bool) {
	id, hint, hinted := strings.Cut(value, ".")
	if !sessionid.Valid(id) {
		return "", 0, false
	}
	if hinted {
		var err error
		if v, err = replication.ParseVersion(hint); err != nil {
			return "", 0, false
		}
	}
	return id, v, true
}

// hints reports whether cookies must carry the version of the session's
// last write: with asynchronous writes, so that the next request reads its
// own writes on any node.
func (m *Manager) hints() bool {
	a, ok := m.Store.(asyncStore)
	return ok && a.WriteConcern() == replication.Async
}

// commit saves the session's changes and sets or clears the cookie. It
// reports false when it wrote an error response instead.
func (m *Manager) commit(w http.ResponseWriter, r *http.Request, sd *sessionData) bool {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	ctx := r.Context()
	if sd.destroyedID != "" {
		if err := m.Store.Destroy(ctx, sd.destroyedID); err != nil {
			m.ErrorFunc(w, r, fmt.Errorf("destroy session: %w", err))
			return false
		}
		if sd.id == "" && len(sd.changes) == 0 {
			m.clearID(w, r)
			return true
		}
	}
	if !sd.renew && sd.id == "" && len(sd.changes) > 0 && sd.carried != "" {
		// The request's ID named no session: a new one must not replace
		// the ID of a renewed session in the client.
		renamed, err := m.renamed(ctx, sd.carried)
		if err != nil {
			m.ErrorFunc(w, r, err)
			return false
		}
		if renamed {
			return m.keepRenewed(sd)
		}
	}
	changes := sd.storeChanges(m.IdleTimeout, m.Lifetime)
	var (
		err       error
		version   replication.Version
		setCookie bool
		prevID    = sd.id
	)
	if sd.renew && m.RotateEvery > 0 {
		changes = withIssued(changes, m.clock())
	}
	switch {
	case m.rotationDue(sd):
		version, err = m.rotate(ctx, sd, changes)
		setCookie = err == nil
	case sd.renew && sd.id != "":
		renewed := sessionid.New()
		version, err = m.Store.Rename(ctx, sd.id, renewed, changes)
		if errors.Is(err, replication.ErrSessionEnded) {
			version, err = m.Store.Save(ctx, renewed, changes)
		}
		sd.id, setCookie = renewed, true
	case sd.renew || sd.id == "" && len(sd.changes) > 0:
		sd.id, setCookie = sessionid.New(), true
		version, err = m.Store.Save(ctx, sd.id, changes)
	case len(sd.changes) > 0:
		changes.Base = sd.loaded // no second read of the session on a non-owner
		version, err = m.Store.Save(ctx, sd.id, changes)
		setCookie = m.hints()
		if errors.Is(err, replication.ErrSessionRenewed) && m.RotateEvery > 0 {
			// Rotated while this request was in flight?
			version, err = m.forward(ctx, sd, changes)
		}
	case sd.id != "" && m.IdleTimeout > 0:
		err = m.Store.Touch(ctx, sd.loaded)
	}
	// A request that carried an ID a rotation replaced brings the client
	// the new one.
	setCookie = setCookie || sd.forwarded
	if sd.updated != 0 && err == nil {
		// Update wrote during the request: its version, and the ID of a
		// session it created, must reach the client.
		version = max(version, sd.updated)
		setCookie = setCookie || sd.fresh || m.hints()
	}
	if err == nil {
		err = m.indexPrincipal(ctx, sd, prevID, version)
	}
	if setCookie && err == nil {
		value := sd.id
		if m.hints() && version != 0 {
			value += "." + version.String()
		}
		m.writeID(w, r, value)
	}
	if errors.Is(err, replication.ErrSessionRenewed) {
		// Renewed meanwhile, e.g. by a login in another tab: the user is
		// still logged in, under the new ID.
		return m.keepRenewed(sd)
	}
	if errors.Is(err, replication.ErrSessionEnded) {
		// Destroyed or expired meanwhile, e.g. by a logout in another tab:
		// the logout wins.
		m.logger().Debug("session ended before its changes were saved")
		m.clearID(w, r)
		return true
	}
	if err != nil {
		m.ErrorFunc(w, r, fmt.Errorf("save session: %w", err))
		return false
	}
	sd.changes = nil
	sd.renew = false
	return true
}

func (m *Manager) writeCookie(w http.ResponseWriter, id string) {
	c := m.cookie(id)
	if m.Cookie.Persist && m.Lifetime > 0 {
		c.Expires = time.Now().Add(m.Lifetime).UTC().Truncate(time.Second)
		c.MaxAge = int(m.Lifetime.Seconds())
	}
	http.SetCookie(w, c)
	w.Header().Add("Cache-Control", `no-cache="Set-Cookie"`)
}

func (m *Manager) clearCookie(w http.ResponseWriter) {
	c := m.cookie("")
	c.Expires = time.Unix(1, 0)
	c.MaxAge = -1
	http.SetCookie(w, c)
}

func (m *Manager) cookie(value string) *http.Cookie {
	return &http.Cookie{
		Name:     m.Cookie.Name,
		Value:    value,
		Domain:   m.Cookie.Domain,
		Path:     m.Cookie.Path,
		Secure:   m.Cookie.Secure,
		HttpOnly: m.Cookie.HttpOnly,
		SameSite: m.Cookie.SameSite,
	}
}

// responseWriter commits the session before the first byte of the
// response.
type responseWriter struct {
	http.ResponseWriter
	req       *http.Request
	m         *Manager
	sd        *sessionData
	committed bool
	failed    bool // commit wrote an error response; drop the handler's
}

func (w *responseWriter) commit() {
	w.committed = true
	w.failed = !w.m.commit(w.ResponseWriter, w.req, w.sd)
}

// WriteHeader commits the session, then writes the status code.
func (w *responseWriter) WriteHeader(code int) {
	if !w.committed {
		w.commit()
	}
	if !w.failed {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write commits the session, then writes b.
func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.committed {
		w.commit()
	}
	if w.failed {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush commits the session and flushes the response if the underlying
// writer can.
func (w *responseWriter) Flush() {
	if !w.committed {
		w.commit()
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok && !w.failed {
		f.Flush()
	}
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
