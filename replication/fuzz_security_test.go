package replication

import (
	"bytes"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
	"github.com/sessionmesh/sessionmesh/internal/memnet"
)

// aloneMembership is a cluster of one node.
type aloneMembership struct{ self Member }

func (m aloneMembership) LocalMember() Member        { return m.self }
func (m aloneMembership) Members() []Member          { return []Member{m.self} }
func (m aloneMembership) Notify(chan<- struct{})     {}
func (m aloneMembership) StopNotify(chan<- struct{}) {}
func (m aloneMembership) Settled() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

// FuzzHandleRequest feeds arbitrary requests to a store's request handler,
// as a peer would send them: every request type's decoder runs on them.
// The handler must never panic, and must answer every request with a
// well-formed response (a body or an error).
func FuzzHandleRequest(f *testing.F) {
	tr := memnet.New(1).Node("fuzz")
	cfg := DefaultLocalConfig()
	cfg.Membership = aloneMembership{Member{Name: "fuzz", Incarnation: 1, Addr: "fuzz"}}
	cfg.Transport = tr
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Close() })

	rec := &record{id: "s1", created: 1, expires: 1 << 50, attrs: []attr{{name: "user", value: []byte("ann"), version: version{1, 2}}}}
	for _, seed := range [][]byte{
		must(encodeHello(helloRequest{name: "peer", incarnation: 7, partitions: numPartitions})),
		must(encodeApply(rec, &record{id: "s2", destroyed: true, expires: 1 << 50})),
		must(encodeGet("s1")),
		{4}, // per-partition digests or status
		must(encodeSummaryRequest(3)),
		must(encodeFetch([]string{"s1", "s2"})),
		must(encodeFetchRange(1, "a", 1<<10)),
		{8, 0x92, 0xa4, 'p', 'e', 'e', 'r', 0x07}, // leaving
		{2, 0xdd, 0xff, 0xff, 0xff, 0xff},         // apply claiming 4 G records
		{7, 0x93, 0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xa0, 0x00}, // partition out of range
		{},
		{0xff},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, req []byte) {
		resp := s.handle(bytes.Clone(req))
		switch {
		case len(resp) == 0 || resp[0] != respOK && resp[0] != respError && resp[0] != respUnsupported:
			t.Fatalf("response %x to %x", resp, req)
		case resp[0] == respUnsupported && len(req) > 0 && req[0] >= msgHello && req[0] <= msgLease:
			t.Fatalf("request type %d is known, answered as unsupported", req[0])
		}
	})
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestDecode_AllocationIsBoundedByInput decodes the inputs that make the
// decoders allocate the most per byte: many minimal records, attributes
// (sorted, in reverse order, all of one name) and IDs. What they allocate
// stays within a small multiple of the input, so MaxFrameSize bounds the
// memory (and time) a peer's message costs.
func TestDecode_AllocationIsBoundedByInput(t *testing.T) {
	const n = 1 << 16
	records := []byte{respOK, 0xdd, 0, 1, 0, 0}
	for range n {
		records = append(records, 0x97, 0xa1, 'x', 0, 0, 0, 0, 0xc2, 0x90) // ID "x", zero times, no attributes
	}
	// attrs returns 16 records of 4096 attributes named by name(i).
	attrs := func(name func(i int) []byte) []byte {
		b := []byte{respOK, 0xdc, 0, 16}
		for range 16 {
			b = append(b, 0x97, 0xa1, 'x', 0, 0, 0, 0, 0xc2, 0xdd, 0, 0, 0x10, 0)
			for i := range maxAttrsPerRecord {
				nm := name(i)
				b = append(b, 0x95, 0xa0|byte(len(nm)))
				b = append(b, nm...)
				b = append(b, 0xc0, 0, 0, 0xc2) // nil value, version 0, not deleted
			}
		}
		return b
	}
	ids := []byte{0xdd, 0, 1, 0, 0}
	for range n {
		ids = append(ids, 0xa0)
	}
	decodeRecords := func(b []byte) error { _, err := decodeRecordsReply(b); return err }
	for _, tc := range []struct {
		name   string
		in     []byte
		decode func([]byte) error
	}{
		{"records", records, decodeRecords},
		{"sorted attributes", attrs(func(i int) []byte { return []byte{byte(i >> 8), byte(i)} }), decodeRecords},
		{"attributes in reverse order", attrs(func(i int) []byte { return []byte{byte(^i >> 8), byte(^i)} }), decodeRecords},
		{"attributes of one name", attrs(func(int) []byte { return nil }), decodeRecords},
		{"IDs", ids, func(b []byte) error {
			d := newDecoder(b)
			defer d.release()
			_ = decodeIDs(d)
			return d.done()
		}},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		err := tc.decode(tc.in)
		runtime.ReadMemStats(&after)
		assert.NoError(t, err, tc.name)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes of input, %d allocated (%.1fx)", tc.name, len(tc.in), alloc, float64(alloc)/float64(len(tc.in)))
		assert.Less(t, alloc, uint64(20*len(tc.in)+1<<20), "%s: allocation out of proportion to the input", tc.name)
	}
}

// TestNormalizeAttrs checks the decoder's normalisation against merging the
// attributes one at a time.
func TestNormalizeAttrs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		as := make([]attr, rng.IntN(12))
		for i := range as {
			as[i] = attr{
				name:    string(rune('a' + rng.IntN(5))),
				value:   []byte{byte(rng.IntN(3))},
				version: version{hlc.Timestamp(rng.IntN(4)), uint64(rng.IntN(2))},
				deleted: rng.IntN(4) == 0,
			}
		}
		var want []attr
		for _, a := range as {
			want = mergeAttrs(want, []attr{a})
		}
		got := normalizeAttrs(slices.Clone(as))
		if len(as) == 0 {
			assert.Empty(t, got)
			continue
		}
		require.Equal(t, want, got, "attributes %+v", as)
	}
}
