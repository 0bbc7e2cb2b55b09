package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// Node metadata wire format. Values are protocol: append only.
//
//	byte     version (metaVersion)
//	byte     flags   (metaFlag*)
//	uvarint  incarnation
//	uvarint  number of tags
//	per tag, sorted by key:
//	  uvarint len(key), key bytes, uvarint len(value), value bytes
//
// The encoding is canonical (keys strictly increasing, minimal varints; the
// decoder rejects anything else) so that the same metadata is always the same
// bytes: memberlist compares metadata byte-wise to decide whether a member
// was updated. A decoder of version n reads a later version's bytes as far as it
// understands them and ignores the rest, so fields may be appended in later
// versions; within its own version it rejects trailing bytes.
const (
	metaVersion     = 1
	metaFlagLeaving = 1 << 0 // the node is leaving gracefully
)

// maxMetaSize is memberlist.MetaMaxSize: larger metadata makes memberlist
// panic, so encode refuses it, and decode rejects it as garbage.
const maxMetaSize = 512

var (
	errMetaTooLarge = errors.New("metadata exceeds 512 bytes")
	errMetaShort    = errors.New("metadata truncated")
)

// nodeMeta is what a node publishes about itself through memberlist.
type nodeMeta struct {
	version     uint8
	flags       uint8
	incarnation uint64
	tags        map[string]string
}

// leaving reports whether the node announced a graceful leave.
func (m nodeMeta) leaving() bool { return m.flags&metaFlagLeaving != 0 }

// encode returns the wire form of m, always with version metaVersion.
func (m nodeMeta) encode() ([]byte, error) {
	size := 2 + binary.MaxVarintLen64*2
	keys := make([]string, 0, len(m.tags))
	for k, v := range m.tags {
		keys = append(keys, k)
		size += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	slices.Sort(keys)
	b := make([]byte, 0, min(size, maxMetaSize+1))
	b = append(b, metaVersion, m.flags)
	b = binary.AppendUvarint(b, m.incarnation)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		v := m.tags[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
		if len(b) > maxMetaSize {
			return nil, fmt.Errorf("%w (tags too large)", errMetaTooLarge)
		}
	}
	if len(b) > maxMetaSize {
		return nil, errMetaTooLarge
	}
	return b, nil
}

// decodeMeta parses metadata received from the network. It never panics and
// never allocates more than the input justifies. Empty metadata (a member
// that is not a sessionmesh node) is an error.
func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	if len(b) > maxMetaSize {
		return m, errMetaTooLarge
	}
	if len(b) < 2 {
		return m, errMetaShort
	}
	m.version, m.flags = b[0], b[1]
	if m.version == 0 {
		return nodeMeta{}, errors.New("metadata version 0")
	}
	r := b[2:]
	var err error
	if m.incarnation, r, err = readUvarint(r); err != nil {
		return nodeMeta{}, err
	}
	n, r, err := readUvarint(r)
	if err != nil {
		return nodeMeta{}, err
	}
	// Every tag takes at least two bytes (two zero lengths).
	if n > uint64(len(r)/2) {
		return nodeMeta{}, fmt.Errorf("metadata claims %d tags in %d bytes", n, len(r))
	}
	if n > 0 {
		m.tags = make(map[string]string, n)
	}
	var prev string
	for i := uint64(0); i < n; i++ {
		var k, v string
		if k, r, err = readString(r); err != nil {
			return nodeMeta{}, err
		}
		if v, r, err = readString(r); err != nil {
			return nodeMeta{}, err
		}
		if i > 0 && k <= prev {
			return nodeMeta{}, fmt.Errorf("metadata tag %q out of order", k)
		}
		m.tags[k], prev = v, k
	}
	if len(r) > 0 && m.version == metaVersion {
		return nodeMeta{}, fmt.Errorf("metadata has %d trailing bytes", len(r))
	}
	return m, nil
}

// readUvarint reads a minimally encoded uvarint.
func readUvarint(b []byte) (uint64, []byte, error) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errMetaShort
	}
	if n > 1 && b[n-1] == 0 {
		return 0, nil, errors.New("metadata has an overlong varint")
	}
	return v, b[n:], nil
}

func readString(b []byte) (string, []byte, error) {
	n, b, err := readUvarint(b)
	if err != nil {
		return "", nil, err
	}
	if n > uint64(len(b)) {
		return "", nil, errMetaShort
	}
	return string(b[:n]), b[n:], nil
}
