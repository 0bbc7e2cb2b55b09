// Package chaos is sessionmesh's reliability harness: it proves, or
// disproves, that no acknowledged session write is lost while real server
// processes crash, freeze, restart and lose their network.
//
// Run starts Config.Nodes real examples/login processes (internal/procs)
// behind the non-sticky round-robin proxy (internal/rrproxy), drives
// Config.Users simulated users through it and, while they run, injects one
// fault at a time from a schedule derived from a seed, waiting for the
// cluster to recover completely before the next:
//
//	rep, err := chaos.Run(ctx, chaos.Config{Duration: 2 * time.Minute, Seed: 42, Out: os.Stdout})
//	if err != nil { ... }          // the run could not be made
//	rep.WriteText(os.Stdout)
//	if !rep.OK() { ... }            // anomalies, each with its evidence
//
// The command examples/chaos wraps Run; TestChaos is the CI-sized run and
// grows with SESSIONMESH_CHAOS_DURATION (see docs/reliability.md).
//
// # Faults
//
// Plan deals faults from a seeded generator (math/rand/v2 PCG): the same
// seed, nodes and kinds give the same schedule on every machine (Schedule,
// "chaos -schedule-only"). Each fault has a kind, a node (never one of
// Config.Protect, by default n1, the soak's observer), a hold time and a
// pause:
//
//   - Kill: SIGKILL, down for the hold, restart with the same flags.
//   - Freeze: SIGSTOP for the hold, then SIGCONT. The node stays in the
//     proxy's rotation, so requests sent to it wait until it thaws.
//   - Term: SIGTERM (the server hands its sessions over and leaves), down
//     for the hold, restart.
//   - Partition: every packet between the node and the other nodes is
//     dropped for the hold. The proxy drains the node first and takes it
//     back once every node sees every other again, as a load balancer whose
//     health check follows the cluster's membership would.
//   - Loss: a percentage (10–30%) of the packets between the node and the
//     others is dropped for the hold; the node stays in the rotation.
//
// After the repair the harness waits until every node is ready, sees
// exactly every node, holds every partition it owns and reports every
// session fully replicated (/healthz), then has every user verify itself
// on every node (below), then pauses.
//
// # Why network namespaces
//
// Network faults need traffic between two nodes to be told apart from
// traffic between the proxy and a node, and from other pairs. On one
// loopback interface every connection comes from 127.0.0.1 and from
// ephemeral ports, so no filter can isolate one node. The harness therefore
// gives each node a network namespace of its own with one veth interface
// plugged into a bridge; the harness itself (proxy, users, health polls)
// talks to the nodes from the bridge's address, and the faults are two
// nftables rules on the bridge's forward hook (matching the node's address
// as source or destination, dropping all or "numgen random mod 100 < P"
// of the frames). Dropping on the bridge is silent for both ends, as a
// broken switch is; a drop inside a namespace would make the sender's own
// sendto fail at once with EPERM, which no real partition does. netem
// (delay) is not available on every kernel (not on the one this was built
// on), so delays are not injected; nftables is built into every current
// distribution kernel.
//
// This needs root, iproute2 and nftables. Without them (Config.Network
// NetworkAuto) the nodes run on 127.0.0.1 and the network faults are
// skipped with a message, but stay in the schedule, so a seed means the
// same schedule everywhere. The in-process alternative (internal/testcluster
// over internal/memnet, whose Partition and Drop act on replication
// frames) was not chosen for the main harness: it replaces memberlist's
// failure detector with an instantaneous, agreed membership and the TCP
// transport with memory, which are exactly the parts whose timing produced
// the anomalies found so far. It serves for minimal reproductions (see
// replication's TestLease_NodeThatCannotReachItsPeersIsNotAuthoritative).
//
// Namespaces, the bridge and the nftables table carry the harness's
// process ID in their names; Run removes them when it returns, also on
// Ctrl-C, and a later run removes those of a harness that was killed.
// Every node process runs in a procs.Group, so every process ends with Run,
// and with the harness if it dies (parent-death signal).
//
// # What is checked
//
// Each simulated user sends one request at a time (POST /visit is a
// read-modify-write: two concurrent requests of one user may lose an
// increment by design, docs/consistency.md rule 3), so every count it
// sees is determined by its own acknowledged requests. A user logs in,
// visits (about 80% of its requests), reads GET /me (15%), probes the
// cookie of a session it logged out of (5%), logs out after 5 to 40 visits
// or half the session lifetime, and logs in again. The load balancer's
// transport records every attempt, so a visit that the proxy retried on
// another node after the first broke off mid-request is known to be
// possibly applied twice. The checker (a model per user, fed every answer
// in order) reports:
//
//   - LostWrite: an answer shows fewer visits than acknowledged. A visit
//     whose outcome is unknown (no answer, 5xx, 502) may or may not have
//     counted: it widens the allowed range by one until the next answer.
//   - ExtraCount: more visits than were sent (a double application beyond
//     what the proxy's retries allow).
//   - LoggedOut: 401 for a session never logged out. With backups >= 1,
//     one fault at a time and full recovery between faults, at least one
//     replica of every session is alive (or, for a partition, reachable
//     from the nodes in the rotation) at every moment, so no user may be
//     logged out at all. Two more GET /me tell a transient 401 from a
//     lost session; both count.
//   - Resurrected: a cookie whose logout was acknowledged is answered 200,
//     through the proxy or directly on any node.
//   - WrongUser, ReusedID: an answer for another user; a login that hands
//     out a session ID the user had before.
//   - NotRecovered: the cluster did not settle within RecoveryTimeout.
//   - NodeExited: a node died unasked, failed its graceful stop, or logged
//     a panic or a data race.
//   - Leak: a node process's goroutines or live heap grew beyond
//     SoakLimits between the first and last third of its samples.
//
// After every recovery (an "epoch"), and at the end with the workload
// stopped, every user sends GET /me with its session cookie directly to
// every node, and its logged-out cookies likewise: every replica, and every
// node reading through the owners, must answer exactly the acknowledged
// count, and 401 for the logged-out ones. A request that times out at the
// client may still run later, concurrently with the user's next one, so
// its session is no longer count-checked ("tainted"); the timeout (30s)
// is far above any freeze, and the report counts timeouts.
//
// # What is measured
//
// For each fault, from its injection: when the other nodes had settled
// without the faulted one, when the repair began and the restarted node was
// healthy, when every node was fully replicated again, when every user had
// been verified on every node, and when the last failed, 401 or slow
// (Config.SlowThreshold) answer came ("served normally again"); the
// requests, errors and latency percentiles of the users' requests sent
// meanwhile ("during failover"). The soak samples every node's goroutine
// count and its live heap after a forced GC from its pprof endpoint (the
// login server's -pprof flag) at every quiet point, per process run; n1 is
// never faulted, so its series spans the whole run while its peers crash
// and return with new incarnations. Sessions and tombstones turn over
// within the session lifetime (60s by default; users log in again before
// half of it), so a long run reaches a steady state that must stay flat.
//
// # Concurrency
//
// Run is safe to call from one goroutine at a time per harness process
// (runs in parallel would compete for CPU, not for names). It owns every
// goroutine it starts (workers, health polls) and ends them before it
// returns.
package chaos
