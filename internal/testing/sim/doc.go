// Package sim is a cluster simulator for the replication store: whole
// clusters of replication.Stores on an internal/memnet network, each history
// inside one testing/synctest bubble, so that a minute of virtual time with
// crashes, freezes, partitions and lossy links costs about a tenth of a
// second of CPU and thousands of seeded histories run in a test. It is a
// harness of the library's own tests (TestSim in this package); library
// code does not import it.
//
//	res := sim.Run(t, sim.Options{Seed: 21})  // one history, in a bubble of its own
//	for _, a := range res.Anomalies { ... }   // violated invariants, with evidence
//	fmt.Print(res.Schedule)                   // what the history did
//
// # A history
//
// A seed gives three independent random streams (PCG): the schedule, the
// workload and the network's losses. The schedule (Plan) draws the
// cluster's shape (3 or 5 nodes, AllToAll or Backups(1), Sync or Async
// writes), each node's clock offset (within ±3 s, stepping within ±5 s
// while running, well inside MaxClockOffset) and the faults, all before the
// history starts, as a list of timed events. One driver goroutine runs them
// in time order, with the membership changes they cause. Users (two per
// node, one request at a time each) log in (Save), visit (Update of a
// counter), write an attribute (Save), read (Get; GetAtLeast with the
// version of the last write when writes are asynchronous, whose writes
// load the session with GetAtLeast first, as an httpsession request does),
// probe a session they logged out of, and log out (Destroy), on random
// nodes of the load balancer's rotation. After the workload, the cluster
// must converge (testcluster.Converged, and every view agreeing) within
// ConvergeBound of the last repair, and every session is read on every node.
//
// # What it models
//
// Membership is simulated per node, to reproduce what memberlist makes the
// store see: a crashed member stays listed until each observer's own
// failure detector declares it dead (the first after about a probe
// interval, 0.5-1.5 s; the others later by a gossip delay of up to 2.5 s);
// a restarted node joins with a new incarnation, from its seed's view, and
// the others list it after their own delays (replacing the old incarnation
// when they had not noticed the crash); a frozen node (SIGSTOP) is cut off
// from everyone both ways, its own view stands still, and the others may
// declare it dead and list it again after the thaw; a false suspicion
// drops a live node from some views for a while; a partition makes each
// side drop the other after its delays and list it again after the heal; a
// graceful Leave runs Store.Leave, then the others drop the node after a
// broadcast delay. A killed node's store is closed, so calls to it are
// refused (transport.ErrRefused), as with TCP. Links lose requests and
// responses (memnet.Drop, DropResponses) or add latency (memnet.Delay).
// The load balancer takes frozen, leaving and cut-off nodes out of its
// rotation, and takes them back a second after the repair.
//
// # What it does not model
//
// memberlist itself does not run: its timers and UDP/TCP sockets are not
// bubble-compatible (goroutines blocked in network I/O are not durably
// blocked, so virtual time would never advance), and its exact probe and
// gossip timing is replaced by the delays above. Nor does transport/tcp
// (same reason): connection set-up, coalescing and a silent connection's
// replacement are not exercised. A frozen node's goroutines keep running
// in isolation instead of stopping (its leases lapse during the freeze
// rather than being found lapsed on resume); an operation in flight on a
// node when it is frozen or cut off counts as of unknown outcome, since a
// real client would get its answer only after the repair. A restart that
// keeps its state (Fault.KeepState) starts empty, as the store has no
// snapshots yet. Clock offsets act through Config.Now (versions, expiry,
// update deadlines); leases use the monotonic clock, which every node
// shares.
//
// # The checker
//
// It holds the invariants of examples/internal/chaos's checker: no
// acknowledged write is lost (read-your-writes on any node with synchronous
// writes; at the version GetAtLeast was given with asynchronous ones, unless
// it waited MaxReadWait and gave up), no logout is undone, a visit counter
// never goes backwards and ends equal to the acknowledged Updates (plus at
// most those whose outcome is unknown), replicas agree after convergence,
// and operations succeed in a settled cluster. A loss is legitimate only
// where the store promises nothing: when every owner of a session's
// partition (as of the last convergence, or as the nodes see them now) has
// crashed, or missed writes, since the last convergence (Backups(1): two owners before re-replication; AllToAll:
// every node), when none the serving side reaches is sure to hold it (the
// split brain of docs/consistency.md rules 11 and 18), and, with
// asynchronous writes, when the node that took a write or an owner crashes
// within two seconds of it. Those sessions are tainted and no longer
// checked, and so is a session whose login was in flight when such a fault
// reached it (the checker learns of a login when it returns). Goroutine leaks need no checker: synctest fails a history whose
// goroutines outlive it.
//
// Anomalies whose mechanism is understood are tagged with a known issue
// (known.go); TestSim reports them without failing unless -sim.known names
// them, and fails on every other.
//
// # Reproducing a history
//
// A failing history prints its schedule, its anomalies with each user's
// last operations, and one command that runs it again with a trace of every
// fault, view change and operation:
//
//	go test ./internal/testing/sim -run 'TestSim/seed=21$' -sim.seed=21 -sim.trace -v
//
// The schedule and each user's choices come from the seed alone, but
// goroutines that run at the same virtual instant interleave differently
// from run to run, memnet draws its losses in the order calls arrive, and
// users' later choices follow the outcomes they get; so a replay follows
// the same faults at the same times, and a failure that depends on a race
// within an instant may need a few runs (-count=10) to show again.
package sim
