// Package httpsession is what web handlers use: a net/http middleware that
// loads the session of each request from a replicated store and saves what
// the handler changed, and the session API (Put, Get and typed getters,
// Remove, RenewID, Destroy). Its shape follows alexedwards/scs, with three
// differences that matter in a cluster:
//
//   - Only the attributes a request changed are written. Two concurrent
//     requests of one user that change different attributes (two tabs, a page
//     and its XHR) both keep their changes, on every node; scs writes the
//     whole session and one of them is lost.
//   - A request that changes nothing writes nothing (with an IdleTimeout,
//     the idle deadline is extended locally and replicated in coarse steps).
//   - New sessions get an ID only when something is stored in them, so a
//     flood of cookie-less requests creates no state.
//
// Usage:
//
//	store, _ := replication.New(cfg)          // see package replication
//	sessions := httpsession.New(store)
//	mux := http.NewServeMux()
//	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
//		// ... check the password ...
//		sessions.RenewID(r.Context()) // no session fixation
//		sessions.Put(r.Context(), "user", r.FormValue("user"))
//	})
//	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
//		fmt.Fprintln(w, sessions.GetString(r.Context(), "user"))
//	})
//	http.ListenAndServe(":8080", sessions.LoadAndSave(mux))
//
// The session is saved before the first byte of the response is written
// (the middleware wraps the ResponseWriter; http.ResponseController reaches
// the original through Unwrap). Save errors go to Manager.ErrorFunc. A
// missing, malformed, unknown or expired cookie never causes an error: the
// request gets a new, empty session.
//
// A node over its memory budget (replication.Config.MaxSessions,
// MaxBytes) refuses to start new sessions: the default ErrorFunc answers
// such a request 503 Service Unavailable with Retry-After
// (Manager.OverloadRetryAfter) and sets no cookie, while requests of the
// sessions that exist are served as usual.
//
// Values are encoded with msgpack (github.com/vmihailenco/msgpack/v5) when
// they are Put, so a value that cannot be encoded fails there. Read them back
// with the typed getters (GetString, GetInt, ...) or the generic Get[T];
// integers decode into any integer type.
//
// Cookies are HttpOnly, Secure and SameSite=Lax by default; turn Secure off
// only for plain-HTTP development. Session IDs are 256 bits from
// crypto/rand.
//
// # Renewal is not logout
//
// RenewID at login moves the session to a new ID and ends the old one on
// every node. A request of the same browser still in flight with the old
// ID (a slow upload, a page's XHR) does not undo the login: its changes are
// dropped and its response sets no cookie, so the browser keeps the new ID
// the login's response brought it. The same holds for a request that left
// with the old ID just before the browser received the new one. The old ID
// never reads or writes the renewed session, whoever holds it. A session
// that was destroyed (a logout) or expired still clears the cookie.
//
// # Periodic rotation
//
// Manager.RotateEvery optionally gives a logged-in session (one tagged
// with SetPrincipal) a new ID once its ID is that old, on its next
// request, as OWASP recommends for long-lived sessions: an ID that leaked
// (a log line, a shared machine) stops working soon after. Unlike the
// renewal at login, a rotation keeps the old ID working for
// Manager.RotateGrace (30 s): it was as secret as the new one, and the
// browser may have requests in flight with it. Such a request reads and
// writes the session under its new ID, and its response sets the new ID,
// so whichever response the browser gets last it ends with the new ID, and
// no request of the user is lost. After the grace the old ID is treated as
// a renewed one. The renewal at login gets no grace, so an ID planted
// before the login never reaches the session.
//
// # Logging out everywhere
//
// SetPrincipal tags a session with its user at login. Sessions then lists
// the user's live sessions on the whole cluster, and DestroyAll ends all of
// them on every node ("log out everywhere", after a password change or from
// an admin page). Manager.MaxSessionsPerPrincipal optionally caps a user's
// sessions: a login beyond the cap ends the user's oldest one. The index
// behind them is replicated data in the same store, under IDs that start
// with "~", which no session ID does: concurrent logins of one
// user on different nodes all land in it, and a node failure loses none of
// it. Entries of ended sessions are removed lazily, when a listing finds
// them.
//
// # API clients
//
// Clients without cookies set Manager.Header (for example "X-Session-Id")
// and send the session ID in that header: empty to start a session, then the
// value the last response returned in the same header. Browsers on the same
// Manager keep using the cookie.
//
// # scs and gorilla/sessions
//
// Applications written for alexedwards/scs or gorilla/sessions keep their
// code and replicate their sessions with the adapters in the subpackages
// scsstore and gorillastore.
//
// The Manager's methods take the request's context and are safe for
// concurrent use, also by goroutines a handler starts for one request.
package httpsession
