// Package scsstore keeps the sessions of github.com/alexedwards/scs/v2 in a
// sessionmesh cluster: an scs.Store (with the CtxStore and IterableStore
// variants) on a *replication.Store. An application that already uses scs
// keeps its handlers, its SessionManager and its middleware, and changes one
// line:
//
//	sessionManager := scs.New()
//	sessionManager.Store = scsstore.New(store) // store: a *replication.Store
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
// every scs store: the last commit wins, on every node. httpsession's own
// API writes only the changed attributes and keeps both.
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
// Find never returns an expired, destroyed or unknown session, and treats
// malformed tokens as unknown. Commit of a session that another request has
// destroyed meanwhile (a logout in another tab) is dropped: the logout wins,
// and the next request gets a new session. A Commit whose expiry has passed
// deletes the session. All (and scs's Iterate) lists the sessions of the
// whole cluster, reading the partitions this node does not hold from their
// owners; it skips sessionmesh's own records (IDs starting with "~")
// and sessions that were not written through this package.
//
// Use the default synchronous write concern with scs: scs's cookie carries
// no version, so with replication.Async a request that lands on another
// node right after a write may not see it yet.
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
