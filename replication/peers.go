package replication

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// peer is a member of the cluster as the store sees it; one value also
// stands for this node itself in ownership lists (self is true). A peer
// value lives as long as one incarnation of that member is in the cluster,
// so its health survives rebuilds of the view.
type peer struct {
	name        string
	incarnation uint64
	addr        string // replication transport address
	zone        string // failure domain (Member.Zone)
	self        bool   // this node

	// degraded is set when the peer failed to acknowledge a write within
	// WriteTimeout. Writes are still sent to a degraded peer but not
	// waited for; the maintenance loop clears the flag once it has
	// repaired the peer.
	degraded atomic.Bool
	// silent is set while the peer does not answer lease requests; reads
	// do not wait for it.
	silent atomic.Bool
	// unlisting is set while the peer's last answer to a lease request
	// said that it does not list this node (leaseUnknown). Such a peer is
	// not fenced by what this node does (it needs no lease from it), so a
	// write that misses it is not acknowledged (write).
	unlisting atomic.Bool
	// ahead is set while the peer's last answer to a lease request said
	// that this node missed a write the peer acknowledged without it
	// (leaseBehind): while the peer is unheard, what the other owners
	// answer is no evidence (readOwners).
	ahead atomic.Bool
	// queue feeds the peer's background sender (asynchronous writes,
	// writes to a degraded peer), started on first use; gone is closed when
	// the peer leaves the view, which stops the sender.
	queue       chan *record
	startSender sync.Once
	gone        chan struct{}
	// lost is set by ownerLost when a call to the peer failed as a gone
	// peer's does, and cleared when it answers again: only a new loss
	// turns FullyReplicated false at once (after that, the rounds count
	// the peer's partitions as under-replicated from its failing polls).
	lost atomic.Bool
	// refusing is set while the peer's address refuses connections:
	// nothing listens there, so its process is gone, and it owns no
	// partition in the views built meanwhile (see Store.peerRefused).
	refusing atomic.Bool
	// status is what the peer last reported about its partitions, and
	// leaseGen the status generation its last lease answer carried.
	status   atomic.Pointer[peerStatus]
	leaseGen atomic.Pointer[heardGen]
	// clockFar is set while the peer's wall clock is logged as far from
	// this node's (see checkClock).
	clockFar atomic.Bool
	// version is what this node knows of the peer's build (negotiate.go).
	version peerVersion
}

// heardGen is a status generation a peer sent, and when it arrived on the
// monotonic clock.
type heardGen struct {
	gen uint64
	at  time.Duration
}

// unchangedStatus returns q's status, marked as arrived at now, if q's
// last lease answer, at since or later, said it had not changed since it
// was polled, and no call to q failed as a gone peer's does since; else
// nil.
func (q *peer) unchangedStatus(since, now time.Duration) *peerStatus {
	st, heard := q.status.Load(), q.leaseGen.Load()
	if st == nil || st.gen == 0 || heard == nil || heard.gen != st.gen || heard.at < since || q.lost.Load() {
		return nil
	}
	return &peerStatus{at: now, gen: st.gen, ready: st.ready, digests: st.digests, counts: st.counts}
}

// peerStatus is a peer's answer to a status poll.
type peerStatus struct {
	at      time.Duration // when it arrived, on the monotonic clock
	gen     uint64        // the peer's status generation (Store.statusGen); 0 from a build without it
	ready   []bool        // the peer owns the partition and holds a complete copy
	digests []uint64      // per-partition digests
	counts  []uint32      // records held per partition
}

// view is an immutable snapshot of the cluster as this node sees it: its
// peers and the owners of every partition. The membership goroutine builds
// a new one on every change and publishes it atomically; readers never
// lock.
type view struct {
	mode   Mode
	self   *peer
	peers  []*peer          // the other members, leaving ones included
	byName map[string]*peer // peers by name
	owners [numPartitions][]*peer
	owned  [numPartitions]bool // self is among owners
	// owning identifies the members that own partitions (this node
	// included, leaving members not): two nodes whose views have the same
	// owning agree on every partition's owners.
	owning uint64
	// zones is the number of zones the owning members span, and
	// singleZone the partitions with two or more owners that all sit in
	// one zone although zones > 1: losing that zone loses them.
	zones, singleZone int
}

// owns reports whether this node owns partition p.
func (v *view) owns(p int) bool { return v.owned[p] }

// sees reports whether the view holds this incarnation of the named member.
func (v *view) sees(name string, incarnation uint64) bool {
	q := v.byName[name]
	return q != nil && q.incarnation == incarnation
}

// listsSender reports whether the sender of a request is a member in v: a
// request that names no sender comes from a build that does not say, and
// is taken as listed (negotiate.go).
func (v *view) listsSender(k memberKey) bool {
	return k.name == "" || v.sees(k.name, k.incarnation)
}

// buildView returns the view for members. Peers of prev are reused for
// members whose incarnation and address did not change. Members in leaving
// (name -> incarnation), and this node when selfLeaving, own nothing.
func buildView(mode Mode, self *peer, members []Member, prev *view, leaving map[string]uint64, selfLeaving bool) *view {
	v := &view{mode: mode, self: self, byName: make(map[string]*peer, len(members))}
	var candidates []*peer
	if !selfLeaving {
		candidates = append(candidates, self)
	}
	for _, m := range members {
		addr := m.Addr
		if m.Name == self.name || addr == "" {
			continue
		}
		var q *peer
		if prev != nil {
			q = prev.byName[m.Name]
		}
		if q == nil || q.incarnation != m.Incarnation || q.addr != addr || q.zone != m.Zone {
			q = newPeer(m.Name, m.Incarnation, addr, m.Zone)
		}
		v.peers = append(v.peers, q)
		v.byName[m.Name] = q
		if inc, ok := leaving[m.Name]; (!ok || inc != m.Incarnation) && !q.refusing.Load() {
			candidates = append(candidates, q)
		}
	}
	v.owning = owningHash(candidates)
	v.zones = countZones(candidates)
	for p := range v.owners {
		v.owners[p] = ownersOf(p, candidates, mode)
		for _, q := range v.owners[p] {
			if q.self {
				v.owned[p] = true
			}
		}
		if v.zones > 1 && len(v.owners[p]) > 1 && countZones(v.owners[p]) == 1 {
			v.singleZone++
		}
	}
	return v
}

// countZones returns the number of distinct zones of qs.
func countZones(qs []*peer) int {
	zones := make(map[string]bool, len(qs))
	for _, q := range qs {
		zones[q.zone] = true
	}
	return len(zones)
}

// owningHash identifies a set of owning members, whatever their order.
func owningHash(candidates []*peer) uint64 {
	var sum uint64
	for _, q := range candidates {
		h := newHash64()
		h.writeString(q.name)
		h.writeUint64(q.incarnation)
		h.writeString(q.zone) // placement depends on zones too
		sum += h.sum()
	}
	return sum | 1 // never 0: 0 stands for "not sent" on the wire
}

// lostPartitions returns the peers of prev that own, in prev, a partition
// they do not own in next: those a writer with the next view stops
// sending some writes to while they may still answer from their copies.
func lostPartitions(prev, next *view) []*peer {
	var out []*peer
	for _, q := range prev.peers {
		for p := range prev.owners {
			if slices.Contains(prev.owners[p], q) && !slices.ContainsFunc(next.owners[p], func(r *peer) bool { return keyOf(r) == keyOf(q) }) {
				out = append(out, q)
				break
			}
		}
	}
	return out
}

// ownerless reports whether no member owns anything in v: this node is
// leaving and every peer is leaving too, or there is none.
// Every partition has an owner while any member owns anything.
func (v *view) ownerless() bool { return len(v.owners[0]) == 0 }

// targets returns the owners of partition p other than this node.
func (v *view) targets(p int) []*peer {
	out := make([]*peer, 0, len(v.owners[p]))
	for _, q := range v.owners[p] {
		if !q.self {
			out = append(out, q)
		}
	}
	return out
}

func newPeer(name string, incarnation uint64, addr, zone string) *peer {
	return &peer{name: name, incarnation: incarnation, addr: addr, zone: zone,
		queue: make(chan *record, sendQueue), gone: make(chan struct{})}
}
