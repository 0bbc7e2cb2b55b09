package httpsession

import (
	"net/http"
)

// Session IDs in a request header, for API clients (Manager.Header).
//
// A request that carries the header, even empty, is served in header
// mode: the session ID is read from the header alone (the cookie is
// ignored), and the response returns a new or renewed ID in the same header
// instead of a cookie, or the header with an empty value when the session
// was destroyed. A client starts a session by sending the header empty, and
// then sends back the last value it received. Requests without the header
// use the cookie as usual, so browsers and API clients share one Manager.
//
// The ID is never put in a header of a response to a request that did not
// send the header: scripts can read response headers, and the cookie is
// HttpOnly precisely so that they cannot read the ID.

// headerMode reports whether r carries the session in Manager.Header.
func (m *Manager) headerMode(r *http.Request) bool {
	if m.Header == "" {
		return false
	}
	_, ok := r.Header[http.CanonicalHeaderKey(m.Header)]
	return ok
}

// requestID returns the session ID and version hint the request carries,
// in the header or the cookie, unparsed; ok is false when it carries none.
func (m *Manager) requestID(r *http.Request) (value string, ok bool) {
	if m.headerMode(r) {
		value = r.Header.Get(m.Header)
		return value, value != ""
	}
	c, err := r.Cookie(m.Cookie.Name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

// writeID hands a new or renewed session ID (with its version hint) to the
// client: in the header for a request in header mode, else in the cookie.
func (m *Manager) writeID(w http.ResponseWriter, r *http.Request, value string) {
	if m.headerMode(r) {
		w.Header().Set(m.Header, value)
		w.Header().Add("Cache-Control", `no-cache="`+http.CanonicalHeaderKey(m.Header)+`"`)
		return
	}
	m.writeCookie(w, value)
}

// clearID tells the client that its session has ended.
func (m *Manager) clearID(w http.ResponseWriter, r *http.Request) {
	if m.headerMode(r) {
		w.Header().Set(m.Header, "")
		return
	}
	m.clearCookie(w)
}
