package replication

import (
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// numPartitions is the number of partitions session IDs hash to. It is part
// of the protocol: every node of a cluster must use the same value.
const numPartitions = 256

// Partitions is the number of partitions session IDs hash to; ownership,
// state transfer and anti-entropy work partition by partition.
const Partitions = numPartitions

// expiryBucketMs is the granularity of the expiry wheel: sessions are
// swept at most this long after their deadline (they are never returned
// after it, swept or not).
const expiryBucketMs = 1000

// partitionOf returns the partition of a session ID.
// It is xxHash64, stable across processes and versions like the partition
// count, and several times faster than a byte-at-a-time hash on the
// 43-byte IDs every request looks up.
func partitionOf(id string) int {
	return int(xxhash.Sum64String(id) % numPartitions)
}

// partition holds the records of one partition. Each has its own lock, so
// readers and writers of different sessions rarely meet; reads hold the read
// lock only for a map lookup, as records are immutable once published.
type partition struct {
	mu      sync.RWMutex
	records map[string]*record // guards: the sessions of this partition, tombstones included
	digest  uint64             // guards: XOR of records' digests
	// expiry maps a bucket (deadline / expiryBucketMs) to the IDs that may
	// expire in it. An entry is checked when its bucket is due and moved
	// if the record's deadline has moved on, so sweeping costs time in
	// proportion to what expires, not to all sessions.
	expiry    map[int64][]string // guards: the expiry wheel
	lastSwept int64              // guards: the last bucket swept
	checked   int                // guards: wheel entries the sweeper has looked at, for tests

	// ready is set once this node holds a complete copy of the partition
	// (state transfer done, or nothing to transfer). Until then reads go
	// to a peer that is ready.
	ready atomic.Bool

	// unshared is set while this partition holds records loaded from the
	// snapshot that its other owners may lack (unshared.go).
	unshared atomic.Bool

	// usage is shared by the node's partitions: what they hold in all.
	usage *usage
}

// newPartitions returns a node's partitions, which account what they hold
// in u.
func newPartitions(u *usage) []*partition {
	ps := make([]*partition, numPartitions)
	for i := range ps {
		ps[i] = &partition{records: make(map[string]*record), expiry: make(map[int64][]string), usage: u}
	}
	return ps
}

// get returns the record for id, or nil.
func (p *partition) get(id string) *record {
	p.mu.RLock()
	r := p.records[id]
	p.mu.RUnlock()
	return r
}

// apply merges in into the partition and returns the resulting record, the
// record it replaced (nil if none) and whether anything changed. A record whose deadline has passed at now is
// not stored: an expired session can't be brought back by a late message.
func (p *partition) apply(in *record, now int64) (out, old *record, changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old = p.records[in.id]
	if old == nil {
		if d := in.deadline(); d != 0 && d <= now {
			return nil, nil, false
		}
	}
	out = merge(old, in)
	if out == old {
		return old, old, false
	}
	p.records[in.id] = out
	p.usage.replace(old, out)
	if old != nil {
		p.digest ^= old.digest()
	} else {
		p.schedule(out.id, out.deadline())
	}
	p.digest ^= out.digest()
	return out, old, true
}

// update runs fn on the current record of id (nil if none) under the
// partition's lock and merges the record fn returns, if any, before the
// lock is released: a compare-and-set.
func (p *partition) update(id string, fn func(cur *record) *record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := fn(p.records[id])
	if in == nil {
		return
	}
	old := p.records[id]
	out := merge(old, in)
	if out == old {
		return
	}
	p.records[id] = out
	p.usage.replace(old, out)
	if old != nil {
		p.digest ^= old.digest()
	} else {
		p.schedule(out.id, out.deadline())
	}
	p.digest ^= out.digest()
}

// revert runs undo on the current record of id under the partition's
// lock and puts the record undo returns, if any, in its place. Unlike
// update it does not merge, so it can take a write back (see
// Store.undoUpdate); undo must keep the record's deadlines.
func (p *partition) revert(id string, undo func(cur *record) *record) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.records[id]
	if old == nil {
		return
	}
	out := undo(old)
	if out == nil {
		return
	}
	p.records[id] = out
	p.usage.replace(old, out)
	p.digest ^= old.digest() ^ out.digest()
}

// schedule puts id in the expiry bucket of deadline. Callers hold p.mu.
func (p *partition) schedule(id string, deadline int64) {
	if deadline == 0 {
		return
	}
	b := max(deadline/expiryBucketMs, p.lastSwept+1)
	p.expiry[b] = append(p.expiry[b], id)
}

// sweep removes the records whose deadline has passed at now and returns
// how many it removed. It calls expired, under the partition's lock, for
// every live session it removes (not for tombstones).
func (p *partition) sweep(now int64, expired func(*record)) int {
	due := now / expiryBucketMs
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastSwept == 0 {
		p.lastSwept = due - 1
		for b := range p.expiry { // only before the first sweep: few buckets
			p.lastSwept = min(p.lastSwept, b-1)
		}
	}
	removed := 0
	if int64(len(p.expiry)) < due-p.lastSwept {
		// A long gap (a process that was paused, a clock that jumped):
		// visit the buckets that hold entries, in order, rather than
		// every second of the gap.
		var buckets []int64
		for b := range p.expiry {
			if b <= due {
				buckets = append(buckets, b)
			}
		}
		slices.Sort(buckets)
		p.lastSwept = due // first, so that entries moved on land after due
		for _, b := range buckets {
			removed += p.sweepBucket(b, now, expired)
		}
		return removed
	}
	for p.lastSwept < due {
		p.lastSwept++ // before the bucket's work, so that entries moved on land in a later bucket
		removed += p.sweepBucket(p.lastSwept, now, expired)
	}
	return removed
}

// sweepBucket checks the entries of bucket b. Callers hold p.mu.
func (p *partition) sweepBucket(b, now int64, expired func(*record)) int {
	removed := 0
	ids := p.expiry[b]
	delete(p.expiry, b)
	for _, id := range ids {
		p.checked++
		r := p.records[id]
		if r == nil {
			continue
		}
		if d := r.deadline(); d == 0 || d > now {
			p.schedule(id, d) // the deadline moved on: check again then
			continue
		}
		delete(p.records, id)
		p.usage.remove(r)
		p.digest ^= r.digest()
		removed++
		if !r.destroyed && expired != nil {
			expired(r)
		}
	}
	return removed
}

// snapshot returns the partition's records sorted by ID. Records are
// immutable, so the slice can be read without the lock.
func (p *partition) snapshot() []*record {
	p.mu.RLock()
	rs := make([]*record, 0, len(p.records))
	for _, r := range p.records {
		rs = append(rs, r)
	}
	p.mu.RUnlock()
	sortRecords(rs)
	return rs
}

// sortRecords sorts records by ID.
func sortRecords(rs []*record) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].id < rs[j].id })
}

// stats returns the number of records and the digest.
func (p *partition) stats() (n int, digest uint64) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.records), p.digest
}

// dropUnchanged removes the given records from the partition if each is
// still the current record of its session (nothing was merged into it
// since), and returns how many it removed.
func (p *partition) dropUnchanged(rs []*record) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range rs {
		if p.records[r.id] == r {
			delete(p.records, r.id)
			p.usage.remove(r)
			p.digest ^= r.digest()
			n++
		}
	}
	return n
}
