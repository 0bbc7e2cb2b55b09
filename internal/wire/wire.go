// Package wire is the framing of sessionmesh's peer-to-peer connections.
//
// A connection starts with a preface sent by the dialer (see Preface): the
// four bytes "SMSH", a protocol version byte, the security mode and the
// cluster label. The acceptor checks it (under a deadline of its choosing)
// and on a mismatch sends a refusal (AppendRefusal) and closes the
// connection. With a security mode other than
// SecurityNone a TLS handshake follows, the dialer being the TLS client.
// Then both directions carry length-prefixed frames:
//
//	[4-byte big-endian N][8-byte big-endian request ID][1-byte kind][payload: N-9 bytes]
//
// N counts the ID, the kind and the payload. A request frame is answered by a
// response or error frame with the same request ID; IDs let many requests be
// in flight on one connection at once. The acceptor may also send a go-away
// frame (KindGoAway) to retire the connection.
//
// The reader never trusts a length from the wire: N is checked against the
// caller's limit before anything is allocated, and a large payload's buffer
// grows with the bytes that actually arrive, so a peer that announces a big
// frame and sends little costs little memory.
package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Errors returned by ReadFrame and ReadPreface. Errors about a frame wrap
// ErrFrameTooLarge or ErrMalformed; after either, the stream is out of sync
// and the connection must be closed.
var (
	// ErrFrameTooLarge is returned for a frame whose announced payload is
	// longer than the reader's limit.
	ErrFrameTooLarge = errors.New("wire: frame too large")

	// ErrMalformed is returned for a frame that is not well formed: a length
	// too short to hold the header, or an unknown kind.
	ErrMalformed = errors.New("wire: malformed frame")

	// ErrBadPreface is returned when a connection does not start with the
	// expected magic and version.
	ErrBadPreface = errors.New("wire: bad connection preface")
)

// Frame is one decoded frame.
type Frame struct {
	// ID is the request ID; a response carries the ID of its request.
	ID uint64
	// Kind is KindRequest, KindResponse or KindError.
	Kind byte
	// Payload is the frame's body. It aliases the buffer returned by
	// ReadFrame.
	Payload []byte
}

// eagerAlloc is how much of a payload ReadFrame allocates before the bytes
// arrive. Larger payloads grow as they are read.
const eagerAlloc = 64 << 10

// AppendFrame appends a frame with the given request ID, kind and payload to
// dst and returns the extended slice. It does not check the payload's length
// against a limit; callers do (and len(payload) must not exceed MaxPayload).
func AppendFrame(dst []byte, id uint64, kind byte, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(minFrameLen+len(payload)))
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = append(dst, kind)
	return append(dst, payload...)
}

// FrameLen returns the encoded length of a frame with a payload of n bytes.
func FrameLen(n int) int { return HeaderSize + n }

// ReadFrame reads the next frame from r. maxPayload is the largest payload
// accepted; a frame announcing more is refused (with an error wrapping
// ErrFrameTooLarge) before its payload is read or allocated.
//
// The payload is read into buf when it fits in cap(buf); otherwise a new
// buffer is allocated (growing as the bytes arrive for payloads over 64 KiB).
// ReadFrame returns the buffer it used, so a caller that is done with a
// frame before reading the next can pass it back in and read without
// allocating. A caller that keeps payloads passes nil and gets a buffer of
// exactly the payload's length (none for an empty payload).
//
// At a clean end of stream, before the first byte of a frame, ReadFrame
// returns io.EOF; a stream that ends inside a frame gives
// io.ErrUnexpectedEOF. Other read errors are returned as they are.
func ReadFrame(r *bufio.Reader, maxPayload int, buf []byte) (Frame, []byte, error) {
	hdr, err := r.Peek(HeaderSize)
	if err != nil {
		if len(hdr) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, buf, err
	}
	n := binary.BigEndian.Uint32(hdr)
	if n < minFrameLen {
		return Frame{}, buf, fmt.Errorf("%w: length %d shorter than the header", ErrMalformed, n)
	}
	size := uint64(n) - minFrameLen
	if maxPayload < 0 || size > uint64(maxPayload) {
		return Frame{}, buf, fmt.Errorf("%w: payload of %d bytes, limit %d", ErrFrameTooLarge, size, maxPayload)
	}
	f := Frame{ID: binary.BigEndian.Uint64(hdr[lenSize:]), Kind: hdr[lenSize+8]}
	if f.Kind == 0 || f.Kind > maxKind {
		return Frame{}, buf, fmt.Errorf("%w: unknown kind %d", ErrMalformed, f.Kind)
	}
	if _, err := r.Discard(HeaderSize); err != nil {
		return Frame{}, buf, err // unreachable: the bytes were peeked
	}
	if size == 0 {
		f.Payload = buf[:0:0]
		return f, buf, nil
	}
	sz := int(size)
	if sz <= cap(buf) {
		buf = buf[:sz]
		if _, err := io.ReadFull(r, buf); err != nil {
			return Frame{}, buf, unexpected(err)
		}
		f.Payload = buf
		return f, buf, nil
	}
	b, err := readGrowing(r, sz)
	if err != nil {
		return Frame{}, buf, err
	}
	f.Payload = b
	return f, b, nil
}

// readGrowing reads exactly n bytes from r into a new buffer that is
// allocated no faster than the bytes arrive, beyond the first eagerAlloc.
func readGrowing(r io.Reader, n int) ([]byte, error) {
	if n <= eagerAlloc {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, unexpected(err)
		}
		return b, nil
	}
	b := make([]byte, 0, eagerAlloc)
	for len(b) < n {
		if len(b) == cap(b) {
			c := min(2*cap(b), n)
			nb := make([]byte, len(b), c)
			copy(nb, b)
			b = nb
		}
		m, err := io.ReadFull(r, b[len(b):cap(b)])
		b = b[:len(b)+m]
		if err != nil {
			return nil, unexpected(err)
		}
	}
	return b, nil
}

// unexpected turns the io.EOF of a stream that ended inside a frame into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Preface is what a dialer sends before anything else: the security mode
// the connection continues with and the cluster label. On the wire it is
//
//	"SMSH" [1-byte version] [1-byte security mode] [1-byte label length] [label]
//
// The preface travels in clear text, before any TLS handshake: it lets an
// acceptor turn away a peer of another cluster or with another security
// setting with a precise reason and before spending a handshake on it. It
// proves nothing; authentication is the handshake's job.
type Preface struct {
	// Security is SecurityNone, SecuritySecret or SecurityTLS.
	Security byte
	// Label is the cluster label, at most MaxLabelLen bytes.
	Label string
}

// MaxRefusalLen bounds the reason text of a refusal.
const MaxRefusalLen = 200

// AppendRefusal appends the frame an acceptor sends, in clear text, to
// refuse a connection whose preface it does not accept: a KindError frame
// with ID 0 whose payload is reason, cut to MaxRefusalLen bytes. A dialer
// reads it where it expects the acceptor's first bytes (a response frame,
// or the TLS server hello), so it can say why it was refused instead of
// "connection reset". The reason must hold nothing secret: the dialer is
// not authenticated.
func AppendRefusal(dst []byte, reason string) []byte {
	return AppendFrame(dst, 0, KindError, []byte(reason[:min(len(reason), MaxRefusalLen)]))
}

// ReadRefusal reads a refusal frame from r, whose first bytes the caller
// may already have consumed into head (at most HeaderSize bytes). It
// returns the reason, or an error wrapping ErrMalformed when the bytes are
// not a refusal.
func ReadRefusal(head []byte, r io.Reader) (string, error) {
	br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(head), r), 64)
	f, _, err := ReadFrame(br, MaxRefusalLen, nil)
	if err != nil {
		return "", err
	}
	if f.ID != 0 || f.Kind != KindError {
		return "", fmt.Errorf("%w: frame %d of kind %d is not a refusal", ErrMalformed, f.ID, f.Kind)
	}
	return string(f.Payload), nil
}

// AppendPreface appends the preface p (with Magic and Version) to dst. It
// panics if p.Label is longer than MaxLabelLen; callers validate labels
// when they are configured.
func AppendPreface(dst []byte, p Preface) []byte {
	if len(p.Label) > MaxLabelLen {
		panic(fmt.Sprintf("wire: label of %d bytes, limit %d", len(p.Label), MaxLabelLen))
	}
	dst = append(append(dst, Magic...), Version, p.Security, byte(len(p.Label)))
	return append(dst, p.Label...)
}

// ReadPreface reads a connection preface from r and checks its magic,
// version and security mode. It returns an error wrapping ErrBadPreface
// when one of them is wrong, and the read error (io.EOF before the first
// byte, io.ErrUnexpectedEOF for a short preface) when r fails first. It
// reads exactly the preface's bytes and never more than MaxPrefaceSize.
// Set a deadline on the underlying connection: a peer that sends nothing
// would otherwise hold ReadPreface forever.
func ReadPreface(r io.Reader) (Preface, error) {
	var buf [MaxPrefaceSize]byte
	fixed := buf[:MinPrefaceSize]
	if _, err := io.ReadFull(r, fixed); err != nil {
		return Preface{}, err
	}
	if string(fixed[:len(Magic)]) != Magic {
		return Preface{}, fmt.Errorf("%w: no magic", ErrBadPreface)
	}
	if v := fixed[len(Magic)]; v != Version {
		return Preface{}, fmt.Errorf("%w: unsupported protocol version %d (want %d)", ErrBadPreface, v, Version)
	}
	p := Preface{Security: fixed[len(Magic)+1]}
	if p.Security > maxSecurity {
		return Preface{}, fmt.Errorf("%w: unknown security mode %d", ErrBadPreface, p.Security)
	}
	label := buf[MinPrefaceSize : MinPrefaceSize+int(fixed[len(Magic)+2])]
	if _, err := io.ReadFull(r, label); err != nil {
		return Preface{}, unexpected(err)
	}
	p.Label = string(label)
	return p, nil
}
