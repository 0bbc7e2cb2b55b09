package replication

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmesh/sessionmesh/transport"
)

// Read leases.
//
// A node answers reads of a partition it owns from its own copy only while
// it is authoritative: it holds the partition completely (ready) and has a
// valid read lease from every peer that answers it. Otherwise it reads
// through an authoritative owner, or merges what the owners hold. This is
// what keeps a node that was frozen (SIGSTOP, a long pause), cut off by a
// partition or too slow to acknowledge writes from answering with copies
// that miss writes the others acknowledged meanwhile.
//
// Every ReadLease/4 a node asks each peer for a lease of ReadLease. A peer
// grants it, with its epoch for the asking node, unless it does not count
// the asker as a member or has stopped waiting for the asker's
// acknowledgements (degraded). A writer that acknowledges a write without
// one of its owners (the owner timed out or failed) fences that owner
// first: it marks it degraded, so it grants it nothing more until
// anti-entropy has repaired it, bumps its epoch, and holds the write's
// acknowledgement until every lease it granted the owner has expired. A
// peer dropped from the view is fenced the same way. So when a write is
// acknowledged, every owner that lacks it has stopped answering from its
// copy, and when it gets a lease again the new epoch tells it that it
// missed writes: it stays non-authoritative until it has merged its
// partitions with the other owners (resync).
//
// The lease is measured on the monotonic clock from the moment it was asked
// for, so a process that was stopped finds its leases expired when it
// resumes, before it answers a single request. Wall clocks play no part.
//
// A peer that does not answer (crashed, frozen, cut off, or its answers are
// lost) stays required until the failure detector drops it from the view
// or its process is proven gone (a refused connection, another
// incarnation answering): silence is not proof of death. A node whose own
// requests are lost while its peers' requests reach it would otherwise
// take every peer for failed and answer them from copies that miss what
// they wrote without it. The cost is that between a silent failure (a
// frozen process, a machine that stops answering) and the failure
// detector's verdict, the other nodes read through the owners instead of
// locally once their leases from it expire, and updates wait for the
// verdict. What remains is the split brain: once the failure detector has
// dropped every peer, a node cut off from the others answers from its own
// copies until the link heals; the epoch then says so
// (docs/consistency.md).

// memberKey names one incarnation of a member.
type memberKey struct {
	name        string
	incarnation uint64
}

func keyOf(q *peer) memberKey { return memberKey{q.name, q.incarnation} }

// heldLease is what a node knows about the lease a peer granted it.
type heldLease struct {
	until   int64  // monotonic deadline of the lease; 0 for none
	epoch   uint64 // the peer's epoch for this node at the last grant
	granted bool   // the peer has granted a lease at least once
	behind  bool   // the peer's last answer: this node is degraded there
	unknown bool   // the peer's last answer: this node is not a member there
	gone    bool   // the peer's process is gone: connection refused, or another incarnation answered
}

// required reports whether the lease must be valid for this node to be
// authoritative.
func (h *heldLease) required() bool {
	switch {
	case h.behind:
		return true // until that peer has repaired this node
	case h.gone:
		return false // proven gone: nothing listens at its address any more
	case h.unknown:
		return h.granted // a peer that has not met this node yet sent it nothing
	}
	return true
}

// grantedLease is what a node granted a peer.
type grantedLease struct {
	until int64  // monotonic deadline of the latest lease granted
	epoch uint64 // bumped by each fence
}

// leases holds a store's read leases, both ways.
type leases struct {
	clock    Clock         // leases are measured on its monotonic reading
	duration time.Duration // ReadLease
	// authority is the monotonic time until which this node is
	// authoritative (0: not at all); fenceUntil the time before which a
	// write that skipped an owner may not be acknowledged.
	authority  atomic.Int64
	fenceUntil atomic.Int64
	renew      chan struct{} // asks renewLeases for a round now

	mu      sync.Mutex
	peers   []*peer                     // guards: the current view's peers
	held    map[memberKey]*heldLease    // guards: leases from peers
	granted map[memberKey]*grantedLease // guards: leases to peers
	behind  uint64                      // guards: grants whose epoch changed; a resync is due when != synced
	synced  uint64                      // guards: the value of behind the last resync started from
}

func newLeases(d time.Duration, clock Clock) *leases {
	l := &leases{
		clock:    clock,
		duration: d,
		renew:    make(chan struct{}, 1),
		held:     map[memberKey]*heldLease{},
		granted:  map[memberKey]*grantedLease{},
	}
	l.authority.Store(math.MaxInt64) // alone: nobody can write behind its back
	return l
}

// mono returns the monotonic time in nanoseconds.
func (l *leases) mono() int64 { return int64(l.clock.Monotonic()) }

// authoritative reports whether this node may answer reads of p from its
// own copy. It is on every read's path: a flag, a clock read and an atomic.
func (s *Store) authoritative(p *partition) bool {
	return p.ready.Load() && s.leases.mono() < s.leases.authority.Load()
}

// recompute publishes the authority deadline. Callers hold l.mu.
func (l *leases) recompute() {
	if l.behind != l.synced {
		l.authority.Store(0)
		return
	}
	until := int64(math.MaxInt64)
	for _, q := range l.peers {
		h := l.held[keyOf(q)]
		if h == nil {
			until = 0 // not asked yet: renewLeases asks at once
			break
		}
		if h.required() {
			until = min(until, h.until)
		}
	}
	l.authority.Store(until)
}

// leasesViewChanged takes a new view's peers and fences those that left it (they
// get no more writes from here), forgetting earlier incarnations of
// members.
func (s *Store) leasesViewChanged(prev, next *view) {
	l := s.leases
	l.mu.Lock()
	if prev != nil {
		for _, q := range prev.peers {
			if r := next.byName[q.name]; r != q {
				if r != nil && r.incarnation != q.incarnation {
					continue // restarted: the old process, and what it held, is gone
				}
				s.fenceLocked(q)
			}
		}
	}
	l.peers = next.peers
	for _, q := range next.peers {
		forgetOtherIncarnations(l.held, q)
		forgetOtherIncarnations(l.granted, q)
	}
	l.recompute()
	l.mu.Unlock()
	select {
	case l.renew <- struct{}{}:
	default:
	}
}

// forgetOtherIncarnations drops the entries of m about q's member other
// than q's incarnation: a restarted member starts afresh.
func forgetOtherIncarnations[V any](m map[memberKey]V, q *peer) {
	for k := range m {
		if k.name == q.name && k.incarnation != q.incarnation {
			delete(m, k)
		}
	}
}

// fence stops q from answering reads from its copy before this node
// acknowledges a write q may not have: q is marked degraded (it gets no
// lease until anti-entropy has repaired it), its epoch is bumped (its next
// lease tells it to resync) and writes wait until the leases already
// granted to it expire.
func (s *Store) fence(q *peer) {
	s.leases.mu.Lock()
	defer s.leases.mu.Unlock()
	s.fenceLocked(q)
	if !q.degraded.Swap(true) { // under l.mu: see grantLease
		s.log.Warn("peer missed a write; not waiting for it until repaired", "peer", q.name)
		select {
		case s.kick <- struct{}{}: // repair it soon
		default:
		}
	}
}

// fenceLocked bumps q's epoch and makes writes wait until the leases
// granted to it have expired. Callers hold s.leases.mu.
func (s *Store) fenceLocked(q *peer) {
	l := s.leases
	g := l.granted[keyOf(q)]
	if g == nil {
		g = &grantedLease{}
		l.granted[keyOf(q)] = g
	}
	g.epoch++
	if g.until > l.fenceUntil.Load() {
		l.fenceUntil.Store(g.until)
	}
}

// unfence clears q's degraded mark once anti-entropy has repaired it.
func (s *Store) unfence(q *peer) {
	l := s.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	if q.degraded.Swap(false) {
		s.log.Info("degraded peer repaired; waiting for its acknowledgements again", "peer", q.name)
	}
}

// fenceFailed fences q after a call that may not have delivered a write,
// unless the call proves q's process gone: a refused connection means
// nothing listens at its address, so it answers no reads either.
func (s *Store) fenceFailed(q *peer, err error) {
	if errors.Is(err, transport.ErrRefused) {
		return
	}
	s.fence(q)
}

// awaitFence waits until every lease granted to a fenced peer has expired,
// so that a write acknowledged after it cannot be missed by a node that
// answers reads from its copy.
func (s *Store) awaitFence(ctx context.Context) error {
	d := time.Duration(s.leases.fenceUntil.Load() - s.leases.mono())
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}

// grantLease answers a lease request from holder, addressed to this
// node's incarnation grantor.
func (s *Store) grantLease(holder memberKey, grantor uint64) leaseReply {
	if grantor != s.self.incarnation {
		return leaseReply{outcome: leaseNotYou}
	}
	q := s.view.Load().byName[holder.name]
	if q == nil || q.incarnation != holder.incarnation {
		return leaseReply{outcome: leaseUnknown}
	}
	l := s.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	if q.degraded.Load() { // under l.mu: fence sets it there
		return leaseReply{outcome: leaseBehind}
	}
	g := l.granted[holder]
	if g == nil {
		g = &grantedLease{}
		l.granted[holder] = g
	}
	g.until = max(g.until, l.mono()+int64(l.duration))
	return leaseReply{outcome: leaseGranted, epoch: g.epoch, duration: l.duration}
}

// renewLeases is the store's lease goroutine: every ReadLease/4, and at
// once after a view change, it asks every peer for a lease, waiting up to
// ReadLease/2 for the answers.
func (s *Store) renewLeases() {
	period := s.leases.duration / 4
	s.repeat(period, s.leases.renew, func() {
		var wg sync.WaitGroup
		for _, q := range s.view.Load().peers {
			wg.Go(func() { s.askLease(q, s.leases.duration/2) })
		}
		wg.Wait()
	})
}

// askLease asks q for a lease and records the answer.
func (s *Store) askLease(q *peer, timeout time.Duration) {
	l := s.leases
	req, err := encodeLeaseRequest(s.self.name, s.self.incarnation, q.incarnation)
	if err != nil {
		return
	}
	asked := l.mono()
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	resp, err := s.tr.Call(ctx, q.addr, req)
	cancel()
	if s.ctx.Err() != nil {
		return
	}
	var r leaseReply
	if err == nil {
		r, err = decodeLeaseReply(resp)
	}
	resync := false
	l.mu.Lock()
	h := l.held[keyOf(q)]
	if h == nil {
		h = &heldLease{}
		l.held[keyOf(q)] = h
	}
	q.silent.Store(err != nil)
	if err == nil || errors.Is(err, transport.ErrRefused) {
		h.behind, h.unknown, h.gone = false, false, false
	}
	switch {
	case errors.Is(err, transport.ErrRefused):
		h.gone = true
	case err != nil:
		// Not renewed: the lease runs out. What it said last, if behind,
		// still holds.
		s.log.Debug("lease request failed", "peer", q.name, "err", err)
	case r.outcome == leaseGranted:
		if r.epoch != h.epoch {
			// Whatever the peer acknowledged without this node is
			// unknown here: merge with the other owners first.
			l.behind++
			resync = true
		}
		h.granted, h.epoch = true, r.epoch
		h.until = asked + int64(min(r.duration, l.duration))
	case r.outcome == leaseBehind:
		h.behind = true
	case r.outcome == leaseUnknown:
		h.unknown = true
	case r.outcome == leaseNotYou:
		h.gone = true
	}
	// leaseBehind: the lease is not renewed; it runs out.
	l.recompute()
	l.mu.Unlock()
	if resync {
		s.log.Info("a peer acknowledged writes without this node; merging with the other owners before answering reads locally", "peer", q.name)
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

// resync merges this node's complete partitions with every other owner
// that answered this round's poll, when a lease said it missed writes.
// Until it has, the node is not authoritative.
func (s *Store) resync(ctx context.Context, v *view) {
	l := s.leases
	l.mu.Lock()
	target, due := l.behind, l.behind != l.synced
	l.mu.Unlock()
	if !due {
		return
	}
	// A poll of its own: statuses from before the lease that asked for
	// this may predate the writes it stands for.
	since := s.clock.Monotonic()
	s.poll(ctx, v)
	for pi, p := range s.parts {
		if !v.owns(pi) || !p.ready.Load() {
			continue
		}
		for _, q := range v.targets(pi) {
			st := fresh(q, since)
			if st == nil {
				s.log.Debug("resync: owner did not answer; retrying next round", "peer", q.name)
				return
			}
			if _, d := p.stats(); d == st.digests[pi] {
				continue
			}
			if _, err := s.exchange(ctx, q, pi, true); err != nil {
				s.log.Debug("resync failed; retrying next round", "peer", q.name, "partition", pi, "err", err)
				return
			}
		}
	}
	l.mu.Lock()
	l.synced = target
	l.recompute()
	l.mu.Unlock()
	s.log.Info("merged with the other owners; answering reads locally again")
}
