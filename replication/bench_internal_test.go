package replication

// Benchmarks of the pure pieces of the write path: merging a delta into a
// session and the wire codec of the apply message that carries it. The
// store-level benchmarks are in bench_test.go.

import (
	"strings"
	"testing"
)

// benchRecord returns a session record of about 1 KiB: a user name, a
// visit count and a cart, with versions from node 1.
func benchRecord() *record {
	return &record{
		id:        strings.Repeat("s", 43),
		created:   1_700_000_000_000,
		expires:   1_700_086_400_000,
		idleMs:    1_800_000,
		idleUntil: 1_700_001_800_000,
		attrs: []attr{
			{name: "cart", value: []byte(strings.Repeat("c", 1000)), version: version{time: 100, node: 1}},
			{name: "user", value: []byte("user-12345"), version: version{time: 100, node: 1}},
			{name: "visits", value: []byte{7}, version: version{time: 100, node: 1}},
		},
	}
}

// benchDelta returns a write of the visit count of benchRecord's session,
// newer than the record.
func benchDelta() *record {
	full := benchRecord()
	return &record{
		id: full.id, created: full.created, expires: full.expires, idleMs: full.idleMs, idleUntil: full.idleUntil,
		attrs: []attr{{name: "visits", value: []byte{8}, version: version{time: 200, node: 2}}},
	}
}

// BenchmarkMerge merges into a 1 KiB session: a one-attribute delta (a
// replicated write), an identical record (a duplicate or re-sent write: a
// no-op), and a full record whose every attribute is newer (repair).
func BenchmarkMerge(b *testing.B) {
	full := benchRecord()
	newer := benchRecord()
	for i := range newer.attrs {
		newer.attrs[i].version = version{time: 300, node: 3}
	}
	for _, c := range []struct {
		name  string
		other *record
	}{{"delta", benchDelta()}, {"duplicate", benchRecord()}, {"full", newer}} {
		other := c.other
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if merge(full, other) == nil {
					b.Fatal("nil merge")
				}
			}
		})
	}
}

// BenchmarkCodec encodes and decodes the apply message of a one-attribute
// delta and of a full 1 KiB session.
func BenchmarkCodec(b *testing.B) {
	for _, c := range []struct {
		name string
		r    *record
	}{{"delta", benchDelta()}, {"1KiB", benchRecord()}} {
		name, r := c.name, c.r
		msg, err := encodeApply(r)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("encode-"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := encodeApply(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("decode-"+name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if msg[0] != msgApply {
					b.Fatal("not an apply message")
				}
				d := newDecoder(msg[1:])
				rs := d.records()
				err := d.done()
				d.release()
				if err != nil || len(rs) != 1 {
					b.Fatalf("decode: %v, %d records", err, len(rs))
				}
			}
		})
	}
}
