// Package cluster is sessionmesh's membership layer: it tells every node who
// else is in the cluster, at which address, and when that changes.
//
// It wraps github.com/hashicorp/memberlist (SWIM gossip with failure
// detection) for membership only. No session data goes through it: the
// replication package carries sessions on its own connections and finds them
// through the Tags each member publishes. No memberlist type appears in this
// package's API.
//
// # Usage
//
// Every server process creates one Cluster, usually with the same seed list
// on every node:
//
//	cfg := cluster.DefaultConfig() // LAN timers, gossip on 0.0.0.0:7946
//	cfg.NodeName = "web-1"         // unique; default: the host name
//	cfg.Seeds = []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"}
//	cfg.Tags = map[string]string{"repl": replicationAddr}
//	cfg.SecretKey = key            // 16, 24 or 32 bytes, the same everywhere
//	c, err := cluster.New(cfg)
//	if err != nil {
//		return err
//	}
//	<-c.Settled() // joined, or found nobody and runs alone (bound it with a select if you like)
//
//	for _, m := range c.Members() { // alive and suspect members, this node included
//		fmt.Println(m.Name, m.Addr, m.Incarnation, m.Tags["repl"])
//	}
//
//	events := make(chan cluster.Event, 64)
//	c.Notify(events) // join, leave, fail, update of other members
//
// and at shutdown:
//
//	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
//	defer cancel()
//	_ = c.Leave(ctx) // peers report EventLeave and drop the node at once
//	_ = c.Close()    // stop gossip, release the ports
//
// Close without Leave looks like a crash to the other members: they report
// EventFail once failure detection notices, a second or several later.
//
// # Joining
//
// New binds the port and returns at once; a background joiner does the rest,
// because memberlist never retries a join by itself. The seeds may include
// the node's own address (it is skipped, also behind a 0.0.0.0 bind), may be
// down, and may start later:
//
//   - the joiner tries every seed at once after New, and Settled is closed
//     when that first attempt is over, whether a seed answered or not;
//   - while the node has no other member it retries every JoinRetryInterval,
//     so a node started before its seeds joins as soon as one is up;
//   - once it has members it re-joins, every RejoinInterval, the seeds whose
//     address is not among its members. This merges two groups that formed
//     apart (nodes that all started alone, or a healed network partition);
//   - while the membership changes, it exchanges the full state with one
//     random member every JoinRetryInterval, until five intervals after the
//     last join, leave or failure it saw (also on a node without seeds). A
//     node that missed the gossip of a change learns of it within seconds,
//     not at the next periodic push/pull (PushPullInterval, which memberlist
//     doubles from 64 members): when 64 servers started at once on one
//     2-core machine, one of them listed two of the others only 50 s later.
//
// A seed may be a host name; it is resolved again on every attempt. A seed
// host that drops packets costs TCPTimeout per attempt.
//
// # Discovery
//
// Where nodes come and go under addresses nobody knows in advance
// (Kubernetes, autoscaling groups), set Config.Discover: it is called before
// every join attempt, so at start, every JoinRetryInterval while the node is
// alone and every RejoinInterval afterwards, and the addresses it returns
// are joined like Seeds. DNSSeeds builds one from DNS names, with A/AAAA or
// SRV records, through a Resolver that tests can replace:
//
//	cfg.Discover, err = cluster.DNSSeeds(nil, "_gossip._tcp.mesh.shop.svc.cluster.local")
//
// docs/kubernetes.md deploys a cluster this way, behind a headless Service.
//
// # Identity and restarts
//
// A member is identified by NodeName. Each process also gets an Incarnation,
// its start time in nanoseconds, published in its metadata: a process
// restarted under the same name has a new, larger Incarnation, so a consumer
// can tell that it lost its memory (compare Incarnation, not just Name).
//
// A process restarted at the same address is accepted at once: memberlist
// refutes the old life's suspect or dead state with a higher memberlist
// incarnation. If the old life had not yet been declared failed, peers see
// an EventUpdate carrying the new Incarnation; otherwise an EventJoin.
//
// A process restarted under the same name at another address (a new
// container IP) is rejected as a name conflict until the old life has been
// declared failed and DeadNodeReclaimTime (LAN 10 s, local 1 s) has passed.
// memberlist would then accept it only at a later push/pull (up to
// PushPullInterval, 30 s on a LAN), so the joiner checks, in the state a seed
// returns on join, whether the seed knows this node as it is now, and
// re-joins such a seed every JoinRetryInterval until it does: the new
// address is accepted about DeadNodeReclaimTime after the old life was
// declared failed (measured 1 s with DefaultLocalConfig). A node that left
// gracefully can be replaced at once. Two live processes must never share a
// name: the joiner would keep re-joining, and memberlist logs the conflict.
//
// # Metadata
//
// Tags are published in memberlist's node metadata together with a format
// version, the Incarnation and a leaving flag. The encoding is a compact,
// canonical binary form (version, flags, uvarint incarnation, uvarint count,
// length-prefixed sorted key/value pairs). memberlist limits metadata to
// 512 bytes: New returns an error when the Tags do not fit, leaving room for
// a replication address, a zone and the like, not for data. A member whose
// metadata cannot be decoded (another memberlist application on the same
// port, or a newer format) is still reported, with zero Incarnation and nil
// Tags; the error is logged at debug level.
//
// # Events
//
// An Event reports a change of another member (never of the local node):
//
//   - EventJoin: a member joined, or came back after failing or leaving;
//   - EventLeave: a member called Leave;
//   - EventFail: a member was declared failed (crash, Close without Leave,
//     unreachable). A member whose leave announcement did not reach this node
//     is reported as failed too;
//   - EventUpdate: a member's metadata changed (see Identity and restarts).
//
// Events are sent without blocking, like signal.Notify: a full channel
// loses the event and Stats.DroppedEvents counts it. They are hints: after
// any event re-read Members, which is always complete and current. A
// consumer that must not miss a change polls Members as well.
//
// memberlist reports leaving and failing members through the same callback
// and, in v0.7.0, never fills in the Node.State field that would tell them
// apart. Leave therefore first gossips its metadata with the leaving flag set
// and then memberlist's leave message; peers report EventLeave for a member
// that carries the flag when it goes.
//
// # Failure detection and timers
//
// Every ProbeInterval a node probes one member (round robin) with a UDP ping,
// falling back after ProbeTimeout to indirect pings through other members
// and a TCP ping. A member that fails the probe becomes suspect; it is
// declared failed SuspicionMult * max(1, log10(N)) * ProbeInterval later
// unless it refutes, sooner with confirmations from other members. News
// spreads by piggybacking on probes and every GossipInterval; every
// PushPullInterval each node exchanges its full view with one random member.
//
//	                      DefaultConfig (LAN)   DefaultLocalConfig (loopback)
//	ProbeInterval         1s                    200ms
//	ProbeTimeout          500ms                 100ms
//	SuspicionMult         4                     2
//	PushPullInterval      30s                   1s
//	GossipInterval        200ms                 50ms
//	TCPTimeout            10s                   1s
//	JoinRetryInterval     2s                    200ms
//	RejoinInterval        30s                   1s
//	DeadNodeReclaimTime   10s                   1s
//	crash detected after  about 6-7s            about 0.8-1.2s
//	graceful leave seen   under 1s              about 0.1-0.2s
//
// DefaultConfig uses memberlist's LAN values; keep them for servers on one
// network. DefaultLocalConfig is for tests, demos and development on one host:
// on a loaded or real network its timers cause false suspicions. Between the
// two, lower ProbeInterval (and ProbeTimeout, which should stay above your
// 99th percentile round trip) for faster detection, and PushPullInterval for
// faster repair of inconsistent views, each at the cost of traffic.
// Detection takes longer without confirmations (two-node clusters) and in
// larger clusters (the log10(N) factor).
//
// Suspect members stay in Members until they are declared failed, and
// memberlist v0.7.0 does not tell its users which members are suspect, so
// Members reports them as StateAlive. A data path must therefore react to
// connection errors (EOF and RST arrive at once when a process dies) rather
// than wait for membership.
//
// # Security
//
// Set SecretKey to encrypt and authenticate all gossip (a node with another
// key or none cannot join or inject members), and Label to keep clusters that
// share a network apart. Without a key, gossip is clear text and any host
// that can reach the port can join.
//
// Rotate the key on a running cluster without downtime in three steps, each
// applied to every member before the next starts:
//
//	c.InstallKey(newKey) // accepted from now on
//	c.UseKey(newKey)     // sealed with from now on
//	c.RemoveKey(oldKey)  // refused from now on
//
// A node that restarts in the middle gets every key still in use:
// SecretKey (the primary) and SecondaryKeys. The replication transport has
// the same three calls for its own keyring (tcp.Transport).
//
// # Concurrency contract
//
// All methods of Cluster are safe for concurrent use by multiple goroutines.
//
//   - New returns at once; it never waits for seeds.
//   - LocalMember, Members, Settled and Stats never block on the network or
//     on memberlist: they read state that memberlist's callbacks maintain.
//   - Notify and StopNotify take a short lock. Events are sent from
//     memberlist's goroutines while memberlist holds its internal lock, with a
//     non-blocking send: a slow consumer loses events, it never stalls
//     gossip. When StopNotify returns no further event is sent on that
//     channel.
//   - Leave blocks until its broadcasts are done or ctx ends; the broadcasts
//     then continue in the background for at most a few seconds.
//   - Close blocks until the joiner has stopped, a Leave in progress has
//     finished its broadcasts, and memberlist has released its ports. It is
//     idempotent. A few memberlist goroutines (a probe in flight, a
//     connection handler) end up to 8 ProbeIntervals or one TCPTimeout
//     later; leak checkers such as goleak need that much patience.
//
// The memberlist callbacks of this package (unexported adapters) never block
// and never call back into memberlist: memberlist invokes them with its node
// lock held, and calling its Members from there deadlocks.
//
// # Logging
//
// The package logs through Config.Logger (default slog.Default()) with the
// attribute node=NodeName. memberlist's own lines are bridged to the same
// logger at their levels ([DEBUG], [INFO], [WARN], [ERR]) with
// component=memberlist; after Close they are all logged at debug level, as
// memberlist's leftover goroutines report errors of the closed sockets.
// Failed join attempts are logged at debug level; the outcome of the first
// attempt at info level.
package cluster
