// Package gorillastore keeps the sessions of github.com/gorilla/sessions in
// a sessionmesh cluster: a sessions.Store on a *replication.Store. An
// application that uses gorilla/sessions keeps its handlers and swaps its
// store:
//
//	store, err := gorillastore.New(replicated, hashKey) // replicated: a *replication.Store
//	...
//	session, _ := store.Get(r, "session-name")
//	session.Values["user"] = "ann"
//	err = session.Save(r, w)
//
// Every node of the cluster then serves every session: a user who logs in
// on one server stays logged in when the load balancer sends the next
// request elsewhere, and when a server dies.
//
// # A server-side store
//
// Like gorilla's FilesystemStore, the cookie holds only the session ID,
// signed (and, with a block key, encrypted) by gorilla/securecookie with the
// keys passed to New; the values stay in the cluster. Key pairs rotate as
// with every gorilla store: pass the new pair first and the old ones after.
//
// Values are encoded with encoding/gob, like FilesystemStore does: any
// value gob can encode is accepted, and custom types must be registered
// with gob.Register, as for every gorilla store. Each value with a string
// key is stored in its own attribute, and Save writes only the values the
// request changed (and deletes the keys it removed): two concurrent requests
// of one user that change different keys both keep their changes, on every
// node, where FilesystemStore or CookieStore would keep only the last
// writer's whole map. Values with keys of other types are stored together
// in one attribute. A value counts as changed when its encoding differs from
// the one loaded and the decoded values differ too (gob writes maps in
// random order). A Save that changes nothing writes nothing, except to push
// the session's deadline forward (see below). Changes are computed against
// the session as loaded by the same request; a Save with a request other
// than the one the session was loaded with compares with the stored session
// instead, and may then undo a concurrent request's removal of a key.
//
// # Lifetime, deletion and cookies
//
// A session ends Options.MaxAge seconds after its last Save, as gorilla's
// cookies do, give or take a step: to keep saves from becoming cluster
// writes, Save moves the stored deadline, and the cookie's expiry with it,
// only once it has moved by an eighth of MaxAge, so a session may end up
// to MaxAge/8 early. Save sets the cookie when the cookie changes: for a
// new session, a renewed ID, and such a step; not on every call, as
// gorilla's own stores do (see "Renewal is not logout" for why). Saving
// with Options.MaxAge <= 0 destroys the session on every node and clears
// the cookie. A new session with no values is not stored and gets no
// cookie.
//
// The default Options are explicit: Path "/", MaxAge 86400 (one day),
// HttpOnly, Secure and SameSite=Lax. gorilla/sessions v1.4.0's CookieStore
// defaults to SameSite=None, which browsers accept only with Secure, over
// HTTPS: plain-HTTP development setups must set Options.Secure = false.
//
// # Errors and security
//
// A missing, tampered, expired or unknown cookie gives a new, empty session
// and no error (gorilla's stores return the securecookie error there, which
// many applications turn into an error page); Get and New return errors only
// for failures of the store, or values that cannot be decoded. Call RenewID
// at login: Save then moves the session to a new ID and ends the old one
// everywhere at the same moment, so an ID planted in the browser before
// login (session fixation) is worthless.
//
// # Values that no longer decode
//
// A value of a type that changed between two builds of the application,
// or that is not registered with gob, fails to decode on the nodes that
// cannot read it. By default Get returns that error, with the session and
// the values that did decode; handlers that answer 500 on any error from
// Get then fail every request of the user on those nodes during a deploy.
// Set Store.DropUndecodable to drop such values with a warning in the log
// and return no error instead: the user loses that one value on those
// nodes, and the store keeps it for the nodes that can read it (unless the
// request sets its key). Keep the default when a missing value must not go
// unnoticed and the handlers handle the error.
//
// # Renewal is not logout
//
// A request of the same browser that was in flight with the old ID during
// a renewal (RenewID), or left with it just before the browser had the new
// one, does not log the user out: its Save writes nothing (its changes are
// lost), sets no cookie and returns nil, so the browser keeps the new ID
// that the renewal's response brought it. It never reads or writes the
// session under its new ID. A session that was destroyed or expired still
// clears the cookie. One window remains: a Save that reaches the store just
// before the renewal does and moves the deadline (a new step) sets the old
// cookie, and if its response reaches the browser after the renewal's, the
// browser holds the old, dead ID.
//
// # Write concern
//
// Use the default synchronous write concern: New refuses a
// *replication.Store with replication.Async (ErrAsync). The cookie carries
// only the session ID, not the version of the last write, so with
// asynchronous writes the next request could land on a node that has not
// received them yet.
package gorillastore
