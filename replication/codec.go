package replication

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

// This file holds the msgpack primitives every message is built from, and
// the codec of records. Decoders check every count and length against a
// limit and against the bytes left before anything is allocated.

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
	e.reset(kind)
	return e
}

// reset empties e for a new message that starts with the byte kind,
// keeping its buffer.
func (e *encoder) reset(kind byte) {
	e.buf.Reset()
	e.err = nil
	e.enc.Reset(&e.buf)
	e.enc.UseCompactInts(true)
	e.buf.WriteByte(kind)
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

// encodeRecord writes r as an array of its fields. Fields added later are
// appended (renamed is the eighth): every decoder skips trailing fields it
// does not know, so peers of earlier releases read what they know.
func encodeRecord(e *encoder, r *record) {
	e.arrayLen(8)
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
	e.int64(r.renamed)
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
// without duplicates, none on a destroyed record, renamed only on a
// destroyed one. A record of an earlier release has no renamed field.
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
	if n > 7 {
		r.renamed = max(d.int64(), 0)
	}
	d.skip(n - 8)
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
		r.renamed = 0
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
