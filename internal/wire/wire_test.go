package wire_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sessionmesh/sessionmesh/internal/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// header builds a raw frame header announcing n (ID + kind + payload bytes).
func header(n uint32, id uint64, kind byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, n)
	b = binary.BigEndian.AppendUint64(b, id)
	return append(b, kind)
}

func reader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func TestAppendFrame_Layout(t *testing.T) {
	got := wire.AppendFrame([]byte("x"), 0x0102030405060708, wire.KindResponse, []byte("hi"))
	want := []byte{'x', 0, 0, 0, 11, 1, 2, 3, 4, 5, 6, 7, 8, 2, 'h', 'i'}
	assert.Equal(t, want, got)
	assert.Equal(t, len(want)-1, wire.FrameLen(2))
}

func TestAppendFrame_DoesNotAllocateWithCapacity(t *testing.T) {
	payload := make([]byte, 1024)
	dst := make([]byte, 0, wire.FrameLen(len(payload)))
	allocs := testing.AllocsPerRun(100, func() {
		dst = wire.AppendFrame(dst[:0], 7, wire.KindRequest, payload)
	})
	assert.Zero(t, allocs)
}

func TestReadFrame_RoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 70000) // > 1 MiB: read in growing steps
	frames := []wire.Frame{
		{ID: 1, Kind: wire.KindRequest, Payload: []byte("hello")},
		{ID: 2, Kind: wire.KindResponse, Payload: nil},
		{ID: 1<<64 - 1, Kind: wire.KindError, Payload: []byte("no handler")},
		{ID: 3, Kind: wire.KindRequest, Payload: big},
	}
	var stream []byte
	for _, f := range frames {
		stream = wire.AppendFrame(stream, f.ID, f.Kind, f.Payload)
	}
	r := reader(stream)
	for _, want := range frames {
		got, _, err := wire.ReadFrame(r, len(big), nil)
		require.NoError(t, err)
		assert.Equal(t, want.ID, got.ID)
		assert.Equal(t, want.Kind, got.Kind)
		assert.Equal(t, len(want.Payload), len(got.Payload))
		assert.True(t, bytes.Equal(want.Payload, got.Payload))
		assert.Equal(t, len(got.Payload), cap(got.Payload), "a nil buffer gives a payload of exact size")
	}
	_, _, err := wire.ReadFrame(r, len(big), nil)
	assert.ErrorIs(t, err, io.EOF, "clean end of stream between frames")
}

func TestReadFrame_ReusesBuffer(t *testing.T) {
	payload := bytes.Repeat([]byte{0xab}, 1024)
	frame := wire.AppendFrame(nil, 9, wire.KindRequest, payload)
	stream := bytes.NewReader(nil)
	r := bufio.NewReader(stream)
	buf := make([]byte, 0, 2048)
	allocs := testing.AllocsPerRun(100, func() {
		stream.Reset(frame)
		r.Reset(stream)
		f, b, err := wire.ReadFrame(r, 4096, buf)
		if err != nil || !bytes.Equal(f.Payload, payload) || &b[:1][0] != &buf[:1][0] {
			t.Fatalf("bad read: %v", err)
		}
	})
	assert.Zero(t, allocs)
}

func TestReadFrame_Errors(t *testing.T) {
	const limit = 100
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"empty stream", nil, io.EOF},
		{"truncated header", header(20, 1, wire.KindRequest)[:7], io.ErrUnexpectedEOF},
		{"truncated payload", append(header(20, 1, wire.KindRequest), "short"...), io.ErrUnexpectedEOF},
		{"length below header", header(8, 1, wire.KindRequest), wire.ErrMalformed},
		{"zero length", header(0, 1, wire.KindRequest), wire.ErrMalformed},
		{"kind zero", header(9, 1, 0), wire.ErrMalformed},
		{"unknown kind", header(9, 1, 5), wire.ErrMalformed},
		{"over limit", header(9+limit+1, 1, wire.KindRequest), wire.ErrFrameTooLarge},
		{"4 GiB announced", header(0xFFFFFFFF, 1, wire.KindRequest), wire.ErrFrameTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := wire.ReadFrame(reader(tt.input), limit, nil)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	t.Run("exactly at limit", func(t *testing.T) {
		f, _, err := wire.ReadFrame(reader(wire.AppendFrame(nil, 5, wire.KindRequest, make([]byte, limit))), limit, nil)
		require.NoError(t, err)
		assert.Len(t, f.Payload, limit)
	})
}

// TestReadFrame_AllocatesAsBytesArrive checks that a frame announcing a
// large (allowed) payload and then sending little costs little memory.
func TestReadFrame_AllocatesAsBytesArrive(t *testing.T) {
	const announced = 512 << 20
	input := append(header(9+announced, 1, wire.KindRequest), strings.Repeat("x", 1000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := wire.ReadFrame(reader(input), announced, nil)
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "allocated for the announced length")
}

func TestReadFrame_ReadError(t *testing.T) {
	boom := errors.New("boom")
	r := bufio.NewReader(io.MultiReader(bytes.NewReader(header(20, 1, wire.KindRequest)), errReader{boom}))
	_, _, err := wire.ReadFrame(r, 100, nil)
	assert.ErrorIs(t, err, boom)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestPreface(t *testing.T) {
	good := wire.AppendPreface(nil, wire.Preface{Security: wire.SecuritySecret, Label: "prod"})
	assert.Equal(t, []byte("SMSH\x02\x01\x04prod"), good)
	p, err := wire.ReadPreface(bytes.NewReader(append(good, "trailing"...)))
	require.NoError(t, err)
	assert.Equal(t, wire.Preface{Security: wire.SecuritySecret, Label: "prod"}, p)

	r := bytes.NewReader(append(wire.AppendPreface(nil, wire.Preface{}), "next"...))
	p, err = wire.ReadPreface(r)
	require.NoError(t, err)
	assert.Equal(t, wire.Preface{}, p)
	assert.Equal(t, 4, r.Len(), "reads exactly the preface")

	long := strings.Repeat("l", wire.MaxLabelLen)
	p, err = wire.ReadPreface(bytes.NewReader(wire.AppendPreface(nil, wire.Preface{Label: long})))
	require.NoError(t, err)
	assert.Equal(t, long, p.Label)
	assert.Panics(t, func() { wire.AppendPreface(nil, wire.Preface{Label: long + "x"}) })

	for name, in := range map[string]string{
		"http":          "GET / HTTP/1.1\r\n",
		"version 1":     "SMSH\x01\x00\x00",
		"future":        "SMSH\x03\x00\x00",
		"security mode": "SMSH\x02\x03\x00",
	} {
		_, err := wire.ReadPreface(bytes.NewReader([]byte(in)))
		assert.ErrorIs(t, err, wire.ErrBadPreface, name)
	}
	_, err = wire.ReadPreface(bytes.NewReader([]byte("SMS")))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, err = wire.ReadPreface(bytes.NewReader([]byte("SMSH\x02\x00\x05ab")))
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "label cut short")
	_, err = wire.ReadPreface(bytes.NewReader(nil))
	assert.ErrorIs(t, err, io.EOF)
}

func TestRefusal(t *testing.T) {
	b := wire.AppendRefusal(nil, "unsupported protocol version 9 (want 2)")
	reason, err := wire.ReadRefusal(b[:5], bytes.NewReader(b[5:]))
	require.NoError(t, err)
	assert.Equal(t, "unsupported protocol version 9 (want 2)", reason)

	long := wire.AppendRefusal(nil, strings.Repeat("x", 10*wire.MaxRefusalLen))
	reason, err = wire.ReadRefusal(nil, bytes.NewReader(long))
	require.NoError(t, err)
	assert.Len(t, reason, wire.MaxRefusalLen, "a refusal is bounded")

	_, err = wire.ReadRefusal(nil, bytes.NewReader(wire.AppendFrame(nil, 7, wire.KindError, []byte("no"))))
	require.ErrorIs(t, err, wire.ErrMalformed, "only ID 0 refuses")
	_, err = wire.ReadRefusal([]byte{0x16, 0x03, 0x03, 0x00, 0x7a}, bytes.NewReader(make([]byte, 200)))
	require.Error(t, err, "a TLS server hello is no refusal")
}
