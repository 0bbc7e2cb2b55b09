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
// Every ReadLease/4 a node asks each peer for a lease of ReadLease, while
// it uses them: leases are renewed at that pace only while requests (reads,
// writes, updates, a peer's read, Stats) asked in the last
// leaseIdleAfter·ReadLease whether the node may answer from its copies.
// An idle node asks every idleRenewal·ReadLease, which keeps the clock
// estimates (peerclocks.go) and the peers' status generations current,
// and lets its leases lapse in between; the first request after the idle
// spell finds no lease, reads through the owners as when a lease lapses
// for any other reason, and asks for a round at once. Holding no lease is
// always safe: it only means reading through the owners. What an idle
// cluster saves is most of its background: a lease exchange costs both
// nodes about 0.2 ms of CPU when 32 processes share 2 cores, and every
// node exchanges with every peer. A peer
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
// verdict. Once the failure detector has dropped the peers it cannot
// reach, a node cut off from most of the others is in a minority
// (minority.go) and answers nothing from its copies; what remains is the
// split brain of two halves, and of a partition longer than
// MinorityHold, which answer from their copies until the link heals; the
// epoch then says so (docs/consistency.md).

// leases is the runtime of a store's read leases: the pure leaseTable
// under a mutex, its two answers the read and write paths need published
// in atomics, and the goroutine that renews leases (renewLeases).
type leases struct {
	clock Clock         // leases are measured on its monotonic reading
	d     time.Duration // ReadLease
	// used is the monotonic time at which a request last asked whether
	// this node is authoritative (want), at most d/8 behind.
	used atomic.Int64
	// authority is the monotonic time until which this node is
	// authoritative (0: not at all); fenceUntil the time before which a
	// write that skipped an owner may not be acknowledged. Both are
	// copies of the table's, stored after every change.
	authority    atomic.Int64
	fenceUntil   atomic.Int64
	missedWrites atomic.Bool // the table's missedWrites, for read replies
	// minorityUntil is the monotonic time until which this node's view is
	// a minority (minority.go): it is not authoritative and grants no
	// lease meanwhile.
	minorityUntil atomic.Int64
	renew         chan struct{} // asks renewLeases for a round now
	async         bool          // writes are asynchronous: their sends outlive them

	mu    sync.Mutex
	table *leaseTable // guards: the decisions

	// writes counts the writes this node has started (Save, Touch,
	// Destroy, Retire, Rename, Update), from before each loads the view
	// it sends by; inFlight those that have not returned. See writeMark.
	// On a cache line of their own: every write changes them, and every
	// read loads authority.
	_        [64]byte
	writes   atomic.Uint64
	inFlight atomic.Int64
}

func newLeases(self uint64, d time.Duration, clock Clock, async bool) *leases {
	l := &leases{clock: clock, d: d, renew: make(chan struct{}, 1), table: newLeaseTable(self, d), async: async}
	l.authority.Store(math.MaxInt64) // alone: nobody can write behind its back
	return l
}

// Pace of lease renewals while the node is idle.
const (
	leaseIdleAfter = 2  // ReadLeases without a request asking for authority before the node is idle
	idleRenewal    = 16 // ReadLeases between the renewals of an idle node
)

// beginWrite marks the start of a write, before it loads the view it
// sends by; endWrite its return.
func (l *leases) beginWrite() {
	l.inFlight.Add(1)
	l.writes.Add(1)
}

func (l *leases) endWrite() { l.inFlight.Add(-1) }

// writeMark returns the mark of this node's writes now. It reads the count
// before the writes in flight, which beginWrite raises first: a write that
// starts meanwhile shows in one or the other.
func (l *leases) writeMark() writeMark {
	started := l.writes.Load()
	return writeMark{started: started, busy: l.async || l.inFlight.Load() > 0}
}

// mono returns the monotonic time in nanoseconds.
func (l *leases) mono() int64 { return int64(l.clock.Monotonic()) }

// want records that a request asked, at monotonic time now, whether this
// node may answer from its copies. The first after an idle spell asks
// for a renewal at once. Writes l.used at most every d/8, as it is on
// every read's path.
func (l *leases) want(now int64) {
	last := l.used.Load()
	if now-last < int64(l.d/8) {
		return
	}
	l.used.Store(now)
	if now-last >= int64(leaseIdleAfter*l.d) {
		select {
		case l.renew <- struct{}{}:
		default:
		}
	}
}

// refresh asks for a renewal at once if this node's authority has lapsed
// while requests use its leases, without counting as a use: a status or
// metrics request wants a true answer, not the pace of requests (a scrape
// every 15 s would otherwise put every lease back on that pace for
// leaseIdleAfter leases). An idle node's leases lapse between its renewals
// on purpose; asking its peers for them because someone looked would make
// every sweep of the health checks of a fleet cost a renewal from every
// peer of every node (about 4,000 exchanges at 64 nodes).
func (l *leases) refresh(now int64) {
	if now < l.authority.Load() || l.idle() {
		return
	}
	select {
	case l.renew <- struct{}{}:
	default:
	}
}

// renewalPeriod is how long after a renewal round the next one is due.
func (l *leases) renewalPeriod() time.Duration {
	if l.idle() {
		return idleRenewal * l.d
	}
	return l.d / 4
}

// idle reports whether no request asked for authority in the last
// leaseIdleAfter leases.
func (l *leases) idle() bool { return l.mono()-l.used.Load() >= int64(leaseIdleAfter*l.d) }

// publish copies the table's answers for the lock-free paths. Callers
// hold l.mu.
func (l *leases) publish() {
	l.authority.Store(l.table.authority())
	l.fenceUntil.Store(l.table.fenceDeadline())
	l.missedWrites.Store(l.table.missedWrites())
}

// authoritative reports whether this node may answer reads of p from its
// own copy. It is on every read's path: a flag, a clock read and an atomic.
// It counts as a use of the leases (want).
func (s *Store) authoritative(p *partition) bool {
	now := s.leases.mono()
	s.leases.want(now)
	return p.ready.Load() && s.leases.authoritativeAt(now)
}

// inMinority reports whether this node's view is a minority now
// (minority.go). It is on every write's path: outside a minority it reads
// no clock.
func (l *leases) inMinority() bool {
	until := l.minorityUntil.Load()
	return until != 0 && l.mono() < until
}

// authoritativeAt reports whether this node holds its leases and is not
// in a minority at monotonic time now.
func (l *leases) authoritativeAt(now int64) bool {
	return now < l.authority.Load() && now >= l.minorityUntil.Load()
}

// leasesViewChanged gives the lease table a new view's peers; those that
// left it are fenced (they get no more writes from here). A node whose
// leases are in use asks for new ones at once, under the new view.
func (s *Store) leasesViewChanged(prev, next *view) {
	l := s.leases
	l.mu.Lock()
	var before []memberKey
	if prev != nil {
		before = peerKeys(prev.peers)
	}
	var lost []*peer
	if prev != nil {
		lost = lostPartitions(prev, next)
	}
	keep := peerKeys(next.peers)
	l.table.viewChanged(before, keep, peerKeys(lost), l.writeMark())
	l.publish()
	l.mu.Unlock()
	s.peerClocks.forget(keep)
	s.wallOffsets.forget(keep)
	if l.idle() {
		// Nothing uses the leases: the first request will ask for them
		// (want). Renewing now would cost every node an exchange with
		// every peer at each view change: after a SIGKILL of one of 64
		// servers on 2 cores, the survivors' renewals delayed their own
		// noticing of the loss by a hundred milliseconds and more.
		return
	}
	select {
	case l.renew <- struct{}{}:
	default:
	}
}

func peerKeys(ps []*peer) []memberKey {
	out := make([]memberKey, len(ps))
	for i, q := range ps {
		out[i] = keyOf(q)
	}
	return out
}

// fence stops q from answering reads from its copy before this node
// acknowledges a write q may not have: q is marked degraded (it gets no
// lease until anti-entropy has repaired it), its epoch is bumped (its next
// lease tells it to resync) and writes wait until the leases already
// granted to it expire.
func (s *Store) fence(q *peer) {
	l := s.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	l.table.fence(keyOf(q))
	l.publish()
	if !q.degraded.Swap(true) { // under l.mu: see grantLease
		s.log.Warn("peer missed a write; not waiting for it until repaired", "peer", q.name)
		s.kickRound() // repair it soon
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
func (s *Store) awaitFence(ctx context.Context) error { return s.awaitFenceUntil(ctx, 0) }

// fenceRemaining is how long a write acknowledged now would have to wait
// for this node's fences. An owner tells the writer (encodeWriteAck): the
// peers this node fenced, after a view change in which they lost a
// partition, may still answer from their copies under the leases it
// granted them, and the writer, whose view is another (it has just
// joined, say), knows nothing of them (found by the cluster simulator: a
// login on a node that had just started, acknowledged with an owner that
// listed it, was read as missing on a node that did not list it yet and
// still held its lease from that owner).
func (s *Store) fenceRemaining() time.Duration {
	return time.Duration(s.leases.fenceUntil.Load() - s.leases.mono())
}

// awaitFenceUntil is awaitFence for a write that must also wait until
// the monotonic time until (nanoseconds; the owners' fences).
func (s *Store) awaitFenceUntil(ctx context.Context, until int64) error {
	d := time.Duration(max(s.leases.fenceUntil.Load(), until) - s.leases.mono())
	if d <= 0 {
		return nil
	}
	return s.pause(ctx, d)
}

// grantLease answers a lease request from holder, addressed to this
// node's incarnation grantor.
func (s *Store) grantLease(r leaseRequest) leaseReply {
	s.peerClocks.observe(r.holder, r.sent, int64(s.clock.Monotonic()))
	v := s.view.Load()
	q := v.byName[r.holder.name]
	member := q != nil && q.incarnation == r.holder.incarnation
	sameOwners := r.owning == 0 || r.owning == v.owning
	l := s.leases
	l.mu.Lock()
	defer l.mu.Unlock()
	// degraded is read under l.mu: fence sets it there, after the table
	// fenced q, so no lease is granted between the two.
	var reply leaseReply
	switch {
	case member && l.inMinority():
		reply = leaseReply{outcome: leaseOtherView} // not while in a minority: see minority.go
	case member && s.withholdsLeaseFrom(v, q):
		reply = leaseReply{outcome: leaseOtherView} // not yet: see unshared.go
	default:
		reply = l.table.grant(r.holder, r.grantor, member, sameOwners, member && q.degraded.Load(), l.mono(), l.writeMark())
		l.publish() // the holder's view fence may have ended
	}
	reply.wall = s.clock.Now().UnixNano()
	reply.statusGen = s.statusGen()
	return reply
}

// renewLeases is the store's lease goroutine: every renewalPeriod, and at
// once after a view change or on a request after an idle spell, it asks
// every peer for a lease, waiting up to ReadLease/2 for the answers.
func (s *Store) renewLeases() {
	d := s.cfg.ReadLease
	s.repeat(s.leases.renewalPeriod, s.leases.renew, func() {
		var wg sync.WaitGroup
		for _, q := range s.view.Load().peers {
			wg.Go(func() { s.askLease(q, d/2) })
		}
		wg.Wait()
	})
}

// askLease asks q for a lease and records the answer.
func (s *Store) askLease(q *peer, timeout time.Duration) {
	l := s.leases
	req, err := encodeLeaseRequest(leaseRequest{holder: keyOf(s.self), grantor: q.incarnation,
		owning: s.view.Load().owning, sent: int64(s.clock.Monotonic())})
	if err != nil {
		return
	}
	s.stats.leaseRequests.Add(1)
	asked, sentWall := l.mono(), s.clock.Now().UnixNano()
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	resp, err := s.call(ctx, q, req)
	cancel()
	if s.ctx.Err() != nil {
		return
	}
	var a leaseAnswer
	if err == nil {
		a.reply, err = decodeLeaseReply(resp)
	}
	if err == nil {
		s.wallOffsets.observe(keyOf(q), sentWall, a.reply.wall, s.clock.Now().UnixNano(), time.Duration(l.mono()-asked))
		s.checkClock()
	}
	switch {
	case errors.Is(err, transport.ErrRefused):
		a.refused = true
	case err != nil:
		a.failed = true
		s.log.Debug("lease request failed", "peer", q.name, "err", err)
	}
	switch {
	case err == nil:
		q.answered()
		q.leaseGen.Store(&heardGen{gen: a.reply.statusGen, at: s.clock.Monotonic()})
		q.unlisting.Store(a.reply.outcome == leaseUnknown)
		q.ahead.Store(a.reply.outcome == leaseBehind)
	case errors.Is(err, ErrUnreachable) || errors.Is(err, context.DeadlineExceeded):
		s.ownerLost(q, err)
	}
	q.silent.Store(err != nil)
	l.mu.Lock()
	resync := l.table.answered(keyOf(q), asked, a)
	l.publish()
	l.mu.Unlock()
	if resync {
		s.log.Info("a peer acknowledged writes without this node; merging with the other owners before answering reads locally", "peer", q.name)
		s.kickRound()
	}
}

// resync merges this node's complete partitions with every other owner
// that answered this round's poll, when a lease said it missed writes.
// Until it has, the node is not authoritative.
func (s *Store) resync(ctx context.Context, v *view) {
	l := s.leases
	l.mu.Lock()
	mark, due := l.table.resyncDue()
	l.mu.Unlock()
	if !due {
		return
	}
	// A poll of its own: statuses from before the lease that asked for
	// this may predate the writes it stands for.
	since := s.clock.Monotonic()
	s.poll(ctx, v, true)
	plan := planResync(v, s.partStates(), freshStatuses(v, since))
	if !plan.complete {
		s.log.Debug("resync: an owner did not answer; retrying next round")
		return
	}
	for _, x := range plan.exchanges {
		if _, err := s.exchange(ctx, x.peer, x.partition, true); err != nil {
			s.log.Debug("resync failed; retrying next round", "peer", x.peer.name, "partition", x.partition, "err", err)
			return
		}
	}
	l.mu.Lock()
	l.table.resynced(mark)
	l.publish()
	l.mu.Unlock()
	s.log.Info("merged with the other owners; answering reads locally again")
}
