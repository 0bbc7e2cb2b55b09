// Package replication is the replicated session store of sessionmesh: every
// node holds sessions in its own memory and copies every write to its peers
// over persistent TCP connections, so any node can serve any session and a
// node's death loses nothing.
//
// # Using it
//
// A store needs a Membership (a *cluster.Cluster) and a Transport (a
// *TCPTransport). The transport's address travels in the cluster metadata
// under AddrTag, so create the transport first:
//
//	tr, err := replication.ListenTCP(replication.TCPConfig{
//		BindAddr: "10.0.0.5:7947", SecretKey: secret, Label: "shop",
//	})
//	cl, err := cluster.New(cluster.Config{
//		NodeName: "web-1", BindAddr: "10.0.0.5:7946", Seeds: seeds,
//		SecretKey: secret, Label: "shop",
//		Tags: map[string]string{replication.AddrTag: tr.Addr()},
//	})
//	cfg := replication.DefaultConfig()
//	cfg.Membership, cfg.Transport = cl, tr
//	store, err := replication.New(cfg)
//	defer store.Close() // closes tr too
//
// Most applications then hand the store to httpsession.New and never call
// it directly. For a graceful exit call store.Leave, then the cluster's
// Leave, then Close both.
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
// # Replication and write concern
//
// Every node holds every session (all-to-all, like Tomcat's DeltaManager):
// reads are local. A write is applied locally, encoded once and sent to
// every peer; Save returns when every peer has acknowledged it. A peer
// whose connection fails (a killed process: the kernel resets the
// connection at once) is skipped immediately; it catches up by state
// transfer when it comes back. A peer that does not answer within
// WriteTimeout (a frozen process, a black-holed network) is marked
// degraded: writes are still sent to it but no longer waited for, and
// anti-entropy repairs it and clears the mark once it answers again. So a
// dead or stuck peer delays writes at most once by WriteTimeout, and never
// beyond the failure detector's bound; writes degrade rather than fail.
//
// # Joining, restarting, repairing
//
// A node that starts waits until it has joined the cluster, says hello to
// every peer until each lists it as a member (so their writes now reach
// it), then copies every partition from a ready peer in chunks, merging as
// it goes. Until a partition is copied, reads of its sessions are answered
// by a ready peer. When everything is copied the store closes Ready
// (the example's /healthz turns 200). Nodes never wait for each other's
// transfers: two that start together find no ready peer and are both ready
// at once (they hold nothing anybody needs), which avoids the start-up
// stall of Tomcat's cluster.
//
// Anti-entropy runs every AntiEntropyInterval against a random peer: the
// nodes compare 256 per-partition digests (XORs of per-session hashes,
// maintained on every apply), then, for partitions that differ, per-session
// digests, and exchange only the sessions that differ, in both directions.
// It heals writes missed while a peer was slow, partitioned or not yet
// known.
//
// # Security
//
// Set TCPConfig.SecretKey (32 random bytes, the same on every node, and the
// same as cluster.Config.SecretKey if you like) and TCPConfig.Label (the
// cluster's Label): every replication connection then runs TLS 1.3 with
// mutual authentication by keys derived from the secret and the label, so
// a host without the secret can neither read nor write a session, nor
// pose as a peer. TCPConfig.TLSConfig uses your own certificates instead.
// Rotate the secret with InstallKey, UseKey and RemoveKey on every node
// (and the cluster's keyring), one step at a time: no call fails.
//
// Every input from the network is bounded before it is read or stored:
// frames by MaxFrameSize, handshakes by HandshakeTimeout, connections by
// MaxInboundConns and MaxInboundConnsPerHost, answers waiting for a slow
// reader by about MaxFrameSize per connection, and sessions by
// Config.Limits. What exceeds a bound is refused, counted in Stats and
// logged; a connection that breaks the protocol is closed.
// docs/security.md has the threat model and deployment steps.
//
// # Design notes
//
// The store is not written as one pure state machine driven by a single
// loop (etcd's raft style). Its data path has no ordered log to step
// through: writes are CRDT merges into partitions, each under its own lock,
// so reads and writes of different sessions run in parallel on every core
// and never queue behind a control loop. The pure parts are pure functions
// and are tested as such: merge (record.go), digests and the wire codec
// (messages.go). The control work has one owner goroutine each: the peer
// set is written only by the membership watcher and published as an
// immutable snapshot; catching up, anti-entropy and sweeping each run in
// their own goroutine, all stopped and awaited by Close.
//
// The wire format (messages.go) is msgpack with hand-written encoders and
// decoders: every count and length from the wire is checked against a limit
// and against the bytes left in the frame before anything is allocated.
//
// # Concurrency
//
// Store's methods are safe for concurrent use. Sessions returned by Get are
// immutable snapshots.
package replication
