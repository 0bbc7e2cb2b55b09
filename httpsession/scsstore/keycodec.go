package scsstore

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/sessionmesh/sessionmesh/replication"
)

// LoadedKey is the key under which KeyCodec keeps, in the values of a
// session it decoded, what the request loaded: Commit compares the values
// with it to write only those the request changed. scs's Keys and Exists
// show it; Encode leaves it out of the session. Applications must not set,
// read or remove it (Clear removes it, and Commit then compares with the
// stored session instead).
const LoadedKey = "__scsstore.loaded"

// KeyCodec is an scs.Codec that keeps each value of a session on its own:
// each is gob-encoded by itself, and the Store saves it in an attribute of
// its own, writing only the values a request changed and deleting those it
// removed. Use one KeyCodec as both the SessionManager's Codec and the
// Store's:
//
//	codec := &scsstore.KeyCodec{Logger: logger}
//	sessionManager.Codec = codec
//	store.Codec = codec
//
// Two things then change for an scs application:
//
//   - Concurrent requests of one user that change different keys both keep
//     their changes, on every node, as with httpsession's own API; with
//     one blob per session (scs.GobCodec), the last commit wins and the
//     other's change is lost. Concurrent changes of one key still end with
//     one of them (the later write).
//   - A value that no longer decodes, say because its type changed between
//     two builds of the application during a deploy, is dropped from the
//     request's session with a warning in Logger, and the rest of the
//     session loads; with one gob blob, the whole session fails to decode
//     and scs answers 500 on every node of the older build. The stored
//     value stays as it is unless the request sets that key, so the nodes
//     that can read it still do.
//
// Values must be of types gob can encode, with custom types registered
// with gob.Register, as for scs.GobCodec. A key may be at most 1000 bytes
// long.
//
// Sessions stored with one blob by an earlier configuration load as they
// are and are converted to one attribute per value by their next commit; a
// Store whose Codec is not a KeyCodec turns per-value sessions back into
// blobs of its Codec, so that switching back is safe too. KeyCodec's
// blobs are meant for this package's Store only: another scs store would
// save them whole.
//
// KeyCodec is safe for concurrent use.
type KeyCodec struct {
	// Logger receives a warning for each stored value that does not
	// decode. Default slog.Default().
	Logger *slog.Logger
}

var _ scs.Codec = (*KeyCodec)(nil)

// loaded is what KeyCodec.Decode saw of a session: its token and the
// encodings of the values that decoded. It travels in the session's values
// under LoadedKey, from Decode to Encode.
type loaded struct {
	token string
	enc   map[string][]byte
}

// keyMagic starts every blob of KeyCodec: 0xc1 is never used by msgpack
// and never starts a gob stream, so a blob of another codec is never taken
// for one.
var keyMagic = []byte{0xc1, 's', 'k', '1'}

// keyBlob is a session as KeyCodec encodes it, after keyMagic.
type keyBlob struct {
	_msgpack struct{} `msgpack:",as_array"` //nolint:unused // msgpack's struct tag

	Deadline int64             // scs's deadline, Unix nanoseconds
	Token    string            // the token Values were loaded from; "" when not loaded from the Store
	Values   map[string][]byte // each value gob-encoded on its own
	Loaded   map[string][]byte // Encode: the encodings the request loaded, when Token is set
}

func (kb *keyBlob) marshal() ([]byte, error) {
	b, err := msgpack.Marshal(kb)
	if err != nil {
		return nil, err
	}
	return append(bytes.Clone(keyMagic), b...), nil
}

// parseKeyBlob decodes a blob of KeyCodec; ok is false for any other blob.
func parseKeyBlob(b []byte) (*keyBlob, bool) {
	if !bytes.HasPrefix(b, keyMagic) {
		return nil, false
	}
	kb := &keyBlob{}
	if err := msgpack.Unmarshal(b[len(keyMagic):], kb); err != nil {
		return nil, false
	}
	return kb, true
}

func (c *KeyCodec) logger() *slog.Logger {
	if c != nil && c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Encode encodes a session's deadline and values, each value on its own,
// with what the request loaded (see LoadedKey). It fails for a value gob
// cannot encode.
func (c *KeyCodec) Encode(deadline time.Time, values map[string]interface{}) ([]byte, error) {
	kb := &keyBlob{Deadline: deadline.UnixNano(), Values: make(map[string][]byte, len(values))}
	for k, v := range values {
		if k == LoadedKey {
			if ld, ok := v.(*loaded); ok {
				kb.Token, kb.Loaded = ld.token, ld.enc
			}
			continue
		}
		b, err := gobEncode(v)
		if err != nil {
			return nil, fmt.Errorf("scsstore: encode %q: %w", k, err)
		}
		kb.Values[k] = b
	}
	return kb.marshal()
}

// Decode decodes a session encoded by Encode, or by scs.GobCodec (a session
// stored before the switch to KeyCodec). A value that does not decode is
// left out, with a warning; only a blob that is neither fails.
func (c *KeyCodec) Decode(b []byte) (time.Time, map[string]interface{}, error) {
	kb, ok := parseKeyBlob(b)
	if !ok {
		return scs.GobCodec{}.Decode(b)
	}
	values := make(map[string]interface{}, len(kb.Values)+1)
	ld := &loaded{token: kb.Token, enc: make(map[string][]byte, len(kb.Values))}
	for k, enc := range kb.Values {
		v, err := gobDecode(enc)
		if err != nil {
			c.logger().Warn("scsstore: dropped a session value that does not decode", "key", k, "err", err)
			continue
		}
		values[k], ld.enc[k] = v, enc
	}
	if kb.Token != "" {
		values[LoadedKey] = ld
	}
	return time.Unix(0, kb.Deadline).UTC(), values, nil
}

// keyCodec reports whether s.Codec is a KeyCodec.
func (s *Store) keyCodec() bool {
	_, ok := s.Codec.(*KeyCodec)
	return ok
}

// keysBlob returns the blob of sess, stored one value per attribute, in
// the format of s.Codec.
func (s *Store) keysBlob(sess replication.Session) ([]byte, bool, error) {
	deadline, _ := timeAttr(sess, deadlineAttr)
	kb := &keyBlob{Deadline: deadline.UnixNano(), Token: sess.ID(), Values: map[string][]byte{}}
	for name, b := range sess.All() {
		if k, ok := strings.CutPrefix(name, keyPrefix); ok {
			kb.Values[k] = bytes.Clone(b)
		}
	}
	if s.keyCodec() {
		b, err := kb.marshal()
		return b, err == nil, err
	}
	// Back to one blob of the configured codec; what does not decode
	// stays out, as KeyCodec would leave it.
	values := make(map[string]interface{}, len(kb.Values))
	for k, enc := range kb.Values {
		if v, err := gobDecode(enc); err == nil {
			values[k] = v
		}
	}
	codec := s.Codec
	if codec == nil {
		codec = scs.GobCodec{}
	}
	b, err := codec.Encode(deadline.UTC(), values)
	if err != nil {
		return nil, false, fmt.Errorf("scsstore: re-encode session: %w", err)
	}
	return b, true, nil
}

// keyChanges adds to c what a commit of kb, a blob of KeyCodec, changes in
// session token as stored (cur, when found): the values the request set or
// changed, the keys it removed, and the deadline. It compares with what the
// request loaded, when kb says it loaded this session; else (a new session,
// a renewed token, values merged from another session) with what is
// stored, and the commit then replaces every value.
func (s *Store) keyChanges(c *replication.Changes, token string, kb *keyBlob, cur replication.Session, found bool) error {
	base := kb.Loaded
	if kb.Token != token {
		base = map[string][]byte{}
		for name, b := range cur.All() {
			if k, ok := strings.CutPrefix(name, keyPrefix); ok {
				base[k] = b
			}
		}
	}
	for k, enc := range kb.Values {
		if len(k) > maxKeyLen {
			return fmt.Errorf("%w: key of %d bytes", ErrKeyTooLong, len(k))
		}
		if old, ok := base[k]; !ok || !sameGob(old, enc) {
			c.Set[keyPrefix+k] = enc
		}
	}
	for k := range base {
		if _, ok := kb.Values[k]; !ok {
			c.Delete = append(c.Delete, keyPrefix+k)
		}
	}
	if old, ok := timeAttr(cur, deadlineAttr); !found || !ok || old.UnixNano() != kb.Deadline {
		c.Set[deadlineAttr] = encodeTime(time.Unix(0, kb.Deadline))
	}
	if _, ok := cur.Value(dataAttr); ok {
		c.Delete = append(c.Delete, dataAttr) // stored as one blob until now
	}
	return nil
}

// sameGob reports whether two gob encodings of values hold the same value:
// equal bytes, or (gob writes maps in random order) equal decoded values.
func sameGob(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if len(a) != len(b) {
		return false
	}
	va, err := gobDecode(a)
	if err != nil {
		return false
	}
	vb, err := gobDecode(b)
	return err == nil && reflect.DeepEqual(va, vb)
}

// gobEncode encodes one session value as scs.GobCodec encodes the values of
// its map: as an interface, so that it decodes to its own type.
func gobEncode(v interface{}) ([]byte, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gobDecode(b []byte) (interface{}, error) {
	var v interface{}
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}
