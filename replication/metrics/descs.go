package metrics

import "github.com/prometheus/client_golang/prometheus"

// namespace prefixes every metric name.
const namespace = "sessionmesh"

// descs are the descriptors of every metric; doc.go lists them. Keep the
// two in step.
type descs struct {
	// store
	info, ready, fullyReplicated, underReplicated        *prometheus.Desc
	partitions, sessions, peers                          *prometheus.Desc
	writes, writeErrors, degradedWrites, rewrittenWrites *prometheus.Desc
	ownerLosses                                          *prometheus.Desc
	skippedSends, remoteReads                            *prometheus.Desc
	behindReads, staleReads                              *prometheus.Desc
	transferred, handedOff                               *prometheus.Desc
	repairs, repairedRecords                             *prometheus.Desc
	rejected, expired, droppedEvents                     *prometheus.Desc
	writeDuration                                        *prometheus.Desc
	peerClockOffset, healthy, peerRefuses                *prometheus.Desc
	zones, singleZone                                    *prometheus.Desc
	sessionBytes, budgetSessions, budgetBytes            *prometheus.Desc
	budgetUsed, refusedSessions                          *prometheus.Desc
	snapshots, snapshotFailures                          *prometheus.Desc
	snapshotBytes, snapshotSeconds                       *prometheus.Desc
	// cluster
	members, joinAttempts, joinFailures, stateSyncs, clusterDroppedEvents *prometheus.Desc
	// transport
	openConns, queuedFrames                       *prometheus.Desc
	dials, dialFailures, accepted, rejectedConns  *prometheus.Desc
	handshakeFailures, retiredConns, connFailures *prometheus.Desc
	framesSent, bytesSent, flushes                *prometheus.Desc
	framesReceived, bytesReceived                 *prometheus.Desc
	rejectedFrames, handlerPanics                 *prometheus.Desc
}

func newDescs() descs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
	}
	return descs{
		info:            d("info", "Constant 1, labelled with the store's replication mode and write concern.", "mode", "write_concern"),
		ready:           d("ready", "1 once the store has held a complete copy of every session it owns, else 0."),
		fullyReplicated: d("fully_replicated", "1 when every partition had its full number of ready copies at the last maintenance round: the next failure loses nothing. 0 from the moment an owner looks gone."),
		underReplicated: d("partitions_under_replicated", "Partitions below their copy count at the last maintenance round; -1 before the first round."),
		partitions:      d("partitions", "Partitions this node holds, by role: primary and backup (owned, complete), copying (owned, state transfer in progress), handoff (held without being owned).", "role"),
		sessions:        d("sessions", "Session records this node holds, tombstones included, by the role of their partition (see sessionmesh_partitions).", "role"),
		peers:           d("peers", "Other members this node replicates with, by state: ok, degraded (a write timed out: not waited for until repaired), unresponsive (no status answer within the peer timeout).", "state"),

		writes:          d("writes_total", "Writes applied and replicated by this node."),
		writeErrors:     d("write_errors_total", "Writes a peer refused."),
		degradedWrites:  d("writes_degraded_total", "Writes that stopped waiting for a peer at the write timeout."),
		rewrittenWrites: d("writes_rewritten_total", "Writes sent again above a newer version of one of their attributes that an owner held."),
		ownerLosses:     d("owner_losses_total", "Owners found gone (a broken or refused connection, a missed deadline), each turning sessionmesh_fully_replicated to 0."),
		skippedSends:    d("sends_skipped_total", "Sends to degraded peers dropped to bound memory (anti-entropy repairs them)."),
		remoteReads:     d("remote_reads_total", "Reads answered by a peer."),
		behindReads:     d("reads_behind_total", "Reads that found the session older than the version asked for and waited for it."),
		staleReads:      d("reads_stale_total", "Of the behind reads, those that gave up at the maximum read wait and answered with an older session."),
		transferred:     d("state_transfer_records_total", "Records copied in by state transfer (joins, restarts, re-replication)."),
		handedOff:       d("handoff_records_total", "Records handed to their new owners and dropped here."),
		repairs:         d("repairs_total", "Anti-entropy exchanges that found differences."),
		repairedRecords: d("repaired_records_total", "Records exchanged by anti-entropy repairs."),
		rejected:        d("rejected_total", "Messages or records from peers refused: malformed, over the size limits, or with a clock too far ahead."),
		expired:         d("expired_total", "Sessions and tombstones removed by the expiry sweeper."),
		droppedEvents:   d("session_events_dropped_total", "Session events dropped because the OnSessionEvent callback fell behind."),
		writeDuration:   d("write_duration_seconds", "Time writes took on this node, replication to the other owners included."),
		peerClockOffset: d("peer_clock_offset_seconds", "How far each peer's wall clock is ahead of this node's (negative: behind), measured from lease exchanges; off by at most half a round trip.", "peer"),
		healthy:         d("healthy", "1 while the store takes writes; 0 while it cannot (its clock is too far ahead of the cluster's, or a member that was there before it refuses it): see Store.Health."),
		zones:           d("zones", "Zones the owning members span (members without a zone count as one)."),
		singleZone:      d("single_zone_partitions", "Partitions with several copies all in one zone while the members span several: a zone's loss would lose them."),
		peerRefuses:     d("peer_refuses", "1 for each peer that refuses this node (another protocol version, cluster label, secret or certificate), 0 for the others.", "peer"),
		sessionBytes:    d("session_bytes", "Estimated memory of the session records this node holds, tombstones included (what the byte budget counts)."),
		budgetSessions:  d("budget_sessions", "The most session records this node holds before it refuses new sessions; 0: no bound."),
		budgetBytes:     d("budget_bytes", "The most estimated bytes of session records this node holds before it refuses new sessions; 0: no bound."),
		budgetUsed:      d("budget_used_ratio", "The fill level of the budget: records held over the session budget or bytes held over the byte budget, whichever is higher (1: new sessions are refused); 0 without a budget."),
		refusedSessions: d("sessions_refused_total", "New sessions refused because this node was over its budget (answered 503 by httpsession)."),

		snapshots:        d("snapshots_total", "Snapshots written to the store's SnapshotDir."),
		snapshotFailures: d("snapshot_failures_total", "Snapshot writes that failed (the log says why); the next interval tries again."),
		snapshotBytes:    d("snapshot_bytes", "Size of the last snapshot written; 0 before the first."),
		snapshotSeconds:  d("snapshot_write_seconds", "Time the last snapshot took to write, fsync included; 0 before the first."),

		members:              d("cluster_members", "Live members of the cluster as this node sees them, itself included, by state (alive, suspect).", "state"),
		joinAttempts:         d("cluster_join_attempts_total", "Join attempts, one per seed address tried."),
		joinFailures:         d("cluster_join_failures_total", "Join attempts that failed."),
		stateSyncs:           d("cluster_state_syncs_total", "Full membership state exchanges with a random member while the membership changes."),
		clusterDroppedEvents: d("cluster_events_dropped_total", "Membership events dropped because a subscriber's channel was full."),

		openConns:         d("transport_open_connections", "Replication connections open now, inbound and outbound."),
		queuedFrames:      d("transport_queued_frames", "Frames waiting for a connection writer now: the replication queue depth."),
		dials:             d("transport_dials_total", "Outbound replication connections attempted."),
		dialFailures:      d("transport_dial_failures_total", "Outbound replication connections that failed to dial or complete the handshake."),
		accepted:          d("transport_accepted_connections_total", "Inbound replication connections that completed the handshake."),
		rejectedConns:     d("transport_rejected_connections_total", "Inbound connections closed at once because a connection limit was reached."),
		handshakeFailures: d("transport_handshake_failures_total", "Inbound connections closed before carrying a frame: wrong preface, label or security mode, or a failed TLS handshake."),
		retiredConns:      d("transport_retired_connections_total", "Connections retired by a key rotation or a peer's go-away."),
		connFailures:      d("transport_connection_failures_total", "Established connections closed by an error."),
		framesSent:        d("transport_frames_sent_total", "Frames written, requests and responses."),
		bytesSent:         d("transport_sent_bytes_total", "Bytes of the frames written, headers included."),
		flushes:           d("transport_flushes_total", "Batches of frames handed to the kernel (about one write system call each)."),
		framesReceived:    d("transport_frames_received_total", "Frames read."),
		bytesReceived:     d("transport_received_bytes_total", "Bytes of the frames read, headers included."),
		rejectedFrames:    d("transport_rejected_frames_total", "Frames refused as too large, malformed or of the wrong kind; each closed its connection."),
		handlerPanics:     d("transport_handler_panics_total", "Requests whose handler panicked."),
	}
}

// all returns every descriptor.
func (d *descs) all() []*prometheus.Desc {
	return []*prometheus.Desc{
		d.info, d.ready, d.fullyReplicated, d.underReplicated,
		d.partitions, d.sessions, d.peers,
		d.writes, d.writeErrors, d.degradedWrites, d.rewrittenWrites, d.ownerLosses, d.skippedSends, d.remoteReads,
		d.behindReads, d.staleReads, d.transferred, d.handedOff,
		d.repairs, d.repairedRecords, d.rejected, d.expired, d.droppedEvents,
		d.writeDuration, d.peerClockOffset, d.healthy, d.peerRefuses, d.zones, d.singleZone,
		d.sessionBytes, d.budgetSessions, d.budgetBytes, d.budgetUsed, d.refusedSessions,
		d.snapshots, d.snapshotFailures, d.snapshotBytes, d.snapshotSeconds,
		d.members, d.joinAttempts, d.joinFailures, d.stateSyncs, d.clusterDroppedEvents,
		d.openConns, d.queuedFrames, d.dials, d.dialFailures, d.accepted, d.rejectedConns,
		d.handshakeFailures, d.retiredConns, d.connFailures,
		d.framesSent, d.bytesSent, d.flushes, d.framesReceived, d.bytesReceived,
		d.rejectedFrames, d.handlerPanics,
	}
}
