// Package loadgen drives the HTTP contract of the login example the way
// browsers do and measures throughput and latency. It is the engine of
// examples/loadgen; the contract it drives is:
//
//	POST /login   form user=<name>&password=demo  -> 200 {"user":<name>,...}; sets the session cookie
//	GET  /me      -> 200 {"user":<name>,"visits":N,...}, or 401 when not logged in
//	POST /visit   -> 200 {"visits":N+1,...}, or 401 when not logged in
//
// examples/login (sessionmesh) and examples/scslogin (alexedwards/scs on
// Redis or in memory) both implement it, so the same workload measures
// both.
//
// # Workload
//
// Run simulates Config.Users users, each with a cookie jar of its own, on
// Config.Concurrency workers. Each worker owns a fixed share of the users
// and cycles through them, so the requests of one user never overlap, as
// with a browser that waits for each response. Every user first logs in
// (not measured), then the workers issue a Mix of GET /me and POST /visit
// for Config.Warmup (not measured) and Config.Duration (measured).
//
// Every response is checked against what the user's own earlier requests
// imply: the user name, and a visit count exactly one more than the last
// one seen. Sessions that forget a write (lost updates, stale reads after
// a non-sticky load balancer switched servers) show up as Mismatches;
// failed requests and unexpected statuses as Errors. A user that gets 401
// logs in again, as a person would.
//
// # Statistics
//
// Latencies go into a Histogram per worker (logarithmic buckets, 0.8%
// resolution, constant memory), merged at the end; quantiles follow the
// nearest-rank definition. Requests/s is the number of requests completed
// in the measured window divided by its length.
package loadgen
