// Package metrics exports a sessionmesh node's state to Prometheus, through
// github.com/prometheus/client_golang: membership, the sessions this node
// holds and in which role, replication health, the replication transport's
// traffic and queue, write latency, state transfer, repair and rejected input.
//
// # Using it
//
// Register a Collector on a registry of your own, never on the global one
// (several nodes may run in one process, in tests for example), and serve
// that registry:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
//	if _, err := metrics.Register(reg, metrics.Config{
//		Store: store, Cluster: cl, Transport: tr, // Cluster and Transport are optional
//	}); err != nil {
//		return err
//	}
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// To add labels to every metric (a cluster name, say), register through
// prometheus.WrapRegistererWith.
//
// The Collector reads the store's, the cluster's and the transport's
// counters at scrape time: it starts no goroutine, needs no Close, never
// blocks on the network, and costs nothing between scrapes. A scrape reads
// Store.Stats, Store.Partitions and Store.Peers: in-memory counters of the
// store's 256 partitions and its peers.
//
// # Metrics
//
// Every name starts with sessionmesh_. Gauges describe the present, counters
// (_total) only grow from the process start.
//
// The store (replication.Store):
//
//	sessionmesh_info{mode,write_concern}          gauge    constant 1; mode "all-to-all" or "backups(n)", write_concern "sync" or "async"
//	sessionmesh_ready                             gauge    1 once the node has held a complete copy of every session it owns
//	sessionmesh_fully_replicated                  gauge    1 when every partition had its full number of ready copies at the last
//	                                                       maintenance round (the next failure loses nothing), else 0; 0 at once
//	                                                       when an owner looks gone (broken connection, missed deadline)
//	sessionmesh_partitions_under_replicated       gauge    partitions below their copy count at the last round; -1 before the first
//	sessionmesh_partitions{role}                  gauge    partitions held, by role (below)
//	sessionmesh_sessions{role}                    gauge    session records held, tombstones included, by the role of their partition
//	sessionmesh_session_bytes                     gauge    their estimated memory, what Config.MaxBytes bounds
//	sessionmesh_budget_sessions                   gauge    Config.MaxSessions (0: no bound)
//	sessionmesh_budget_bytes                      gauge    Config.MaxBytes (0: no bound)
//	sessionmesh_budget_used_ratio                 gauge    the fill level: the higher of sessions/budget and bytes/budget; at 1 new
//	                                                       sessions are refused (existing ones keep working)
//	sessionmesh_sessions_refused_total            counter  new sessions refused with ErrOverloaded (httpsession answers 503)
//	sessionmesh_peers{state}                      gauge    other members replicated with: ok, degraded (a write timed out; writes no
//	                                                       longer wait for it until anti-entropy repaired it), unresponsive (no
//	                                                       answer to the store's status polls for Config.PeerTimeout)
//	sessionmesh_writes_total                      counter  writes applied and replicated
//	sessionmesh_write_errors_total                counter  writes a peer refused
//	sessionmesh_writes_degraded_total             counter  writes that stopped waiting for a peer at WriteTimeout
//	sessionmesh_writes_rewritten_total            counter  writes sent again above a newer version an owner held (an older write from a clock ahead)
//	sessionmesh_owner_losses_total                counter  owners found gone (broken or refused connection, missed deadline)
//	sessionmesh_sends_skipped_total               counter  sends to degraded peers dropped to bound memory (repaired later)
//	sessionmesh_write_duration_seconds            histogram time writes took, replication to the other owners included
//	                                                       (buckets 50µs to 3.3s, doubling)
//	sessionmesh_peer_clock_offset_seconds{peer}   gauge    how far each peer's wall clock is ahead of this node's (negative: behind)
//	sessionmesh_healthy                           gauge    1 while the store takes writes, 0 while it cannot (Store.Health: clock too far ahead,
//	                                                       or refused by a member that was there before it)
//	sessionmesh_zones                             gauge    zones the owning members span (members without a zone count as one)
//	sessionmesh_single_zone_partitions            gauge    partitions whose copies all sit in one zone while there are several
//	sessionmesh_peer_refuses{peer}                gauge    1 while the peer refuses this node (another protocol version, label, secret or certificate)
//	sessionmesh_remote_reads_total                counter  reads answered by a peer (Backups mode, or a partition being copied)
//	sessionmesh_reads_behind_total                counter  reads that found the session older than the version asked for and waited
//	sessionmesh_reads_stale_total                 counter  of those, reads that gave up at MaxReadWait with an older session
//	sessionmesh_state_transfer_records_total      counter  records copied in by state transfer (join, restart, re-replication)
//	sessionmesh_handoff_records_total             counter  records handed to their new owners and dropped here
//	sessionmesh_repairs_total                     counter  anti-entropy exchanges that found differences
//	sessionmesh_repaired_records_total            counter  records exchanged by anti-entropy
//	sessionmesh_rejected_total                    counter  messages or records from peers refused (malformed, over the limits,
//	                                                       clock too far ahead)
//	sessionmesh_expired_total                     counter  sessions and tombstones removed by the expiry sweeper
//	sessionmesh_session_events_dropped_total      counter  session events dropped because OnSessionEvent fell behind
//	sessionmesh_snapshots_total                   counter  snapshots written to Config.SnapshotDir
//	sessionmesh_snapshot_failures_total           counter  snapshot writes that failed (logged; retried the next interval)
//	sessionmesh_snapshot_bytes                    gauge    size of the last snapshot written
//	sessionmesh_snapshot_write_seconds            gauge    time the last snapshot took to write, fsync included
//
// The roles of sessionmesh_partitions and sessionmesh_sessions, from
// Store.Partitions: primary (this node is the partition's first owner and
// holds it completely), backup (another owner, complete), copying (owned,
// state transfer still running) and handoff (records held without owning
// the partition, on their way to the new owners). In AllToAll mode every
// node owns every partition; the primary is still the owner that reports
// session events. Summed over the roles, sessionmesh_sessions is what this
// node holds in memory.
//
// The membership (cluster.Cluster), when Config.Cluster is set:
//
//	sessionmesh_cluster_members{state}            gauge    live members, this node included, by state: alive, suspect (memberlist
//	                                                       v0.7.0 reports suspects as alive, so suspect stays 0 for now)
//	sessionmesh_cluster_join_attempts_total       counter  join attempts, one per seed address tried
//	sessionmesh_cluster_join_failures_total       counter  join attempts that failed
//	sessionmesh_cluster_state_syncs_total         counter  full state exchanges while the membership changes
//	sessionmesh_cluster_events_dropped_total      counter  membership events dropped because a subscriber was full
//
// The replication transport (tcp.Transport), when
// Config.Transport is set:
//
//	sessionmesh_transport_open_connections        gauge    connections open now, inbound and outbound
//	sessionmesh_transport_queued_frames           gauge    frames waiting for a connection writer: the replication queue depth
//	sessionmesh_transport_frames_sent_total       counter  frames written, requests and responses
//	sessionmesh_transport_sent_bytes_total        counter  their bytes, headers included
//	sessionmesh_transport_flushes_total           counter  batches of frames handed to the kernel (frames/flushes = coalescing)
//	sessionmesh_transport_frames_received_total   counter  frames read
//	sessionmesh_transport_received_bytes_total    counter  their bytes, headers included
//	sessionmesh_transport_dials_total             counter  outbound connections attempted
//	sessionmesh_transport_dial_failures_total     counter  of those, the ones that failed (dial or handshake)
//	sessionmesh_transport_accepted_connections_total  counter  inbound connections that completed the handshake
//	sessionmesh_transport_rejected_connections_total  counter  inbound connections refused at a connection limit
//	sessionmesh_transport_handshake_failures_total    counter  inbound connections closed in the handshake: wrong preface, label or
//	                                                           security mode, failed TLS (a host without the cluster secret)
//	sessionmesh_transport_retired_connections_total   counter  connections retired by a key rotation or a peer's go-away
//	sessionmesh_transport_connection_failures_total   counter  established connections closed by an error (a peer died, a timeout)
//	sessionmesh_transport_rejected_frames_total   counter  frames refused as too large, malformed or of the wrong kind
//	sessionmesh_transport_handler_panics_total    counter  requests whose handler panicked
//
// # Alerts worth having
//
//	sessionmesh_fully_replicated == 0 for 5m       re-replication is stuck: the next failure may lose sessions
//	sessionmesh_peers{state!="ok"} > 0 for 2m      a peer is frozen or cut off while membership still lists it
//	rate(sessionmesh_rejected_total[5m]) > 0       a peer or an attacker sends bad data
//	sessionmesh_budget_used_ratio > 0.8            the node nears its budget: new sessions will be refused (a flood, or
//	                                               a budget too small for the cluster's sessions)
//	rate(sessionmesh_transport_handshake_failures_total[5m]) > 0   a host without the secret (or with another label) knocks
//	histogram_quantile(0.99, rate(sessionmesh_write_duration_seconds_bucket[5m]))   write latency, replication included
package metrics
