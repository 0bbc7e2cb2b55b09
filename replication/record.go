package replication

import (
	"bytes"
	"slices"
	"sync/atomic"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

// version orders the writes of one attribute: a hybrid logical clock reading
// of the writer, ties broken by the writer's node ID. Versions are totally
// ordered and every node issues strictly increasing ones.
type version struct {
	time hlc.Timestamp
	node uint64
}

// less reports whether v orders before o.
func (v version) less(o version) bool {
	if v.time != o.time {
		return v.time < o.time
	}
	return v.node < o.node
}

func (v version) isZero() bool { return v.time == 0 && v.node == 0 }

// attr is one session attribute with its own version. A deleted attribute
// stays as a tombstone (deleted, nil value) so that an older write arriving
// late cannot bring it back.
type attr struct {
	name    string
	value   []byte
	version version
	deleted bool
}

// record is one session's replicated state, or a delta of it: a delta is a
// record that holds only the attributes a write changed, so one merge
// function serves writes, state transfer and repair.
//
// A record is immutable once it is published in a partition, except for
// touched, which readers raise to extend the idle deadline locally without
// copying the record. Writers replace the record (copy on write).
//
// Times are Unix milliseconds.
type record struct {
	id        string
	created   int64 // merged by min (over non-zero values)
	expires   int64 // absolute deadline; merged by max, so a tombstone never ends before its session
	idleMs    int64 // idle timeout; merged by max
	idleUntil int64 // replicated idle deadline; merged by max
	destroyed bool  // merged by or; a destroyed record keeps no attributes
	renamed   int64 // only with destroyed: when the session moved to another ID (Rename, Retire), 0 if it did not; merged by max
	attrs     []attr

	// touched is the idle deadline extended locally by reads (see
	// Store.Touch). It is never sent; merge carries it forward.
	touched atomic.Int64
}

// deadline returns the time after which the session is gone: its absolute
// deadline, or its idle deadline when that comes first. A destroyed record
// is kept as a tombstone until its absolute deadline.
func (r *record) deadline() int64 {
	if r.destroyed {
		return r.expires
	}
	idle := max(r.idleUntil, r.touched.Load())
	if r.idleMs > 0 && idle > 0 && (r.expires == 0 || idle < r.expires) {
		return idle
	}
	return r.expires
}

// live reports whether the session can be returned to a reader at now.
func (r *record) live(now int64) bool {
	if r.destroyed {
		return false
	}
	d := r.deadline()
	return d == 0 || now < d
}

// find returns the index of the attribute called name, or -1.
func (r *record) find(name string) int {
	if len(r.attrs) <= 8 {
		// Sessions hold a few attributes: comparing for equality (length
		// first) beats ordering comparisons of a binary search.
		for i := range r.attrs {
			if r.attrs[i].name == name {
				return i
			}
		}
		return -1
	}
	lo, hi := 0, len(r.attrs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.attrs[m].name < name {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(r.attrs) && r.attrs[lo].name == name {
		return lo
	}
	return -1
}

// maxVersion returns the largest attribute version in r.
func (r *record) maxVersion() version {
	var v version
	for i := range r.attrs {
		if v.less(r.attrs[i].version) {
			v = r.attrs[i].version
		}
	}
	return v
}

// merge returns the least upper bound of a and b: per attribute the higher
// version wins, times merge by min or max, destroyed by or. It is
// commutative, associative and idempotent, so replicas that receive the same
// records in any order, any number of times, end up equal. Either argument
// may be nil. merge never modifies its arguments; it returns a itself when b
// adds nothing to it, so callers detect no-ops by pointer comparison.
func merge(a, b *record) *record {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	out := &record{
		id:        a.id,
		created:   minNonZero(a.created, b.created),
		expires:   max(a.expires, b.expires),
		idleMs:    max(a.idleMs, b.idleMs),
		idleUntil: max(a.idleUntil, b.idleUntil),
		destroyed: a.destroyed || b.destroyed,
		renamed:   max(a.renamed, b.renamed),
	}
	out.touched.Store(max(a.touched.Load(), b.touched.Load()))
	if !out.destroyed {
		out.attrs = mergeAttrs(a.attrs, b.attrs)
	}
	if sameRecord(out, a) {
		return a
	}
	return out
}

// mergeAttrs merges two attribute lists sorted by name.
func mergeAttrs(a, b []attr) []attr {
	out := make([]attr, 0, max(len(a), len(b)))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].name < b[j].name:
			out = append(out, a[i])
			i++
		case a[i].name > b[j].name:
			out = append(out, b[j])
			j++
		default:
			out = append(out, newerAttr(a[i], b[j]))
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// newerAttr picks the attribute with the higher version. Equal versions come
// from the same write and carry the same content; should they differ anyway
// (a bug or a hostile peer), a fixed rule on the content keeps merge
// commutative.
func newerAttr(x, y attr) attr {
	switch {
	case x.version.less(y.version):
		return y
	case y.version.less(x.version):
		return x
	case x.deleted != y.deleted:
		if x.deleted {
			return x
		}
		return y
	case bytes.Compare(x.value, y.value) >= 0:
		return x
	default:
		return y
	}
}

// outrankedBy returns the newest version among the attributes of held that
// win over the same attribute of in (a write of in lost to them where held
// is the copy), or the zero version when there are none.
func outrankedBy(held, in *record) version {
	var v version
	if held == nil {
		return v
	}
	for _, a := range in.attrs {
		if i := held.find(a.name); i >= 0 && a.version.less(held.attrs[i].version) && v.less(held.attrs[i].version) {
			v = held.attrs[i].version
		}
	}
	return v
}

// newest returns the later of two versions.
func newest(a, b version) version {
	if a.less(b) {
		return b
	}
	return a
}

// restamped returns a copy of the write r in which the attributes of
// version from have version to instead.
func restamped(r *record, from, to version) *record {
	out := &record{id: r.id, created: r.created, expires: r.expires, idleMs: r.idleMs, idleUntil: r.idleUntil,
		attrs: slices.Clone(r.attrs)}
	for i := range out.attrs {
		if out.attrs[i].version == from {
			out.attrs[i].version = to
		}
	}
	return out
}

// withAttrUndone returns a copy of r in which attribute applied.name is
// back in state before (absent when before has no version), or nil when r
// no longer holds applied: a later write of the attribute replaced it.
func withAttrUndone(r *record, applied attr, before attrState) *record {
	i := r.find(applied.name)
	if i < 0 || r.attrs[i].version != applied.version {
		return nil
	}
	out := &record{id: r.id, created: r.created, expires: r.expires, idleMs: r.idleMs, idleUntil: r.idleUntil,
		destroyed: r.destroyed, renamed: r.renamed, attrs: slices.Clone(r.attrs)}
	out.touched.Store(r.touched.Load())
	if before.version.isZero() {
		out.attrs = slices.Delete(out.attrs, i, i+1)
	} else {
		out.attrs[i] = attr{name: applied.name, value: before.value, version: before.version, deleted: !before.exists}
	}
	return out
}

// sameRecord reports whether a and b hold the same replicated state
// (touched is local and not compared).
func sameRecord(a, b *record) bool {
	if a.id != b.id || a.created != b.created || a.expires != b.expires || a.idleMs != b.idleMs ||
		a.idleUntil != b.idleUntil || a.destroyed != b.destroyed || a.renamed != b.renamed || len(a.attrs) != len(b.attrs) {
		return false
	}
	for i := range a.attrs {
		x, y := &a.attrs[i], &b.attrs[i]
		if x.name != y.name || x.version != y.version || x.deleted != y.deleted || !bytes.Equal(x.value, y.value) {
			return false
		}
	}
	return true
}

func minNonZero(a, b int64) int64 {
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// digest returns a 64-bit summary of the record's identity and attribute
// versions. Partition digests XOR these, so they are order independent and
// can be maintained incrementally. The idle deadline is left out on
// purpose: it moves on reads and is replicated in coarse steps, and
// anti-entropy should not chase it. So is renamed: peers of the previous
// release do not know it and drop it from what they store, and
// anti-entropy must not chase a difference they cannot repair (a tombstone
// without it only makes a renewed session look destroyed).
func (r *record) digest() uint64 {
	h := newHash64()
	h.writeString(r.id)
	if r.destroyed {
		h.writeByte(1)
		return h.sum()
	}
	h.writeByte(0)
	for i := range r.attrs {
		a := &r.attrs[i]
		h.writeString(a.name)
		h.writeUint64(uint64(a.version.time))
		h.writeUint64(a.version.node)
		if a.deleted {
			h.writeByte(1)
		} else {
			h.writeByte(0)
		}
	}
	return h.sum()
}

// size returns roughly how many bytes r takes on the wire.
func (r *record) size() int {
	n := len(r.id) + 48
	for i := range r.attrs {
		n += len(r.attrs[i].name) + len(r.attrs[i].value) + 24
	}
	return n
}

// hash64 is FNV-1a with a splitmix64 finalizer: fast, stable across
// processes and versions (unlike hash/maphash), and well mixed in the low
// bits that choose partitions.
type hash64 uint64

func newHash64() hash64 { return 14695981039346656037 }

func (h *hash64) writeByte(b byte) {
	*h = (*h ^ hash64(b)) * 1099511628211
}

func (h *hash64) writeString(s string) {
	for i := 0; i < len(s); i++ {
		h.writeByte(s[i])
	}
	h.writeByte(0xff) // separates consecutive strings
}

func (h *hash64) writeUint64(v uint64) {
	for i := 0; i < 8; i++ {
		h.writeByte(byte(v >> (8 * i)))
	}
}

func (h hash64) sum() uint64 {
	x := uint64(h)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
