package wire_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/sessionmesh/sessionmesh/internal/wire"
)

// FuzzReadFrame reads frames from arbitrary bytes until an error. Every
// accepted frame must respect the limit and re-encode to exactly the bytes
// it was read from, and the error that ends the stream must be one of the
// documented ones. Seeds live in testdata/fuzz/FuzzReadFrame.
func FuzzReadFrame(f *testing.F) {
	f.Add(wire.AppendFrame(nil, 1, wire.KindRequest, []byte("ping")), uint16(64))
	f.Add(wire.AppendFrame(wire.AppendFrame(nil, 1, wire.KindResponse, nil), 2, wire.KindError, []byte("no handler")), uint16(64))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 1}, uint16(64))
	f.Add([]byte{0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1, 1}, uint16(64))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16)
		var (
			buf      []byte
			consumed int
		)
		for {
			fr, b, err := wire.ReadFrame(r, int(limit), buf)
			if err != nil {
				switch {
				case errors.Is(err, io.EOF):
					if consumed != len(data) {
						t.Fatalf("io.EOF after %d of %d bytes", consumed, len(data))
					}
				case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, wire.ErrMalformed), errors.Is(err, wire.ErrFrameTooLarge):
				default:
					t.Fatalf("undocumented error %v", err)
				}
				return
			}
			buf = b
			if len(fr.Payload) > int(limit) {
				t.Fatalf("payload of %d bytes over limit %d", len(fr.Payload), limit)
			}
			enc := wire.AppendFrame(nil, fr.ID, fr.Kind, fr.Payload)
			if !bytes.Equal(enc, data[consumed:consumed+len(enc)]) {
				t.Fatalf("frame %+v re-encodes to %x, read from %x", fr, enc, data[consumed:consumed+len(enc)])
			}
			consumed += len(enc)
		}
	})
}

// FuzzReadPreface checks that exactly the streams starting with the magic,
// the current version and a known security mode, followed by a whole label,
// are accepted, that they are read to the end of the label and no further,
// and that what is accepted encodes back to the same bytes. Seeds live in
// testdata/fuzz/FuzzReadPreface.
func FuzzReadPreface(f *testing.F) {
	f.Add(wire.AppendPreface(nil, wire.Preface{}))
	f.Add(wire.AppendPreface(nil, wire.Preface{Security: wire.SecuritySecret, Label: "prod"}))
	f.Add([]byte("SMSH\x01"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		p, err := wire.ReadPreface(r)
		n := wire.MinPrefaceSize
		want := len(data) >= n && string(data[:len(wire.Magic)+1]) == wire.Magic+string(wire.Version) &&
			data[len(wire.Magic)+1] <= wire.SecurityTLS && len(data) >= n+int(data[n-1])
		if (err == nil) != want {
			t.Fatalf("ReadPreface(%q) = %v", data, err)
		}
		if err != nil {
			if !errors.Is(err, wire.ErrBadPreface) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		enc := wire.AppendPreface(nil, p)
		if consumed := len(data) - r.Len(); !bytes.Equal(enc, data[:consumed]) {
			t.Fatalf("preface %+v re-encodes to %x, read from %x", p, enc, data[:consumed])
		}
	})
}
