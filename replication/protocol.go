package replication

import "errors"

// This file is the protocol's vocabulary: the byte values and limits that
// peers of different builds must agree on. Append only: a value, once
// released, keeps its meaning.

// Request types: the first byte of every request. Append only; values are
// protocol.
const (
	msgHello      byte = 1  // hello: who are you, do you see me as a member, are you ready
	msgApply      byte = 2  // apply: merge these records (writes, deltas, repairs)
	msgGet        byte = 3  // get: one session, for a node that is not ready yet
	msgStatus     byte = 4  // status: per-partition readiness, digests and record counts
	msgSummary    byte = 5  // summary: (ID, digest) of every record of one partition
	msgFetch      byte = 6  // fetch: records by ID
	msgFetchRange byte = 7  // fetch range: a chunk of a partition after a cursor (state transfer)
	msgLeaving    byte = 8  // leaving: the sender is leaving; stop giving it partitions
	msgRepair     byte = 9  // repair: merge these records (anti-entropy, hand-off): not a write
	msgUpdate     byte = 10 // update: compare-and-set one attribute, as the session's coordinator
	msgUpdateCopy byte = 11 // update copy: apply an update coordinated elsewhere, unless another won here
	msgLease      byte = 12 // lease: may the sender answer reads from its own copies (see lease.go)
)

// Protocol versions of the messages between stores (within the transport's
// connection protocol, which has versions of its own). Each node says in
// its hello which it speaks, and speaks to each peer the highest version
// both know (see negotiate.go). A version adds request types, reply
// outcomes or fields; what it adds is only sent to peers that speak it.
// Fields appended to a message are not versioned: every decoder since
// version 1 skips fields it does not know.
const (
	// protocolV1 is the first release's: its hello says no version.
	protocolV1 uint64 = 1
	// protocolV2 adds versions to the hello, the respUnsupported answer
	// to request types a node does not know, the writer's name after the
	// records of a write (msgApply), answered with whether the receiver
	// lists the writer as a member, and the reader's name after the ID of
	// a read (msgGet), answered as not ready by a node that does not list
	// the reader, and, with asynchronous writes, the session an update was
	// built on after an update copy (msgUpdateCopy). Appended to replies:
	// how long the owner's fences still run, in a write's acknowledgement,
	// and whether the replier owns the partition, in a read's answer.
	// Appended since, within version 2: whether the replier knows it
	// missed writes, in a read's answer (read.go, askAll).
	protocolV2 uint64 = 2
	// protocolV3 appends to a write's acknowledgement the newest version
	// the owner holds of an attribute the write set, where it won over the
	// write's, so that the writer writes again above it (write.go,
	// rewrite). Its fence is then always present, zero if none.
	protocolV3 uint64 = 3

	// protocolVersion is the highest version this build speaks, and
	// minProtocolVersion the lowest: peers that speak only older ones are
	// refused, with an error that says so.
	protocolVersion    = protocolV3
	minProtocolVersion = protocolV1
)

// Response statuses: the first byte of every response. Append only; values
// are protocol.
const (
	respOK    byte = 0 // a message body follows
	respError byte = 1 // a UTF-8 error text follows
	// respUnsupported: the request's type is unknown to the replying node,
	// a build older than the sender's; the highest protocol version it
	// speaks follows. The sender falls back to what that version knows.
	respUnsupported byte = 2
)

// Limits on what a peer may send. They are checked before anything is
// allocated for the input they bound.
const (
	maxIDLen          = 256
	maxAttrNameLen    = 1024
	maxAttrsPerRecord = 4096
	maxRecordsPerMsg  = 1 << 20
)

// errMalformed marks a message that does not decode; the peer sending it is
// buggy or hostile.
var errMalformed = errors.New("malformed message")

// errUnknownRequest marks a request whose type this build does not know:
// the sender is a newer build, answered with respUnsupported.
var errUnknownRequest = errors.New("unknown request type")

// Update outcomes. Append only; values are protocol.
const (
	updateApplied  byte = 1 // delta holds the applied write
	updateConflict byte = 2 // current holds the attribute's current state
	updateEnded    byte = 3 // the session is gone
	updateNotReady byte = 4 // ask another owner
)

// Lease outcomes; values are protocol.
const (
	leaseGranted byte = 0 // granted for duration, with the grantor's epoch for the asker
	leaseBehind  byte = 1 // the asker is degraded at the grantor: it missed writes
	leaseUnknown byte = 2 // the grantor does not count the asker as a member
	leaseNotYou  byte = 3 // the grantor is another incarnation than the one asked
	// leaseOtherView: the grantor's view of the owning members differs
	// from the asker's: they may disagree on a partition's owners.
	leaseOtherView byte = 4
)
