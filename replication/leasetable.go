package replication

import (
	"math"
	"slices"
	"time"
)

// leaseTable is the decision logic of read leases (lease.go explains what
// they are for): which leases this node holds from its peers and which it
// granted them, whether it is authoritative, whom to fence, when a write
// may be acknowledged. It is pure: no clock, no network, no goroutine, no
// lock. Its methods take the monotonic time (nanoseconds) and the facts
// the runtime observed, and return what follows. The store's leases type
// holds it under a mutex, publishes its answers for the read path, and
// does the I/O.
type leaseTable struct {
	self     uint64 // this node's incarnation
	duration int64  // ReadLease, in nanoseconds

	peers   []memberKey                 // the current view's peers
	held    map[memberKey]*heldLease    // leases from peers
	granted map[memberKey]*grantedLease // leases to peers
	// behind counts grants whose epoch changed: a resync is due while it
	// differs from synced, the value the last completed resync started
	// from.
	behind, synced uint64
	// fenceUntil is the monotonic time before which a write that skipped
	// an owner may not be acknowledged.
	fenceUntil int64
	// viewFences holds, for each peer that lost a partition in a view
	// change, the end of the lease it was granted before: it may answer
	// from its copy of that partition until then, or until it asks for a
	// lease with this node's owners (its view changed too, which ended its
	// leases), whichever comes first. Writes wait for both.
	viewFences map[memberKey]int64
}

// memberKey names one incarnation of a member.
type memberKey struct {
	name        string
	incarnation uint64
}

func keyOf(q *peer) memberKey { return memberKey{q.name, q.incarnation} }

// heldLease is what a node knows about the lease a peer granted it.
type heldLease struct {
	until  int64  // monotonic deadline of the lease; 0 for none
	epoch  uint64 // the peer's epoch for this node at the last grant
	behind bool   // the peer's last answer: this node is degraded there
	gone   bool   // the peer's process is gone: connection refused, or another incarnation answered
}

// required reports whether the lease must be valid for this node to be
// authoritative.
func (h *heldLease) required() bool {
	switch {
	case h.behind:
		return true // until that peer has repaired this node
	case h.gone:
		return false // proven gone: nothing listens at its address any more
	}
	// Also while the peer does not list this node (leaseUnknown): it sends its
	// writes to the owners of its own view, without this node, so this
	// node's copies miss them (a node that has just started, before its
	// peers list it; one that a peer declared dead).
	return true
}

// grantedLease is what a node granted a peer.
type grantedLease struct {
	until int64     // monotonic deadline of the latest lease granted
	epoch uint64    // bumped by each fence
	mark  writeMark // this node's writes at the latest grant
}

// writeMark is what a node knows of the writes it sends, at one moment:
// how many it had started, and whether any had not returned yet (always
// so with asynchronous writes, whose sends outlive them). A view change
// compares the mark of a peer's last grant with the current one
// (viewChanged).
type writeMark struct {
	started uint64
	busy    bool
}

// sentSince reports whether this node may have sent a write, between the
// moments of mark and of now, that a peer granted a lease at mark did
// not get: one started since, or one in flight then.
func (mark writeMark) sentSince(now writeMark) bool {
	return mark.busy || mark.started != now.started
}

// leaseAnswer is what became of one lease request: the peer's reply, or
// how the call failed.
type leaseAnswer struct {
	reply   leaseReply
	refused bool // the connection was refused: nothing listens at the peer's address
	failed  bool // no reply (timeout, lost, broken connection), and not refused
}

func newLeaseTable(self uint64, duration time.Duration) *leaseTable {
	return &leaseTable{
		self:       self,
		duration:   int64(duration),
		held:       map[memberKey]*heldLease{},
		granted:    map[memberKey]*grantedLease{},
		viewFences: map[memberKey]int64{},
	}
}

// authority returns the monotonic time until which this node is
// authoritative: 0 while a resync is due or a peer has not been asked yet;
// otherwise the earliest deadline of the leases it requires; MaxInt64 when
// alone.
func (t *leaseTable) authority() int64 {
	if t.behind != t.synced {
		return 0
	}
	until := int64(math.MaxInt64)
	for _, k := range t.peers {
		h := t.held[k]
		if h == nil {
			return 0
		}
		if h.required() {
			until = min(until, h.until)
		}
	}
	return until
}

// viewChanged installs the peers of a new view; lost are the members of
// prev that own, in prev, a partition they do not own in next.
//
// While nodes' views differ, they may disagree on a partition's owners:
// a writer sends a write to the owners of its view only, and a node that
// owns the partition in another view misses it. So:
//   - Each member that left, or lost a partition, is fenced: it gets some
//     writes no more from here, so it must stop answering from its copy
//     before the next write is acknowledged. A member that left is fenced
//     until its lease ends; one that lost a partition until its lease ends
//     or it shows that its view changed too (grant), usually much sooner.
//     A member back under another incarnation is not fenced (the old
//     process, and what it held, is gone); what is known about its earlier
//     incarnations is forgotten.
//   - Every peer's epoch is bumped, without a wait, if this node may have
//     sent a write since its last grant to the peer (writes, the mark of
//     the moment, against the grant's): its next lease from here tells it
//     to merge with the other owners before it answers from its copies
//     again, since it may have missed writes this node sent to the owners
//     of its old view. A node that sent none has nothing the peer could
//     have missed: without that condition, in a start of 64 nodes with
//     no session yet, every join made every node merge with its
//     co-owners, 13 to 15 times a node.
//   - The leases this node holds end: it answers from its copies again
//     only once its peers grant leases for a view with the same owners
//     (grant) and it has merged.
//
// It returns the members fenced.
func (t *leaseTable) viewChanged(prev, next, lost []memberKey, writes writeMark) (fenced []memberKey) {
	byName := make(map[string]uint64, len(next))
	for _, k := range next {
		byName[k.name] = k.incarnation
	}
	for _, k := range prev {
		if _, ok := byName[k.name]; !ok {
			t.fence(k)
			fenced = append(fenced, k)
		}
	}
	for _, k := range next {
		if g := t.grantedTo(k); g.mark.sentSince(writes) {
			g.epoch++
		}
	}
	for _, k := range lost {
		if byName[k.name] == k.incarnation && !slices.Contains(fenced, k) {
			t.viewFences[k] = max(t.viewFences[k], t.grantedTo(k).until)
			fenced = append(fenced, k)
		}
	}
	for _, h := range t.held {
		h.until = 0
	}
	t.peers = next
	forgetOtherIncarnations(t.held, byName)
	forgetOtherIncarnations(t.granted, byName)
	forgetOtherIncarnations(t.viewFences, byName)
	return fenced
}

// forgetOtherIncarnations drops the entries about members whose
// incarnation is not the one in current (members not in current stay:
// their fence must outlive them).
func forgetOtherIncarnations[V any](m map[memberKey]V, current map[string]uint64) {
	for k := range m {
		if inc, ok := current[k.name]; ok && inc != k.incarnation {
			delete(m, k)
		}
	}
}

// fence bumps k's epoch (its next lease tells it that it missed writes)
// and makes writes wait until the leases granted to it have expired.
func (t *leaseTable) fence(k memberKey) {
	g := t.grantedTo(k)
	g.epoch++
	t.fenceUntil = max(t.fenceUntil, g.until)
}

func (t *leaseTable) grantedTo(k memberKey) *grantedLease {
	g := t.granted[k]
	if g == nil {
		g = &grantedLease{}
		t.granted[k] = g
	}
	return g
}

// fenceWait returns how long, from now, a write that skipped an owner must
// wait before it is acknowledged (0 or less: not at all).
func (t *leaseTable) fenceWait(now int64) time.Duration {
	return time.Duration(t.fenceDeadline() - now)
}

// fenceDeadline is the monotonic time before which a write may not be
// acknowledged: the latest of the fences.
func (t *leaseTable) fenceDeadline() int64 {
	until := t.fenceUntil
	for _, u := range t.viewFences {
		until = max(until, u)
	}
	return until
}

// grant answers a lease request from holder addressed to this node's
// incarnation grantor, at monotonic time now. member says this node's
// view holds that incarnation of holder; sameOwners that the holder's view
// has the same owning members as this node's (so both agree on every
// partition's owners, and this node sends the holder every write of the
// partitions it owns); degraded that holder missed a write acknowledged
// without it and has not been repaired since; writes the mark of this
// node's writes at that moment.
func (t *leaseTable) grant(holder memberKey, grantor uint64, member, sameOwners, degraded bool, now int64, writes writeMark) leaseReply {
	switch {
	case grantor != t.self:
		return leaseReply{outcome: leaseNotYou}
	case !member:
		return leaseReply{outcome: leaseUnknown}
	case !sameOwners:
		return leaseReply{outcome: leaseOtherView}
	case degraded:
		delete(t.viewFences, holder) // same view: see viewFences
		return leaseReply{outcome: leaseBehind}
	}
	delete(t.viewFences, holder)
	g := t.grantedTo(holder)
	g.until = max(g.until, now+t.duration)
	g.mark = writes
	return leaseReply{outcome: leaseGranted, epoch: g.epoch, duration: time.Duration(t.duration)}
}

// answered records what became of the lease request this node sent peer
// at monotonic time asked. It reports whether a resync is now due: the
// peer's epoch for this node changed, so it may have acknowledged writes
// without this node.
func (t *leaseTable) answered(peer memberKey, asked int64, a leaseAnswer) (resync bool) {
	h := t.held[peer]
	if h == nil {
		h = &heldLease{}
		t.held[peer] = h
	}
	if !a.failed {
		h.behind, h.gone = false, false
	}
	switch {
	case a.refused:
		h.gone = true
	case a.failed:
		// Not renewed: the lease runs out. What it said last, if behind,
		// still holds.
	case a.reply.outcome == leaseGranted:
		if a.reply.epoch != h.epoch {
			t.behind++
			resync = true
		}
		h.epoch = a.reply.epoch
		h.until = asked + min(int64(a.reply.duration), t.duration)
	case a.reply.outcome == leaseBehind:
		h.behind = true // the lease is not renewed: it runs out
	case a.reply.outcome == leaseNotYou:
		h.gone = true
	}
	// leaseOtherView: not renewed until the views agree; leaseUnknown:
	// until the peer lists this node. The peer stays required meanwhile.
	return resync
}

// resyncDue reports whether a resync is due, and the mark that completing
// it sets (resynced).
func (t *leaseTable) resyncDue() (mark uint64, due bool) {
	return t.behind, t.behind != t.synced
}

// missedWrites reports whether this node knows it missed writes: the last
// answer of a peer in the view said it is degraded there, or a resync is
// due. (A departed peer's last answer never changes again.)
func (t *leaseTable) missedWrites() bool {
	if t.behind != t.synced {
		return true
	}
	for _, k := range t.peers {
		if h := t.held[k]; h != nil && h.behind {
			return true
		}
	}
	return false
}

// resynced records that a resync started at mark has merged this node's
// partitions with the other owners.
func (t *leaseTable) resynced(mark uint64) { t.synced = mark }
