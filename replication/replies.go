package replication

import (
	"fmt"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

// errorResponse encodes an error for the peer.
func errorResponse(err error) []byte {
	msg := err.Error()
	if len(msg) > 512 {
		msg = msg[:512]
	}
	return append([]byte{respError}, msg...)
}

// remoteError is an error reported by a peer's handler.
type remoteError struct{ msg string }

func (e *remoteError) Error() string { return "peer: " + e.msg }

// openResponse checks a response's status and returns a decoder for its
// body.
func openResponse(resp []byte) (*decoder, error) {
	switch {
	case len(resp) == 0:
		return nil, fmt.Errorf("%w: empty response", errMalformed)
	case resp[0] == respError:
		return nil, &remoteError{msg: string(resp[1:])}
	case resp[0] == respUnsupported:
		return nil, decodeUnsupported(resp)
	case resp[0] != respOK:
		return nil, fmt.Errorf("%w: response status %d", errMalformed, resp[0])
	}
	return newDecoder(resp[1:]), nil
}

func okResponse() *encoder { return newEncoder(respOK) }

func encodeHelloReply(h helloReply) ([]byte, error) {
	e := okResponse()
	e.arrayLen(5)
	e.str(h.name)
	e.uint64(h.incarnation)
	e.boolean(h.seesYou)
	e.boolean(h.ready)
	e.uint64(h.protocol)
	return e.finish()
}

func decodeHelloReply(resp []byte) (helloReply, error) {
	d, err := openResponse(resp)
	if err != nil {
		return helloReply{}, err
	}
	defer d.release()
	n := d.arrayLen(4, 64)
	h := helloReply{name: d.str(maxIDLen), incarnation: d.uint64(), seesYou: d.boolean(), ready: d.boolean(), protocol: protocolV1}
	read := 4
	if n >= 5 {
		h.protocol, read = d.uint64(), 5
	}
	d.skip(n - read)
	return h, d.done()
}

// getReply is the answer to a get.
type getReply struct {
	// ready: the replying node is an up-to-date owner of the partition,
	// authoritative for the session.
	ready bool
	// disowned: the replying node does not own the partition in its view
	// of the members (appended in protocol version 2; false from earlier
	// builds). What it holds, if anything, is what it has not handed over
	// yet.
	disowned bool
	// behind: the replying node knows it missed writes (a peer answered
	// its lease request with "degraded here", or it has not merged since
	// a lease told it so), so its copy may lack writes that another owner
	// alone acknowledged (appended after disowned; false from earlier
	// builds, and skipped by them).
	behind bool
	// minority: the replying node's view holds fewer members than
	// vanished from it lately (minority.go), so its copy, and the copies
	// of the nodes that agree with it, may lack what the others wrote
	// (appended after behind; false from earlier builds, and skipped by
	// them).
	minority bool
	r        *record // the session, or nil
}

func encodeGetReply(g getReply) ([]byte, error) {
	e := okResponse()
	e.arrayLen(5)
	e.boolean(g.ready)
	if g.r == nil {
		e.check(e.enc.EncodeNil())
	} else {
		e.record(g.r)
	}
	e.boolean(g.disowned)
	e.boolean(g.behind)
	e.boolean(g.minority)
	return e.finish()
}

func decodeGetReply(resp []byte) (getReply, error) {
	d, err := openResponse(resp)
	if err != nil {
		return getReply{}, err
	}
	defer d.release()
	n := d.arrayLen(2, 64)
	var g getReply
	g.ready = d.boolean()
	if !d.isNil() {
		g.r = d.record()
	}
	read := 2
	if n > read {
		g.disowned, read = d.boolean(), 3
	}
	if n > read {
		g.behind, read = d.boolean(), 4
	}
	if n > read {
		g.minority, read = d.boolean(), 5
	}
	d.skip(n - read)
	return g, d.done()
}

// encodeStatusReply sends per-partition readiness, digests and record
// counts.
func encodeStatusReply(st *peerStatus) ([]byte, error) {
	e := okResponse()
	e.arrayLen(4)
	mask := make([]byte, (len(st.ready)+7)/8)
	for i, ok := range st.ready {
		if ok {
			mask[i/8] |= 1 << (i % 8)
		}
	}
	e.bin(mask)
	e.arrayLen(len(st.digests))
	for _, v := range st.digests {
		e.uint64(v)
	}
	e.arrayLen(len(st.counts))
	for _, v := range st.counts {
		e.uint64(uint64(v))
	}
	e.uint64(st.gen)
	return e.finish()
}

func decodeStatusReply(resp []byte) (*peerStatus, error) {
	d, err := openResponse(resp)
	if err != nil {
		return nil, err
	}
	defer d.release()
	n := d.arrayLen(3, 64)
	mask := d.bytesN(numPartitions / 8)
	if d.err == nil && len(mask) != numPartitions/8 {
		d.fail("readiness mask of %d bytes", len(mask))
	}
	st := &peerStatus{
		ready:   make([]bool, numPartitions),
		digests: make([]uint64, numPartitions),
		counts:  make([]uint32, numPartitions),
	}
	if d.err == nil {
		for i := range st.ready {
			st.ready[i] = mask[i/8]&(1<<(i%8)) != 0
		}
	}
	d.arrayLen(numPartitions, numPartitions)
	for i := 0; i < numPartitions && d.err == nil; i++ {
		st.digests[i] = d.uint64()
	}
	d.arrayLen(numPartitions, numPartitions)
	for i := 0; i < numPartitions && d.err == nil; i++ {
		st.counts[i] = uint32(min(d.uint64(), 1<<32-1))
	}
	read := 3
	if n > read {
		st.gen, read = d.uint64(), 4
	}
	d.skip(n - read)
	if err := d.done(); err != nil {
		return nil, err
	}
	return st, nil
}

func encodeSummaryReply(ready bool, entries []summaryEntry) ([]byte, error) {
	e := okResponse()
	e.arrayLen(2)
	e.boolean(ready)
	e.arrayLen(len(entries))
	for _, s := range entries {
		e.arrayLen(2)
		e.str(s.id)
		e.uint64(s.digest)
	}
	return e.finish()
}

func decodeSummaryReply(resp []byte) (ready bool, entries []summaryEntry, err error) {
	d, err := openResponse(resp)
	if err != nil {
		return false, nil, err
	}
	defer d.release()
	n := d.arrayLen(2, 64)
	ready = d.boolean()
	cnt := d.arrayLen(0, maxRecordsPerMsg)
	if d.err == nil {
		entries = make([]summaryEntry, 0, cnt)
	}
	for i := 0; i < cnt && d.err == nil; i++ {
		fields := d.arrayLen(2, 64)
		entries = append(entries, summaryEntry{id: d.str(maxIDLen), digest: d.uint64()})
		d.skip(fields - 2)
	}
	d.skip(n - 2)
	return ready, entries, d.done()
}

func encodeRecordsReply(rs []*record) ([]byte, error) {
	e := okResponse()
	e.records(rs)
	return e.finish()
}

func decodeRecordsReply(resp []byte) ([]*record, error) {
	d, err := openResponse(resp)
	if err != nil {
		return nil, err
	}
	defer d.release()
	rs := d.records()
	return rs, d.done()
}

func encodeRangeReply(r rangeReply) ([]byte, error) {
	e := okResponse()
	e.arrayLen(3)
	e.boolean(r.ready)
	e.records(r.records)
	e.boolean(r.done)
	return e.finish()
}

func decodeRangeReply(resp []byte) (rangeReply, error) {
	d, err := openResponse(resp)
	if err != nil {
		return rangeReply{}, err
	}
	defer d.release()
	n := d.arrayLen(3, 64)
	r := rangeReply{ready: d.boolean(), records: d.records(), done: d.boolean()}
	d.skip(n - 3)
	return r, d.done()
}

// writeAck is an owner's acknowledgement of a write whose writer said who
// it is.
type writeAck struct {
	// notListed: the owner does not list the writer as a member.
	notListed bool
	// fence is how long the writer must wait before it acknowledges the
	// write (a fence of the owner's: see Store.fenceRemaining).
	fence time.Duration
	// outranked is the newest version the owner holds of an attribute the
	// write set, where it won over the write's; zero when none did. Only
	// for writers of protocol version 3 or later (see rewrite).
	outranked version
}

// encodeWriteAck encodes a: a plain acknowledgement when there is nothing
// else to say.
func encodeWriteAck(a writeAck) ([]byte, error) {
	if !a.notListed && a.fence <= 0 && a.outranked.isZero() {
		return []byte{respOK}, nil
	}
	e := okResponse()
	e.boolean(a.notListed)
	if a.fence > 0 || !a.outranked.isZero() {
		e.int64(int64(max(a.fence, 0)))
	}
	if !a.outranked.isZero() {
		e.uint64(uint64(a.outranked.time))
		e.uint64(a.outranked.node)
	}
	return e.finish()
}

// decodeWriteAck decodes an answer to encodeWrite: the acknowledgement
// and nil, errNotListed, or the peer's error.
func decodeWriteAck(resp []byte) (writeAck, error) {
	var a writeAck
	d, err := openResponse(resp)
	if err != nil {
		return a, err
	}
	defer d.release()
	if d.r.Len() == 0 {
		return a, nil
	}
	a.notListed = d.boolean()
	if d.r.Len() > 0 {
		a.fence = max(time.Duration(d.int64()), 0)
	}
	if d.r.Len() > 0 {
		a.outranked = version{time: hlc.Timestamp(d.uint64()), node: d.uint64()}
	}
	if err := d.done(); err != nil {
		return writeAck{}, err
	}
	if a.notListed {
		return writeAck{}, errNotListed
	}
	return a, nil
}

func decodeAckReply(resp []byte) error {
	d, err := openResponse(resp)
	if err != nil {
		return err
	}
	defer d.release()
	return d.done()
}

func encodeUpdateReply(r updateResult) ([]byte, error) {
	e := okResponse()
	e.arrayLen(6)
	e.int64(int64(r.outcome))
	if r.delta != nil {
		e.record(r.delta)
	} else {
		e.check(e.enc.EncodeNil())
	}
	e.bin(r.current.value)
	e.boolean(r.current.exists)
	e.uint64(uint64(r.current.version.time))
	e.uint64(r.current.version.node)
	return e.finish()
}

func decodeUpdateReply(resp []byte) (updateResult, error) {
	d, err := openResponse(resp)
	if err != nil {
		return updateResult{}, err
	}
	defer d.release()
	n := d.arrayLen(6, 64)
	r := updateResult{outcome: byte(d.int64())}
	if !d.isNil() {
		r.delta = d.record()
	}
	r.current.value = d.bytesN(d.r.Len())
	r.current.exists = d.boolean()
	r.current.version = version{time: hlc.Timestamp(d.uint64()), node: d.uint64()}
	d.skip(n - 6)
	if d.err == nil {
		switch {
		case r.outcome < updateApplied || r.outcome > updateNotReady:
			d.fail("update outcome %d", r.outcome)
		case (r.outcome == updateApplied) != (r.delta != nil):
			d.fail("update outcome %d with delta %v", r.outcome, r.delta != nil)
		}
	}
	return r, d.done()
}

// helloReply answers a hello.
type helloReply struct {
	name        string
	incarnation uint64
	seesYou     bool   // the replying node sends its writes to the caller
	ready       bool   // the replying node holds a complete copy of every partition it owns
	protocol    uint64 // the highest protocol version the replying node speaks; protocolV1 from the first release
}

// rangeReply is one chunk of a partition.
type rangeReply struct {
	ready   bool
	records []*record
	done    bool // no record after the last one returned
}

// summaryEntry is one record's ID and digest.
type summaryEntry struct {
	id     string
	digest uint64
}

// leaseReply is a peer's answer to a lease request.
type leaseReply struct {
	outcome  byte // leaseGranted, leaseBehind, leaseUnknown, leaseNotYou or leaseOtherView
	epoch    uint64
	duration time.Duration
	// wall is the grantor's wall clock when it answered (Unix ns), for
	// wallOffsets; 0 from a build that does not send it.
	wall int64
	// statusGen is the grantor's status generation (Store.statusGen); 0
	// from a build that does not send it.
	statusGen uint64
}

func encodeLeaseReply(r leaseReply) ([]byte, error) {
	e := okResponse()
	e.arrayLen(5)
	e.uint64(uint64(r.outcome))
	e.uint64(r.epoch)
	e.int64(int64(r.duration))
	e.int64(r.wall)
	e.uint64(r.statusGen)
	return e.finish()
}

func decodeLeaseReply(resp []byte) (leaseReply, error) {
	d, err := openResponse(resp)
	if err != nil {
		return leaseReply{}, err
	}
	defer d.release()
	n := d.arrayLen(3, 64)
	r := leaseReply{outcome: byte(min(d.uint64(), 255)), epoch: d.uint64(), duration: time.Duration(d.int64())}
	read := 3
	if n >= 4 {
		r.wall, read = d.int64(), 4
	}
	if n >= 5 {
		r.statusGen, read = d.uint64(), 5
	}
	d.skip(n - read)
	if r.duration < 0 {
		d.fail("negative lease duration")
	}
	return r, d.done()
}
