// Package scsstore keeps the sessions of github.com/alexedwards/scs/v2 in a
// sessionmesh cluster: an scs.Store (with the CtxStore and IterableStore
// variants) on a *replication.Store. An application that already uses scs
// keeps its handlers, its SessionManager and its middleware, and changes one
// line:
//
//	sessionManager := scs.New()
//	st, err := scsstore.New(store) // store: a *replication.Store
//	st.KeepCookie = true // with the ErrorFunc below: see "Renewal is not logout"
//	sessionManager.Store = st
//	sessionManager.ErrorFunc = scsstore.ErrorFunc(nil)
//	http.ListenAndServe(":8080", sessionManager.LoadAndSave(mux))
//
// Every node of the cluster then serves every session: a user who logs in
// on one server stays logged in when the load balancer sends the next
// request elsewhere, and when a server dies.
//
// # What is stored
//
// scs encodes a session's values itself (with its Codec, gob by default)
// and hands the store one opaque blob. The adapter stores the blob as it is,
// in one attribute, and never re-encodes the values: they come back with
// their types (an int stays an int for GetInt). The expiry scs passes to
// Commit is stored next to it and checked by Find, so a deadline scs
// shortens (SetDeadline) takes effect at once; the replicated record itself
// lives until the latest expiry any commit asked for.
//
// Because scs writes the whole blob, two concurrent requests of one user
// that change different keys can still lose one of the changes, as with
// every scs store: the last commit wins, on every node. And a value that no
// longer decodes (its type changed in a deploy) fails the whole session:
// scs answers 500 on every node that cannot decode it.
//
// # One value per attribute: KeyCodec
//
// Set a *KeyCodec as the Codec of both the SessionManager and the Store
// to store each value on its own instead. Commit then writes only the
// values the request changed and deletes those it removed, so concurrent
// requests that change different keys both keep their changes, as with
// httpsession's own API; and a value that no longer decodes is dropped
// from the request's session with a warning, while the rest of the session
// loads and the stored value stays for the nodes that can read it. Stored
// sessions convert on their next commit, in either direction. See KeyCodec.
//
// # Commits that change nothing
//
// With IdleTimeout set, scs commits every session on every request, only
// to push its expiry forward. The adapter compares the blob with the stored
// one (bytes first, then decoded with Codec, because gob writes maps in
// random order) and replicates a commit that changes no value only when
// its expiry moved by at least an eighth of the time it lies ahead (an
// eighth of IdleTimeout for a session kept alive by its idle timeout).
// Reads therefore do not become cluster writes, at a bounded cost: a
// session can end up to IdleTimeout/8 before scs alone would have ended it.
//
// # Semantics
//
// Find never returns the data of an expired, destroyed or unknown session,
// and treats malformed tokens as unknown. A Commit whose expiry has passed
// deletes the session. All (and scs's Iterate) lists the sessions of the
// whole cluster, reading the partitions this node does not hold from their
// owners; it skips sessionmesh's own records (IDs starting with "~")
// and sessions that were not written through this package.
//
// # Renewal is not logout
//
// scs's RenewToken deletes the old token and commits the session under a
// new one. A request of the same browser that was in flight with the old
// token, and commits after the renewal, must not set the cookie back to the
// old token: the browser would be logged out. So Commit of a session that
// ended meanwhile fails with an error matching replication.ErrSessionEnded
// (replication.ErrSessionRenewed after a renewal), and the request's
// changes are lost. scs hands that error to its ErrorFunc instead of
// setting the cookie: install ErrorFunc, which lets the response go out as
// the handler writes it, without the cookie. scs's default ErrorFunc
// answers 500 instead; the user stays logged in either way. A request that
// left with the old token just before the browser received the new one
// finds an empty session, for replication.RenameGrace after the deletion,
// whose commits fail the same way: it neither reads the session nor hands
// the browser the cookie of a new one. scs's Destroy deletes the token the
// same way, so the store cannot tell a logout from a renewal; for a logout
// that comes to the same, since the logout's response clears the cookie.
// The old token never reads or writes the renewed session.
//
// scs sets the cookie on every commit, so a commit that reaches the store
// just before the renewal, and whose response reaches the browser after the
// renewal's, would hand the browser the old token. Set Store.KeepCookie:
// a commit under a token the store held already, whose expiry moved by
// less than a step since the last cookie, then fails with
// ErrCookieUnchanged once the session is stored, scs sets no cookie, and
// ErrorFunc lets the response go out. The browser keeps the token it has,
// which the renewal's response replaces whenever it arrives. With an
// IdleTimeout, a commit that moves the cookie's expiry a step (once in
// IdleTimeout/8) still sets it, and the window remains for that commit.
//
// # Write concern
//
// Use the default synchronous write concern with scs: New refuses a
// *replication.Store with replication.Async (ErrAsync). scs's cookie
// carries only the token, not the version of the last write, so with
// asynchronous writes a request that lands on another node right after a
// commit could miss it.
//
// # Tests
//
// scs.New starts a cleanup goroutine for its default in-memory store even
// when the application replaces the store, and that goroutine never ends
// (its stop channel is created inside the goroutine, so stopping it races).
// Tests that check for leaked goroutines must ignore it:
//
//	goleak.IgnoreTopFunction("github.com/alexedwards/scs/v2/memstore.(*MemStore).startCleanup")
package scsstore
