package replication

import (
	"fmt"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

// This file holds the requests peers send each other: one type per request,
// its encoder, and decodeRequest, the one decoder that turns a frame from a
// peer into a request value for the handler's type switch (handler.go).

// request is a decoded request: one of the *Request types of this file.
type request interface {
	// requestType returns the request's type byte (protocol.go).
	requestType() byte
}

// helloRequest introduces a node to a peer.
type helloRequest struct {
	name        string
	incarnation uint64
	partitions  int
	protocol    uint64 // the highest protocol version the sender speaks; protocolV1 from the first release
}

// applyRequest asks a peer to merge records: a write (msgApply) or a copy
// made by repair or hand-off (msgRepair), which reports no session events.
type applyRequest struct {
	records []*record
	write   bool
	// from is the writer of a write (msgApply), from protocol version 2
	// on; zero from older builds and for copies.
	from memberKey
}

// getRequest asks for one session.
type getRequest struct {
	id string
	// from is the reader, from protocol version 2 on; zero from older
	// builds.
	from memberKey
}

// statusRequest asks for the per-partition readiness, digests and counts.
type statusRequest struct{}

// summaryRequest asks for the (ID, digest) of every record of a partition.
type summaryRequest struct{ partition int }

// fetchRequest asks for records by ID.
type fetchRequest struct{ ids []string }

// fetchRangeRequest asks for a chunk of a partition after a cursor.
type fetchRangeRequest struct {
	partition int
	after     string
	maxBytes  int
}

// leavingRequest announces that a member (this incarnation) is leaving.
type leavingRequest struct {
	name        string
	incarnation uint64
}

// leaseRequest asks the grantor (at its incarnation) for a read lease.
type leaseRequest struct {
	holder  memberKey
	grantor uint64
	// owning identifies the members the holder's view has own partitions
	// (view.owning); 0 from a build that does not send it.
	owning uint64
	// sent is the holder's monotonic clock when it sent the request
	// (nanoseconds), for peerClocks; 0 from a build that does not send it.
	sent int64
}

// updateRequest asks a coordinator to set key to value if its version is
// still expected.
type updateRequest struct {
	id, key  string
	expected version
	value    []byte
	// A request delayed in the network (a partition that heals, TCP
	// retransmission) is refused instead of applied after its caller gave
	// up: applied late, its new version would win over updates
	// acknowledged since. The caller sends no deadline on its own wall
	// clock, which the coordinator's may be far from; it sends its name
	// (from), its monotonic clock when it sent the request (sent) and how
	// long it waits (budget), and the coordinator converts them with its
	// estimate of the caller's monotonic clock (peerClocks).
	from   memberKey
	sent   int64         // nanoseconds on the caller's monotonic clock; 0: none
	budget time.Duration // how long the caller waits for the answer
	// deadline is what builds before this one send instead: when the
	// caller stops waiting, in Unix ms on its wall clock (0 for none).
	// This build sends 0 and honours it only from a caller that sent
	// nothing else.
	deadline int64
	// atLeast is the version of the session the caller has seen
	// (UpdateAtLeast): a coordinator whose copy has not reached it answers
	// updateNotReady. 0: none, and from builds that do not send it.
	atLeast Version
}

// updateCopyRequest asks an owner to apply an update coordinated
// elsewhere, unless another update of the attribute won there.
type updateCopyRequest struct {
	expected version
	delta    *record
	// base is the session the update was built on, as its caller held it,
	// or nil. With asynchronous writes a replica may lack a write the
	// caller's copy has (still on its way from the node that took it);
	// applying base first means that a replica holding the update's
	// version holds every write before it (GetAtLeast). Appended in
	// protocol version 2; earlier builds skip it.
	base *record
	// from is the coordinator; a replica that does not list it as a
	// member refuses the copy (errCopyNotListed). Appended after base;
	// empty from builds that do not send it, and earlier builds skip it.
	from memberKey
}

func (helloRequest) requestType() byte      { return msgHello }
func (getRequest) requestType() byte        { return msgGet }
func (statusRequest) requestType() byte     { return msgStatus }
func (summaryRequest) requestType() byte    { return msgSummary }
func (fetchRequest) requestType() byte      { return msgFetch }
func (fetchRangeRequest) requestType() byte { return msgFetchRange }
func (leavingRequest) requestType() byte    { return msgLeaving }
func (leaseRequest) requestType() byte      { return msgLease }
func (updateRequest) requestType() byte     { return msgUpdate }
func (updateCopyRequest) requestType() byte { return msgUpdateCopy }
func (r applyRequest) requestType() byte {
	if r.write {
		return msgApply
	}
	return msgRepair
}

// decodeRequest decodes a frame from a peer. A frame that does not decode
// yields an error wrapping errMalformed, one whose type this build does
// not know an error wrapping errUnknownRequest.
func decodeRequest(b []byte) (request, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty request", errMalformed)
	}
	d := newDecoder(b[1:])
	defer d.release()
	var req request
	switch b[0] {
	case msgHello:
		n := d.arrayLen(3, 64)
		h := helloRequest{name: d.str(maxIDLen), incarnation: d.uint64(), partitions: int(d.int64()), protocol: protocolV1}
		read := 3
		if n >= 4 {
			h.protocol, read = d.uint64(), 4
		}
		d.skip(n - read)
		req = h
	case msgApply, msgRepair:
		r := applyRequest{records: d.records(), write: b[0] == msgApply}
		if r.write {
			r.from = d.sender()
		}
		req = r
	case msgGet:
		req = getRequest{id: d.str(maxIDLen), from: d.sender()}
	case msgStatus:
		req = statusRequest{}
	case msgSummary:
		req = summaryRequest{partition: decodePartition(d)}
	case msgFetch:
		req = fetchRequest{ids: decodeIDs(d)}
	case msgFetchRange:
		n := d.arrayLen(3, 64)
		req = fetchRangeRequest{partition: decodePartition(d), after: d.str(maxIDLen), maxBytes: int(d.int64())}
		d.skip(n - 3)
	case msgLeaving:
		n := d.arrayLen(2, 64)
		req = leavingRequest{name: d.str(maxIDLen), incarnation: d.uint64()}
		d.skip(n - 2)
	case msgLease:
		n := d.arrayLen(3, 64)
		r := leaseRequest{}
		r.holder.name, r.holder.incarnation, r.grantor = d.str(maxIDLen), d.uint64(), d.uint64()
		read := 3
		if n >= 4 {
			r.owning, read = d.uint64(), 4
		}
		if n >= 5 {
			r.sent, read = d.int64(), 5
		}
		d.skip(n - read)
		req = r
	case msgUpdate:
		req = decodeUpdate(d)
	case msgUpdateCopy:
		req = decodeUpdateCopy(d)
	default:
		return nil, fmt.Errorf("%w %d", errUnknownRequest, b[0])
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return req, nil
}

// sender appends the trailer that protocol version 2 adds to writes and
// reads: who sends them.
func (e *encoder) sender(k memberKey) {
	e.arrayLen(2)
	e.str(k.name)
	e.uint64(k.incarnation)
}

// sender decodes the trailer encoder.sender wrote, or returns the zero
// key for a message of an older build, which has none.
func (d *decoder) sender() memberKey {
	if d.err != nil || d.r.Len() == 0 {
		return memberKey{}
	}
	n := d.arrayLen(2, 64)
	k := memberKey{name: d.str(maxIDLen), incarnation: d.uint64()}
	d.skip(n - 2)
	return k
}

func decodeIDs(d *decoder) []string {
	n := d.arrayLen(0, maxRecordsPerMsg)
	if d.err != nil {
		return nil
	}
	ids := make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		ids = append(ids, d.str(maxIDLen))
	}
	return ids
}

func decodePartition(d *decoder) int {
	p := d.int64()
	if d.err == nil && (p < 0 || p >= numPartitions) {
		d.fail("partition %d out of range", p)
	}
	return int(p)
}

func decodeUpdate(d *decoder) updateRequest {
	n := d.arrayLen(5, 64)
	u := updateRequest{id: d.str(maxIDLen), key: d.str(maxAttrNameLen)}
	u.expected = version{time: hlc.Timestamp(d.uint64()), node: d.uint64()}
	u.value = d.bytesN(d.r.Len())
	read := 5
	if n >= 6 {
		u.deadline, read = d.int64(), 6
	}
	if n >= 10 {
		u.from = memberKey{name: d.str(maxIDLen), incarnation: d.uint64()}
		u.sent, u.budget, read = d.int64(), time.Duration(d.int64()), 10
	}
	if n >= 11 {
		u.atLeast, read = Version(d.uint64()), 11
	}
	d.skip(n - read)
	if d.err == nil && (u.id == "" || u.key == "") {
		d.fail("update without session ID or attribute")
	}
	return u
}

func decodeUpdateCopy(d *decoder) updateCopyRequest {
	n := d.arrayLen(3, 64)
	u := updateCopyRequest{expected: version{time: hlc.Timestamp(d.uint64()), node: d.uint64()}}
	u.delta = d.record()
	read := 3
	if n > read && d.err == nil {
		if !d.isNil() {
			u.base = d.record()
		}
		read++
	}
	if n >= 6 && d.err == nil {
		u.from, read = memberKey{name: d.str(maxIDLen), incarnation: d.uint64()}, 6
	}
	d.skip(n - read)
	switch {
	case d.err != nil:
	case len(u.delta.attrs) != 1:
		d.fail("update copy with %d attributes", len(u.delta.attrs))
	case u.base != nil && u.base.id != u.delta.id:
		d.fail("update copy built on another session")
	}
	return u
}

// Encoders, one per request type.

func encodeHello(h helloRequest) ([]byte, error) {
	e := newEncoder(msgHello)
	e.arrayLen(4)
	e.str(h.name)
	e.uint64(h.incarnation)
	e.int64(int64(h.partitions))
	e.uint64(h.protocol)
	return e.finish()
}

// encodeApply encodes a write of records.
func encodeApply(rs ...*record) ([]byte, error) {
	e := newEncoder(msgApply)
	e.records(rs)
	return e.finish()
}

// encodeWrite is encodeApply for a peer of protocol version 2 or later:
// the writer's name follows the records.
func encodeWrite(from memberKey, rs ...*record) ([]byte, error) {
	e := newEncoder(msgApply)
	e.records(rs)
	e.sender(from)
	return e.finish()
}

// encodeRepair is encodeApply for records that are copies, not writes.
func encodeRepair(rs ...*record) ([]byte, error) {
	e := newEncoder(msgRepair)
	e.records(rs)
	return e.finish()
}

func encodeGet(id string) ([]byte, error) {
	e := newEncoder(msgGet)
	e.str(id)
	return e.finish()
}

// encodeGetFrom is encodeGet for a peer of protocol version 2 or later:
// the reader's name follows the ID.
func encodeGetFrom(id string, from memberKey) ([]byte, error) {
	e := newEncoder(msgGet)
	e.str(id)
	e.sender(from)
	return e.finish()
}

func encodeStatusRequest() ([]byte, error) {
	return []byte{msgStatus}, nil
}

// encodeLeaving announces that the node name (this incarnation) is leaving.
func encodeLeaving(name string, incarnation uint64) ([]byte, error) {
	e := newEncoder(msgLeaving)
	e.arrayLen(2)
	e.str(name)
	e.uint64(incarnation)
	return e.finish()
}

func encodeSummaryRequest(partition int) ([]byte, error) {
	e := newEncoder(msgSummary)
	e.int64(int64(partition))
	return e.finish()
}

func encodeFetch(ids []string) ([]byte, error) {
	e := newEncoder(msgFetch)
	e.arrayLen(len(ids))
	for _, id := range ids {
		e.str(id)
	}
	return e.finish()
}

func encodeFetchRange(partition int, after string, maxBytes int) ([]byte, error) {
	e := newEncoder(msgFetchRange)
	e.arrayLen(3)
	e.int64(int64(partition))
	e.str(after)
	e.int64(int64(maxBytes))
	return e.finish()
}

func encodeLeaseRequest(r leaseRequest) ([]byte, error) {
	e := newEncoder(msgLease)
	e.arrayLen(5)
	e.str(r.holder.name)
	e.uint64(r.holder.incarnation)
	e.uint64(r.grantor)
	e.uint64(r.owning)
	e.int64(r.sent)
	return e.finish()
}

func encodeUpdate(u updateRequest) ([]byte, error) {
	e := newEncoder(msgUpdate)
	e.arrayLen(11)
	e.str(u.id)
	e.str(u.key)
	e.uint64(uint64(u.expected.time))
	e.uint64(u.expected.node)
	e.bin(u.value)
	e.int64(u.deadline)
	e.str(u.from.name)
	e.uint64(u.from.incarnation)
	e.int64(u.sent)
	e.int64(int64(u.budget))
	e.uint64(uint64(u.atLeast))
	return e.finish()
}

func encodeUpdateCopy(u updateCopyRequest) ([]byte, error) {
	e := newEncoder(msgUpdateCopy)
	e.arrayLen(6)
	e.uint64(uint64(u.expected.time))
	e.uint64(u.expected.node)
	e.record(u.delta)
	if u.base != nil {
		e.record(u.base)
	} else {
		e.check(e.enc.EncodeNil())
	}
	e.str(u.from.name)
	e.uint64(u.from.incarnation)
	return e.finish()
}
