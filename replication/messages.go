package replication

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

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

// Response statuses: the first byte of every response. Append only; values
// are protocol.
const (
	respOK    byte = 0 // a message body follows
	respError byte = 1 // a UTF-8 error text follows
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

// helloMsg introduces a node to a peer.
type helloMsg struct {
	name        string
	incarnation uint64
	partitions  int
}

// helloReply answers a hello.
type helloReply struct {
	name        string
	incarnation uint64
	seesYou     bool // the replying node sends its writes to the caller
	ready       bool // the replying node holds a complete copy of every partition it owns
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

// encoder builds one message. Its methods record the first error and ignore
// the rest, so encoding code reads straight through.
type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
	err error
}

var encoderPool = sync.Pool{New: func() any {
	e := &encoder{enc: msgpack.NewEncoder(nil)}
	e.enc.UseCompactInts(true)
	return e
}}

// newEncoder returns an encoder whose message starts with the byte kind.
func newEncoder(kind byte) *encoder {
	e := encoderPool.Get().(*encoder)
	e.buf.Reset()
	e.err = nil
	e.enc.Reset(&e.buf)
	e.enc.UseCompactInts(true)
	e.buf.WriteByte(kind)
	return e
}

// finish returns a copy of the message and puts the encoder back in the pool.
func (e *encoder) finish() ([]byte, error) {
	out := bytes.Clone(e.buf.Bytes())
	err := e.err
	if e.buf.Cap() <= 1<<20 { // don't keep huge buffers alive
		encoderPool.Put(e)
	}
	return out, err
}

func (e *encoder) check(err error) {
	if err != nil && e.err == nil {
		e.err = err
	}
}

func (e *encoder) arrayLen(n int)   { e.check(e.enc.EncodeArrayLen(n)) }
func (e *encoder) str(s string)     { e.check(e.enc.EncodeString(s)) }
func (e *encoder) bin(b []byte)     { e.check(e.enc.EncodeBytes(b)) }
func (e *encoder) int64(v int64)    { e.check(e.enc.EncodeInt(v)) }
func (e *encoder) uint64(v uint64)  { e.check(e.enc.EncodeUint(v)) }
func (e *encoder) boolean(v bool)   { e.check(e.enc.EncodeBool(v)) }
func (e *encoder) record(r *record) { encodeRecord(e, r) }

func encodeRecord(e *encoder, r *record) {
	e.arrayLen(7)
	e.str(r.id)
	e.int64(r.created)
	e.int64(r.expires)
	e.int64(r.idleMs)
	e.int64(r.idleUntil)
	e.boolean(r.destroyed)
	e.arrayLen(len(r.attrs))
	for i := range r.attrs {
		a := &r.attrs[i]
		e.arrayLen(5)
		e.str(a.name)
		e.bin(a.value)
		e.uint64(uint64(a.version.time))
		e.uint64(a.version.node)
		e.boolean(a.deleted)
	}
}

func (e *encoder) records(rs []*record) {
	e.arrayLen(len(rs))
	for _, r := range rs {
		encodeRecord(e, r)
	}
}

// decoder reads one message. Like encoder, it keeps the first error; after
// an error every read returns a zero value.
type decoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
	err error
}

var decoderPool = sync.Pool{New: func() any { return &decoder{dec: msgpack.NewDecoder(nil)} }}

// newDecoder returns a decoder reading b. Call release when done.
func newDecoder(b []byte) *decoder {
	d := decoderPool.Get().(*decoder)
	d.r.Reset(b)
	d.dec.Reset(&d.r)
	d.err = nil
	return d
}

func (d *decoder) release() {
	d.r.Reset(nil)
	d.dec.Reset(nil)
	decoderPool.Put(d)
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
	}
}

func (d *decoder) check(err error) {
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("%w: %w", errMalformed, err)
	}
}

// arrayLen reads an array header of at most limit elements, each needing
// at least one byte of input, and at least least elements.
func (d *decoder) arrayLen(least, limit int) int {
	if d.err != nil {
		return 0
	}
	n, err := d.dec.DecodeArrayLen()
	d.check(err)
	switch {
	case d.err != nil:
		return 0
	case n < least || n > limit || n > d.r.Len():
		d.fail("array of %d elements (want %d..%d)", n, least, limit)
		return 0
	}
	return n
}

// skip discards n values (fields added by later protocol versions).
func (d *decoder) skip(n int) {
	for i := 0; i < n && d.err == nil; i++ {
		d.check(d.dec.Skip())
	}
}

// bytesN reads a string or binary of at most limit bytes. A nil stays nil.
func (d *decoder) bytesN(limit int) []byte {
	if d.err != nil {
		return nil
	}
	n, err := d.dec.DecodeBytesLen()
	d.check(err)
	switch {
	case d.err != nil:
		return nil
	case n == -1:
		return nil
	case n < 0 || n > limit || n > d.r.Len():
		d.fail("string of %d bytes (limit %d)", n, limit)
		return nil
	}
	b := make([]byte, n)
	d.check(d.dec.ReadFull(b))
	return b
}

func (d *decoder) str(limit int) string { return string(d.bytesN(limit)) }

func (d *decoder) int64() int64 {
	if d.err != nil {
		return 0
	}
	v, err := d.dec.DecodeInt64()
	d.check(err)
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	v, err := d.dec.DecodeUint64()
	d.check(err)
	return v
}

func (d *decoder) boolean() bool {
	if d.err != nil {
		return false
	}
	v, err := d.dec.DecodeBool()
	d.check(err)
	return v
}

// isNil consumes a nil if one comes next.
func (d *decoder) isNil() bool {
	if d.err != nil {
		return false
	}
	c, err := d.dec.PeekCode()
	d.check(err)
	if d.err != nil || c != 0xc0 {
		return false
	}
	d.check(d.dec.DecodeNil())
	return true
}

// record reads a record and normalises it: attributes sorted by name
// without duplicates, none on a destroyed record.
func (d *decoder) record() *record {
	n := d.arrayLen(7, 64)
	r := &record{
		id:        d.str(maxIDLen),
		created:   d.int64(),
		expires:   d.int64(),
		idleMs:    d.int64(),
		idleUntil: d.int64(),
		destroyed: d.boolean(),
	}
	na := d.arrayLen(0, maxAttrsPerRecord)
	if d.err == nil && na > 0 {
		r.attrs = make([]attr, 0, na)
	}
	for i := 0; i < na && d.err == nil; i++ {
		fields := d.arrayLen(5, 64)
		a := attr{name: d.str(maxAttrNameLen)}
		a.value = d.bytesN(d.r.Len())
		a.version = version{time: hlc.Timestamp(d.uint64()), node: d.uint64()}
		a.deleted = d.boolean()
		d.skip(fields - 5)
		if a.deleted {
			a.value = nil
		}
		r.attrs = append(r.attrs, a)
	}
	d.skip(n - 7)
	if d.err != nil {
		return nil
	}
	if r.id == "" {
		d.fail("record without ID")
		return nil
	}
	if r.destroyed {
		r.attrs = nil
	} else {
		r.attrs = normalizeAttrs(r.attrs)
	}
	return r
}

// normalizeAttrs sorts attributes by name and resolves duplicates with the
// merge rule, so a record from the wire obeys the same invariants as one
// built locally.
func normalizeAttrs(as []attr) []attr {
	sorted := true
	for i := 1; i < len(as); i++ {
		if as[i-1].name >= as[i].name {
			sorted = false
			break
		}
	}
	if sorted {
		return as
	}
	// Sort, then keep the newer of each run of one name (newerAttr is
	// commutative and associative, so the order within a run does not
	// matter). Merging one attribute at a time would cost a peer's message
	// quadratic time and memory.
	slices.SortStableFunc(as, func(a, b attr) int { return strings.Compare(a.name, b.name) })
	out := as[:1]
	for _, a := range as[1:] {
		if last := &out[len(out)-1]; last.name == a.name {
			*last = newerAttr(*last, a)
		} else {
			out = append(out, a)
		}
	}
	return out
}

func (d *decoder) records() []*record {
	n := d.arrayLen(0, maxRecordsPerMsg)
	if d.err != nil {
		return nil
	}
	rs := make([]*record, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		rs = append(rs, d.record())
	}
	if d.err != nil {
		return nil
	}
	return rs
}

// done reports the decoder's error, or an error if input is left over.
func (d *decoder) done() error {
	if d.err == nil && d.r.Len() != 0 {
		d.fail("%d trailing bytes", d.r.Len())
	}
	return d.err
}

// Requests.

func encodeHello(h helloMsg) ([]byte, error) {
	e := newEncoder(msgHello)
	e.arrayLen(3)
	e.str(h.name)
	e.uint64(h.incarnation)
	e.int64(int64(h.partitions))
	return e.finish()
}

func decodeHello(d *decoder) helloMsg {
	n := d.arrayLen(3, 64)
	h := helloMsg{name: d.str(maxIDLen), incarnation: d.uint64(), partitions: int(d.int64())}
	d.skip(n - 3)
	return h
}

func encodeApply(rs ...*record) ([]byte, error) {
	e := newEncoder(msgApply)
	e.records(rs)
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

func decodeLeaving(d *decoder) (name string, incarnation uint64) {
	n := d.arrayLen(2, 64)
	name, incarnation = d.str(maxIDLen), d.uint64()
	d.skip(n - 2)
	return name, incarnation
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

func encodeFetchRange(partition int, after string, maxBytes int) ([]byte, error) {
	e := newEncoder(msgFetchRange)
	e.arrayLen(3)
	e.int64(int64(partition))
	e.str(after)
	e.int64(int64(maxBytes))
	return e.finish()
}

func decodePartition(d *decoder) int {
	p := d.int64()
	if d.err == nil && (p < 0 || p >= numPartitions) {
		d.fail("partition %d out of range", p)
	}
	return int(p)
}

// Responses.

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
	case resp[0] != respOK:
		return nil, fmt.Errorf("%w: response status %d", errMalformed, resp[0])
	}
	return newDecoder(resp[1:]), nil
}

func okResponse() *encoder { return newEncoder(respOK) }

func encodeHelloReply(h helloReply) ([]byte, error) {
	e := okResponse()
	e.arrayLen(4)
	e.str(h.name)
	e.uint64(h.incarnation)
	e.boolean(h.seesYou)
	e.boolean(h.ready)
	return e.finish()
}

func decodeHelloReply(resp []byte) (helloReply, error) {
	d, err := openResponse(resp)
	if err != nil {
		return helloReply{}, err
	}
	defer d.release()
	n := d.arrayLen(4, 64)
	h := helloReply{name: d.str(maxIDLen), incarnation: d.uint64(), seesYou: d.boolean(), ready: d.boolean()}
	d.skip(n - 4)
	return h, d.done()
}

// encodeGetReply answers a get: whether the replying node is ready for the
// partition, and the record or nil.
func encodeGetReply(ready bool, r *record) ([]byte, error) {
	e := okResponse()
	e.arrayLen(2)
	e.boolean(ready)
	if r == nil {
		e.check(e.enc.EncodeNil())
	} else {
		e.record(r)
	}
	return e.finish()
}

func decodeGetReply(resp []byte) (ready bool, r *record, err error) {
	d, err := openResponse(resp)
	if err != nil {
		return false, nil, err
	}
	defer d.release()
	n := d.arrayLen(2, 64)
	ready = d.boolean()
	if !d.isNil() {
		r = d.record()
	}
	d.skip(n - 2)
	return ready, r, d.done()
}

// encodeStatusReply sends per-partition readiness, digests and record
// counts.
func encodeStatusReply(st *peerStatus) ([]byte, error) {
	e := okResponse()
	e.arrayLen(3)
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
	d.skip(n - 3)
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

func decodeAckReply(resp []byte) error {
	d, err := openResponse(resp)
	if err != nil {
		return err
	}
	defer d.release()
	return d.done()
}

func encodeUpdate(u updateRequest) ([]byte, error) {
	e := newEncoder(msgUpdate)
	e.arrayLen(6)
	e.str(u.id)
	e.str(u.key)
	e.uint64(uint64(u.expected.time))
	e.uint64(u.expected.node)
	e.bin(u.value)
	e.int64(u.deadline)
	return e.finish()
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
	d.skip(n - read)
	if d.err == nil && (u.id == "" || u.key == "") {
		d.fail("update without session ID or attribute")
	}
	return u
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

func encodeUpdateReplica(expected version, delta *record) ([]byte, error) {
	e := newEncoder(msgUpdateCopy)
	e.arrayLen(3)
	e.uint64(uint64(expected.time))
	e.uint64(expected.node)
	e.record(delta)
	return e.finish()
}

func decodeUpdateReplica(d *decoder) (version, *record) {
	n := d.arrayLen(3, 64)
	expected := version{time: hlc.Timestamp(d.uint64()), node: d.uint64()}
	r := d.record()
	d.skip(n - 3)
	if d.err == nil && len(r.attrs) != 1 {
		d.fail("update copy with %d attributes", len(r.attrs))
	}
	return expected, r
}
