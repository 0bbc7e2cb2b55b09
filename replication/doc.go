// Package replication is the replicated session store of sessionmesh:
// nodes hold sessions in their own memory and copy every write to the other
// owners of the session over persistent TCP connections, so any node can
// serve any session and a node's death loses nothing.
//
// # Using it
//
// A store needs a Membership (who the peers are, and where their stores
// listen) and a transport.Transport (how messages reach them). Most
// applications get both from sessionmesh.StartNode, which joins the cluster
// (package cluster), listens with transport/tcp and starts the store:
//
//	node, err := sessionmesh.StartNode(cfg)
//	store := node.Store // hand it to httpsession.New
//
// To assemble a store by hand:
//
//	tr, err := tcp.Listen(tcp.Config{BindAddr: "10.0.0.5:7947", SecretKey: secret, Label: "shop"})
//	cl, err := cluster.New(cluster.Config{
//		NodeName: "web-1", BindAddr: "10.0.0.5:7946", Seeds: seeds,
//		SecretKey: secret, Label: "shop",
//		Tags: map[string]string{sessionmesh.AddrTag: tr.Addr()},
//	})
//	cfg := replication.DefaultConfig()
//	cfg.Membership, cfg.Transport = sessionmesh.Membership(cl), tr
//	store, err := replication.New(cfg)
//	defer store.Close() // closes tr too
//
// For a graceful exit call store.Leave, then the cluster's Leave, then
// Close both. This package imports neither cluster nor transport/tcp: tests
// run whole clusters of stores over internal/memnet with a membership they
// control.
//
// # Data model
//
// A session is an ID, a set of attributes, a creation time, an absolute
// deadline (its lifetime), an idle timeout and an idle deadline. Every
// attribute carries its own version: a hybrid logical clock reading of the
// writing node (internal/hlc) with that node's ID as tie-break, so versions
// are totally ordered and every node issues increasing ones even when its
// wall clock stalls or steps back.
//
// Replicas merge per attribute, last writer wins: the state of a session is
// an LWW-map, a CRDT. Merging is commutative, associative and idempotent
// (property-tested), so replicas converge whatever order writes arrive in,
// and duplicates and re-sends are harmless. Two concurrent requests of one
// session that write different attributes both survive; two that write the
// same attribute leave the one with the higher version on every replica.
//
// Writes travel as deltas: a record holding only the changed attributes
// (and the session's times, so a delta for a session a node has not seen
// yet creates it instead of vanishing). Whole records travel only for state
// transfer and repair. Deleted attributes and destroyed sessions leave
// tombstones; a destroyed session's tombstone lives until the session's
// absolute deadline, so no late or re-sent delta can bring it back.
//
// Expiry uses absolute deadlines that every node checks on its own clock:
// an expired session is never returned, swept or not. Sweeping goes through
// an expiry wheel, so its cost follows what expires, not how many sessions
// there are. Reading a session (Touch) extends its idle deadline locally;
// the extension is replicated only when it has moved by an eighth of the
// idle timeout, so reads do not become writes.
//
// # Ownership: AllToAll or Backups(n)
//
// Session IDs hash to 256 partitions. Config.Mode says who owns them:
//
//   - AllToAll (the default): every member owns every partition, like
//     Tomcat's DeltaManager. Every read is local; every write goes to every
//     node. Right for a handful of servers.
//   - Backups(n): each partition has a primary and n backups, chosen among
//     the live members by rendezvous (highest random weight) hashing of the
//     partition and the member's name, like Tomcat's BackupManager or
//     Hazelcast's backup-count. A write costs n+1 copies whatever the
//     cluster size; a join or a departure moves only the partitions that
//     must move. A node that does not own a session reads it from the
//     owners (primary first, then backups) and writes to every owner, so
//     any node serves any session. It keeps no copy: there is no cache that
//     could serve a stale session to the browser that just wrote it.
//
// Zones. A member may name its failure domain (Member.Zone: an
// availability zone, a rack). In Backups mode the owners of a partition
// then span as many zones as exist: the primary is still the heaviest
// member, and each backup is the heaviest member of a zone that holds no
// copy yet, until every zone holds one (Hazelcast's ZONE_AWARE, WebLogic's
// replication groups). Losing a whole zone loses no session while another
// zone holds a copy, and re-replication keeps the spread. Stats.SingleZone
// (the status page, sessionmesh_single_zone_partitions) counts the
// partitions whose copies all sit in one zone although there are several:
// 0 is "a zone may go".
//
// # Write concern
//
// A write is applied on this node if it owns the session, encoded once per
// distinct set of records and sent to every other owner; Save returns when
// every live owner has acknowledged it. A peer whose connection fails (a
// killed process: the kernel resets the connection at once) is skipped
// immediately; it catches up by state transfer when it comes back. A peer
// that does not answer within WriteTimeout (a frozen process, a
// black-holed network) is marked degraded: writes are still sent to it but
// no longer waited for, and anti-entropy repairs it and clears the mark
// once it answers again. So a dead or stuck peer delays writes at most once
// by WriteTimeout, never beyond the failure detector's bound: writes
// degrade rather than fail.
//
// # Read leases
//
// A peer that missed writes must not answer from its copies when it comes
// back (a thawed process, a healed partition). So a node answers a read
// locally only while it holds a read lease from each peer that answers it
// (renewed every ReadLease/4 while requests use them, every 16 ReadLeases
// when the node is idle, measured on the monotonic clock); otherwise it
// reads through the owners. A writer that acknowledges a write without
// an owner fences that owner first: no more leases until anti-entropy has
// repaired it, a new epoch that tells it to merge with the other owners,
// and the acknowledgement waits until the leases it holds have expired.
// lease.go has the details and their limits. A node cut off from most
// of the cluster holds no lease from the members it dropped and needs
// none; it is in a minority instead (fewer members in its view than
// vanished from it, see Config.MinorityHold and minority.go), and answers
// nothing from its copies until they are back.
//
// With Config.WriteConcern = Async, a write returns once this node has it;
// each peer's sender goroutine batches writes into one message per round
// trip, and a full queue drops writes that anti-entropy then repairs. Save
// returns the write's Version; a later request that passes it to
// GetAtLeast, on any node, sees the session at least that new, waiting at
// most MaxReadWait for replication to catch up (httpsession carries the
// version in the cookie). docs/consistency.md lists every guarantee, its
// bound and the test that shows it.
//
// Config.OnSessionEvent reports sessions created, destroyed and expired,
// once in the cluster: by the session's primary owner.
//
// # Joining, failing, leaving, repairing
//
// One maintenance loop per node (maintain.go) moves data in the
// background. A node that starts waits until it has joined the cluster,
// says hello to every peer until each lists it as a member (so their
// writes now reach it), then runs rounds, at once after every membership
// change and otherwise every AntiEntropyInterval:
//
//   - It polls every peer's per-partition readiness, digest and record
//     count.
//   - State transfer: it copies, in chunks, every partition it owns but
//     does not hold completely from an owner that does (after a join, a
//     restart, or when it inherits the partitions of a failed member: this
//     is re-replication). When no owner is complete (a rebalance moved every
//     copy, or the cluster is starting) it merges what every holder has.
//     Writes that arrive meanwhile are merged too: the merge is a CRDT, so a
//     write and a copy of the same session combine correctly in any order.
//     Until a partition is complete, its reads go to a complete owner, or
//     merge what every node holds. Nodes never wait for each other's
//     transfers: nodes that start together find nothing to copy and are
//     ready at once, which avoids the start-up stall of Tomcat's cluster.
//   - Anti-entropy: with each peer, for every partition both hold
//     completely and whose 64-bit digests (XORs of per-session hashes,
//     maintained on every apply) differ, it compares per-session digests
//     and exchanges only the sessions that differ, in both directions. It
//     heals writes missed while a peer was slow, frozen, partitioned or not
//     yet known.
//   - Hand-off: it pushes the records of partitions it no longer owns to
//     their owners, and drops them once every owner is complete.
//   - It counts the partitions below their copy count: FullyReplicated.
//     It does not wait for the failure detector (about a second with the
//     local timers, 6 s on a LAN) to notice a crash: the moment a call to
//     an owner fails as a gone peer's does (a refused or broken
//     connection: the kernel closes a killed process's connections at
//     once; or a missed deadline), FullyReplicated turns false, and only a
//     round that starts after it and finds every partition's copies ready,
//     once the dead node owns nothing and re-replication is done, turns it
//     true again.
//
// A peer whose address refuses a connection owns nothing from that moment
// in this node's views: nothing listens there, so its process is gone (a
// frozen process still accepts connections, and a cut network times out,
// it does not refuse). Its partitions move to their new owners, which copy
// them, without waiting for the failure detector's verdict (memberlist's
// suspicion alone lasts SuspicionMult * log10(N) * ProbeInterval: 7 s for
// 64 nodes with LAN timers). A broken connection to an owner starts a
// maintenance round at once, whose poll dials it again. The peer stays a
// peer, asked by reads and hand-offs, until the membership drops it or it
// answers again. Each node decides from its own calls, so views differ
// for a moment, as they do while a verdict spreads. A firewall that
// rejects connections between two live nodes, rather than dropping them,
// makes one look gone to the other for as long: their views then differ,
// and nodes answer from their copies only where they agree on the owners
// (docs/consistency.md, rule 21), so reads stay correct and go through
// the owners more often.
//
// Leave announces the departure to every peer, which stop giving the node
// partitions, then hands everything over: a rolling restart that leaves
// gracefully loses nothing, even with Backups(0). With Backups(n), n+1
// nodes dying before re-replication completes lose the sessions they
// alone held; the replica count protects the window between failures.
//
// # Snapshots and fleet restarts
//
// Replication keeps sessions while some owner lives; a stop of every node at
// once (a deploy with maxUnavailable 100%, a node-pool upgrade, a power
// loss) would lose them all. Config.SnapshotDir makes each node also keep
// what it holds, sessions and tombstones, in a file on its own local disk
// (no external store):
//
//	cfg.SnapshotDir = "/var/lib/myapp/sessions" // one per node
//	cfg.SnapshotInterval = 5 * time.Second      // the default
//
// A goroutine of the store writes a snapshot every SnapshotInterval (none
// when nothing changed since the last). It copies one partition's record
// pointers at a time under that partition's read lock, and encodes and
// writes with no lock held, so requests do not wait for the disk. Leave
// writes one more, and Close after Leave a last one with what arrived
// until the transport closed. A snapshot is written to a temporary file in
// the same directory, synced, renamed over the previous one and the
// directory synced: a crash leaves the old file or the new one, never a
// torn one. The file is sealed with AES-256-GCM under a key derived (HKDF,
// a fresh salt per file) from Config.SnapshotKey, the cluster secret, and
// its header names the cluster by a value derived from the secret and
// Config.SnapshotLabel; sessionmesh.StartNode sets both from NodeConfig.
// Without a secret the key derives from the label alone: corruption is
// detected, but whoever reads the directory reads the sessions.
//
// New loads the snapshot before the store serves. Its records pass the
// gate of records from peers (Config.Limits, the clock bound; the reader
// never holds more than one chunk of about 1 MiB plus one session of
// undecoded input), and what expired is dropped. The loaded partitions are
// not ready: the store reconciles them with its live peers by state
// transfer and anti-entropy, merging by version as always, so a logout
// made elsewhere while the node was down stays final (the tombstone wins)
// and a newer write wins. A snapshot that is corrupt, truncated, of
// another format version, of another cluster (label or secret), or older
// than TombstoneTTL (a logout it missed may have been forgotten since) is
// renamed to sessions.snap.refused, one WARN line says why, and the node
// starts empty. Store.UseSnapshotKey (which sessionmesh's Node.UseKey
// calls) re-seals the next snapshot with a rotated secret, and
// Config.SnapshotOldKeys lets a node started during a rotation read one
// sealed with an older secret.
//
// When every peer is leaving too, or none is left, Leave does not wait for
// a hand-over that cannot happen: with SnapshotDir it writes a snapshot and
// returns at once; without, it logs at WARN how many sessions are lost. A
// stop of every node with SIGTERM thus loses nothing and takes each node
// well under 3 s; a SIGKILL of every node loses the writes of at most the
// last SnapshotInterval (plus the time one write takes). docs/operations.md
// has the costs measured for 100,000 sessions.
//
// # Memory budget
//
// A node holds at most Config.MaxSessions sessions and Config.MaxBytes of
// them (an estimate: IDs, attributes, and a fixed overhead per session and
// per attribute, within 15% of the heap they take; Stats.Bytes), counting
// tombstones and reserved IDs. The budget is checked in one place: where a
// session is created, the local Save of an unknown ID or Rename to a new
// one, against what this node holds. Beyond it the write fails with
// ErrOverloaded and nothing is written:
//
//	if _, err := store.Save(ctx, id, changes); errors.Is(err, replication.ErrOverloaded) {
//		// 503 with Retry-After (httpsession does this): the node is full
//	}
//
// Everything else goes on: writes, touches and updates of sessions that
// exist, Destroy, and every record from a peer (writes, repairs, state
// transfer) are never refused for the budget, since an owner that refused
// what the others hold would disagree with them forever. Give every node
// the same budget. In AllToAll mode every node holds every session, so the
// count the creating node checks is every node's count, and the budget
// bounds the whole cluster: a flood is refused on every node before any
// runs out of memory. It may be passed by the new sessions being created
// on other nodes at the same moment, one per concurrent request. In
// Backups(n) mode a node counts what it holds, its share of the
// partitions; the creating node's count stands for the owners' (hashing
// spreads sessions evenly), so a node may pass its budget by that skew.
// Records with reserved IDs (sessionmesh's own, such as httpsession's
// index of a principal's sessions, written after the session itself) may
// pass the budget by a sixteenth, so that a session admitted under it is
// never left half written. Sessions that exist are never evicted: the
// budget frees up as sessions end and their tombstones expire.
//
// # Security
//
// The transport authenticates and encrypts the connections (transport/tcp:
// TLS 1.3 with keys derived from the cluster secret). The store bounds what
// it accepts from them: sessions by Config.Limits, peer timestamps by
// MaxClockOffset, and every count and length on the wire by the bytes left
// in the frame. What exceeds a bound is refused, counted in
// Stats.Rejected and logged. docs/security.md has the threat model and
// deployment steps.
//
// # Design notes
//
// The store is not written as one pure state machine driven by a single
// loop (etcd's raft style). Its data path has no ordered log to step
// through: writes are CRDT merges into partitions, each under its own lock,
// so reads and writes of different sessions run in parallel on every core
// and never queue behind a control loop. The pure parts are pure functions
// and are tested as such: merge (record.go), digests and the wire codec.
// The control work has one owner goroutine each: the peer
// view (peers and partition owners) is written only by the membership
// watcher and published as an immutable snapshot; the maintenance loop and
// the sweeper each run in their own goroutine, all stopped and awaited by
// Close. Ownership (ownersOf) is a pure function of the partition and the
// member names.
//
// The wire format is msgpack with hand-written encoders and decoders:
// protocol.go has the byte values (append only), codec.go the primitives
// and the record codec, requests.go the requests and decodeRequest, the one
// decoder the handler's type switch (handler.go) runs on, and replies.go
// the replies. Every count and length from the wire is checked against a
// limit and against the bytes left in the frame before anything is
// allocated. Every record from a peer, whatever carried it, passes one gate
// before it is used (admission.go): limits, the clock bound, counting and
// logging.
//
// Time is read through one Clock (clock.go): its wall reading for versions
// and deadlines, its monotonic reading for leases, freshness and waits.
//
// # Concurrency
//
// Store's methods are safe for concurrent use. Sessions returned by Get are
// immutable snapshots.
package replication
