package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
	"github.com/sessionmesh/sessionmesh/transport"
)

// Store is a replicated session store: this node's share of the cluster's
// sessions, kept in step with the other owners. It is safe for concurrent
// use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	tr    transport.Transport
	clock Clock // wall and monotonic time
	// peerClocks estimates the peers' monotonic clocks (see updateLate),
	// wallOffsets their wall clocks (see checkClock).
	peerClocks  *peerClocks
	wallOffsets *wallOffsets
	// clockProblem is why this node refuses writes, when its wall clock
	// is too far ahead of the cluster's; nil when it is not.
	clockProblem atomic.Pointer[error]
	hlc          *hlc.Clock // versions, read on clock's wall reading
	self         *peer
	node         uint64 // this incarnation's ID, the tie-break of its versions
	parts        []*partition

	view    atomic.Pointer[view] // written only by watchMembership
	events  chan struct{}        // membership hints
	kick    chan struct{}        // asks the maintenance loop for a round now
	catchUp catchUp              // the maintenance loop's pace (roundPeriod)

	eventsOut chan SessionEvent // session events waiting for OnSessionEvent

	leavingMu sync.Mutex
	leaving   map[string]uint64 // guards: peers that announced they are leaving, by name -> incarnation
	minority  *minorityWatch    // guarded by leavingMu
	// clockSpread is the largest wall-clock offset, in nanoseconds, this
	// node has measured to a peer (noteClockSpread): how much older than
	// they are a peer's versions may look here.
	clockSpread atomic.Int64
	// askingVanished is closed once the members last asked whether they
	// are gone have answered (minority.go).
	askingVanished atomic.Pointer[chan struct{}]
	selfLeave      atomic.Bool // Leave was called

	joined     atomic.Bool // the node has joined the cluster and built its view from then
	joinedOnce sync.Once

	readyCh   chan struct{} // closed once every owned partition was ready
	greeted   chan struct{} // closed once the peers list this node, or helloTimeout passed (greetPeers)
	readyOnce sync.Once
	done      chan struct{} // closed by Close
	isClosed  atomic.Bool   // set by Close; cheaper than a select on done for every call
	readClock *readClock    // see readNow; nil when the clock is injected

	readyChanges atomic.Uint64      // changes of partitions' ready flags, for statusGen
	waitingReads atomic.Int32       // reads waiting in catchUpRead
	ctx          context.Context    // cancelled by Close, for the store's own calls
	cancel       context.CancelFunc // cancels ctx
	wg           sync.WaitGroup     // the store's goroutines
	goMu         sync.Mutex         // guards: stopped, and wg.Add against Close's wg.Wait
	stopped      bool
	closeOnce    sync.Once

	leases *leases // read leases, both ways; see lease.go

	snapWrite sync.Mutex    // serializes snapshot writes
	snapMu    sync.Mutex    // guards: snap
	snap      snapshotState // see snapshot.go

	budget *budget // Config.MaxSessions and MaxBytes against what the partitions hold

	replicated atomic.Int32  // partitions with fewer ready copies than the mode wants, as of the last round; -1 before
	unshared   atomic.Int32  // partitions marked unshared (unshared.go)
	losses     atomic.Uint64 // calls to owners that failed as a gone peer's do (see ownerLost)
	lostAt     atomic.Int64  // monotonic time of the last such loss, in nanoseconds
	stats      storeCounters
}

// storeCounters are the store's running totals; see Stats.
type storeCounters struct {
	writes, writeErrors, degradedWrites, skippedSends, rewrites atomic.Uint64
	remoteReads, repairs, repairedRecords                       atomic.Uint64
	transferred, handedOff                                      atomic.Uint64
	rejected, expired                                           atomic.Uint64
	behindReads, staleReads                                     atomic.Uint64
	droppedEvents                                               atomic.Uint64
	updateConflicts, undoneUpdates                              atomic.Uint64
	leaseRequests                                               atomic.Uint64 // asked of peers (askLease)
	snapshots, snapshotFailures                                 atomic.Uint64
	writeLatency                                                latencyHistogram
}

// New starts a store on cfg.Membership and cfg.Transport. It returns at
// once; the store copies the sessions it owns from its peers in the
// background and closes Ready when it holds them all. Until then reads of
// sessions it has not copied yet are answered by a peer. With
// cfg.SnapshotDir set, New first loads the snapshot there, if any, before
// the store serves (under a second for 100,000 sessions of 1 KiB); a
// snapshot it cannot use is logged and set aside, never an error.
func New(cfg Config) (*Store, error) {
	_, systemTime := cfg.Clock.(systemClock)
	systemTime = systemTime || cfg.Clock == nil
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	local := cfg.Membership.LocalMember()
	held := &usage{}
	h := newHash64()
	h.writeString(local.Name)
	h.writeUint64(local.Incarnation)
	s := &Store{
		cfg:         cfg,
		log:         cfg.Logger.With("node", local.Name),
		tr:          cfg.Transport,
		clock:       cfg.Clock,
		hlc:         hlc.NewClock(cfg.Clock.Now, cfg.MaxClockOffset),
		self:        &peer{name: local.Name, incarnation: local.Incarnation, addr: cfg.Transport.Addr(), zone: local.Zone, self: true},
		node:        h.sum(),
		parts:       newPartitions(held),
		budget:      &budget{maxSessions: max(int64(cfg.MaxSessions), 0), maxBytes: max(cfg.MaxBytes, 0), held: held},
		events:      make(chan struct{}, 1),
		kick:        make(chan struct{}, 1),
		eventsOut:   make(chan SessionEvent, eventQueue),
		leaving:     map[string]uint64{},
		minority:    newMinorityWatch(cfg.MinorityHold),
		readyCh:     make(chan struct{}),
		greeted:     make(chan struct{}),
		done:        make(chan struct{}),
		leases:      newLeases(local.Incarnation, cfg.ReadLease, cfg.Clock, cfg.WriteConcern == Async),
		peerClocks:  newPeerClocks(),
		wallOffsets: newWallOffsets(),
	}
	s.replicated.Store(-1)
	if cfg.SnapshotDir != "" {
		for i, secret := range append([][]byte{cfg.SnapshotKey}, cfg.SnapshotOldKeys...) {
			k, err := newSnapshotKey(secret, cfg.SnapshotLabel)
			if err != nil {
				return nil, fmt.Errorf("replication: %w", err)
			}
			if i == 0 {
				s.snap.key = k
			}
			s.snap.readKeys = append(s.snap.readKeys, k)
		}
		s.loadSnapshot()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.rebuildView()
	s.tr.Serve(s.handle)
	if lr, ok := s.tr.(lossReporter); ok {
		lr.OnConnLost(s.connLost)
	}
	cfg.Membership.Notify(s.events)
	if systemTime {
		s.readClock = newReadClock(s.now)
		s.goroutine(func() { s.readClock.run(s.done) })
	}
	s.goroutine(s.watchMembership)
	s.goroutine(s.maintain)
	s.goroutine(s.renewLeases)
	s.goroutine(s.sweep)
	if cfg.OnSessionEvent != nil {
		s.goroutine(s.deliverEvents)
	}
	if cfg.SnapshotDir != "" {
		s.goroutine(s.snapshotLoop)
	}
	return s, nil
}

// Mode returns the store's replication mode.
func (s *Store) Mode() Mode { return s.cfg.Mode }

// WriteConcern returns the store's write concern.
func (s *Store) WriteConcern() WriteConcern { return s.cfg.WriteConcern }

// Ready returns a channel closed once the store has held a complete copy
// of every session it owns, i.e. once it can serve on its own. It stays
// closed when later membership changes give the node new partitions to
// copy: reads of those go to a peer meanwhile.
func (s *Store) Ready() <-chan struct{} { return s.readyCh }

// IsReady reports whether Ready is closed.
func (s *Store) IsReady() bool {
	select {
	case <-s.readyCh:
		return true
	default:
		return false
	}
}

// FullyReplicated reports whether, as of the last maintenance round, every
// partition had its full number of ready copies (Backups(n): n+1, or every
// live member if there are fewer; AllToAll: every live member). It turns
// false the moment an owner looks gone to this node (its connection broke
// or was refused, or a call to it missed its deadline), before the
// membership notices, and as soon as the membership changes (a node
// failed, left or joined); it turns true again once the nodes have
// re-replicated: from then on the next failure loses nothing. It is the
// signal that the next node may be stopped in a rolling restart
// (docs/operations.md).
func (s *Store) FullyReplicated() bool { return s.replicated.Load() == 0 }

// now returns the wall-clock time in Unix milliseconds.
func (s *Store) now() int64 { return s.clock.Now().UnixMilli() }

// readNow returns the time reads judge expiry by, in Unix milliseconds:
// with the default clock, the read clock's reading (readclock.go); with an
// injected clock, that clock.
func (s *Store) readNow() int64 {
	if s.readClock != nil {
		return s.readClock.read()
	}
	return s.now()
}

func (s *Store) closed() bool { return s.isClosed.Load() }

// validID reports whether id can name a session.
func validID(id string) bool { return id != "" && len(id) <= maxIDLen }

// Leave prepares a graceful departure: it tells every peer that this node
// is leaving, so that they stop giving it partitions and writes, then hands
// every session it holds over to the new owners. It returns when nothing is
// left to hand over, or with ctx's error. Call it before the cluster's
// Leave; a rolling restart that leaves this way loses nothing, even with
// Backups(0).
//
// When no peer is left to hand over to (every other member is leaving too,
// as in a stop of the whole fleet, or there is none), Leave does not wait:
// with SnapshotDir set it writes a snapshot and returns, so that the next
// start loads it; without, it logs (WARN, with their number) that the
// sessions this node holds are lost, and returns.
func (s *Store) Leave(ctx context.Context) error {
	if s.closed() {
		return ErrClosed
	}
	s.selfLeave.Store(true)
	s.rebuildView()
	v := s.view.Load()
	msg, err := encodeLeaving(s.self.name, s.self.incarnation)
	if err != nil {
		return err
	}
	for _, q := range v.peers {
		if err := s.callAck(ctx, q, msg); err != nil && ctx.Err() == nil {
			s.log.Debug("leave announcement failed", "peer", q.name, "err", err)
		}
	}
	// Writes and hand-offs that peers started with their old view may
	// still arrive for up to WriteTimeout: keep handing over until nothing
	// has arrived for that long.
	emptySince := time.Duration(-1) // none yet
	for {
		v, since := s.view.Load(), s.clock.Monotonic()
		if v.ownerless() {
			return s.leaveAlone(v)
		}
		s.poll(ctx, v, false)
		if s.handOff(ctx, planHandOffs(v, s.partStates(), freshStatuses(v, since))) > 0 {
			emptySince = -1
		} else if emptySince < 0 {
			emptySince = s.clock.Monotonic()
		} else if s.clock.Monotonic()-emptySince >= s.cfg.WriteTimeout {
			s.log.Info("handed over every session")
			return nil
		}
		if err := s.pause(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
}

// pause waits d, and returns ctx's error if it ends first, or ErrClosed
// if the store closes.
func (s *Store) pause(ctx context.Context, d time.Duration) error {
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

// leaveAlone ends a Leave that has nobody to hand sessions over to: every
// peer in v is leaving too, or there is none.
func (s *Store) leaveAlone(v *view) error {
	n := s.liveSessions()
	if s.cfg.SnapshotDir != "" {
		if err := s.writeSnapshot(); err != nil {
			s.log.Error("no peer left to hand sessions over to, and the snapshot failed: they are lost",
				"sessions", n, "leaving_peers", len(v.peers), "err", err)
			return fmt.Errorf("leave: %w", err)
		}
		s.log.Info("no peer left to hand sessions over to: kept them in the snapshot",
			"sessions", n, "leaving_peers", len(v.peers), "path", s.snapshotPath())
		return nil
	}
	if n > 0 {
		s.log.Warn("no peer left to hand sessions over to and no SnapshotDir: its sessions are lost",
			"sessions", n, "leaving_peers", len(v.peers))
	}
	return nil
}

// Close stops the store: it stops its goroutines, closes the transport and
// waits for both. Calls after Close return ErrClosed. It is safe to call more
// than once. Close does not leave the cluster: peers treat the node as
// failed. Call Leave first (and the cluster's Leave) for a graceful exit.
// After Leave, with SnapshotDir set, Close writes a last snapshot of what
// the node holds once its transport is closed (unless nothing changed
// since Leave wrote one).
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.cfg.Membership.StopNotify(s.events)
		s.isClosed.Store(true)
		close(s.done)
		s.cancel()
		s.goMu.Lock()
		s.stopped = true
		s.goMu.Unlock()
		err = s.tr.Close()
		s.wg.Wait()
		if s.cfg.SnapshotDir != "" && s.selfLeave.Load() && !s.snapshotNow() {
			err = errors.Join(err, errors.New("replication: last snapshot failed; see the log"))
		}
	})
	return err
}

// Stats is a snapshot of a store's counters.
//
// Authoritative says whether a read would be answered from this node's
// own copy at this moment. An idle node (Idle: no read for 2 ReadLeases)
// lets its leases lapse between renewals, every 16 ReadLeases, so it is
// mostly false there: its next read is answered by the owners while it
// asks every peer for a lease again. Reading Stats of an idle node asks
// for nothing, so health checks, status pages and scrapes of an idle
// fleet cost it no messages (a sweep of a 64-node fleet's health checks
// would otherwise be about 4,000 lease exchanges); a node in use whose
// authority lapsed asks for a renewal at once.
type Stats struct {
	Addr             string           // this node's transport address
	Sessions         int              // sessions held, tombstones included
	Bytes            int64            // estimated memory of the sessions held (see Config.MaxBytes)
	MaxSessions      int              // Config.MaxSessions; 0: no bound
	MaxBytes         int64            // Config.MaxBytes; 0: no bound
	Overloaded       uint64           // new sessions refused with ErrOverloaded
	Peers            int              // other members with a replication address
	DegradedPeers    int              // peers not waited for until repaired
	OwnedPartitions  int              // partitions this node owns
	ReadyPartitions  int              // owned partitions it holds a complete copy of
	HeldPartitions   int              // partitions it holds records of without owning them (being handed over)
	UnderReplicated  int              // partitions below their copy count at the last round; -1 before the first round of the current membership
	OwnerLosses      uint64           // owners found gone (a broken or refused connection, a missed deadline), each turning FullyReplicated false
	Zones            int              // zones the owning members span (Member.Zone; members without one count as one zone)
	SingleZone       int              // partitions with several owners all in one zone while Zones > 1: a zone's loss would lose them
	Ready            bool             // Ready is closed
	Authoritative    bool             // answers reads of its complete partitions from its own copy now: a lease from every peer, merged since it last missed writes, not in a minority (see Stats)
	Minority         bool             // its view holds fewer members than vanished from it without leaving in the last Config.MinorityHold: it answers no read from its copies (minority.go)
	Idle             bool             // no read has used the leases for 2 ReadLeases: they lapse between renewals
	Writes           uint64           // writes applied and replicated
	WriteErrors      uint64           // writes a peer refused
	DegradedWrites   uint64           // writes that stopped waiting for a peer at WriteTimeout
	RewrittenWrites  uint64           // writes sent again above a newer version of one of their attributes that an owner held (an older write from a node whose clock is ahead)
	SkippedSends     uint64           // sends to degraded peers dropped to bound memory
	RemoteReads      uint64           // reads answered by a peer
	Transferred      uint64           // records copied in by state transfer
	HandedOff        uint64           // records handed to their new owners and dropped here
	Repairs          uint64           // anti-entropy exchanges that found differences
	RepairedRecords  uint64           // records exchanged by anti-entropy
	Rejected         uint64           // messages or records refused (malformed, clock too far ahead)
	Expired          uint64           // sessions and tombstones removed by the sweeper
	DroppedEvents    uint64           // session events dropped because OnSessionEvent fell behind
	UpdateConflicts  uint64           // Update attempts that lost to another update and ran again
	UndoneUpdates    uint64           // updates this node coordinated and took back because no other owner took them
	Snapshots        uint64           // snapshots written (Config.SnapshotDir)
	SnapshotFailures uint64           // snapshot writes that failed
	SnapshotBytes    int64            // size of the last snapshot written, 0 before the first
	SnapshotTook     time.Duration    // time the last snapshot took to write
	BehindReads      uint64           // GetAtLeast calls that found the session older than asked and waited
	StaleReads       uint64           // of those, the ones that gave up at MaxReadWait
	WriteLatency     LatencyHistogram // time writes took, replication included
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	now := s.leases.mono()
	s.leases.refresh(now)
	st := Stats{
		Addr:             s.self.addr,
		Bytes:            s.budget.held.bytes.Load(),
		MaxSessions:      int(s.budget.maxSessions),
		MaxBytes:         s.budget.maxBytes,
		Overloaded:       s.budget.refused.Load(),
		UnderReplicated:  int(s.replicated.Load()),
		OwnerLosses:      s.losses.Load(),
		Ready:            s.IsReady(),
		Authoritative:    s.leases.authoritativeAt(now),
		Minority:         s.leases.inMinority(),
		Idle:             s.leases.idle(),
		Writes:           s.stats.writes.Load(),
		WriteErrors:      s.stats.writeErrors.Load(),
		DegradedWrites:   s.stats.degradedWrites.Load(),
		RewrittenWrites:  s.stats.rewrites.Load(),
		SkippedSends:     s.stats.skippedSends.Load(),
		RemoteReads:      s.stats.remoteReads.Load(),
		Transferred:      s.stats.transferred.Load(),
		HandedOff:        s.stats.handedOff.Load(),
		Repairs:          s.stats.repairs.Load(),
		RepairedRecords:  s.stats.repairedRecords.Load(),
		Rejected:         s.stats.rejected.Load(),
		Expired:          s.stats.expired.Load(),
		DroppedEvents:    s.stats.droppedEvents.Load(),
		UpdateConflicts:  s.stats.updateConflicts.Load(),
		UndoneUpdates:    s.stats.undoneUpdates.Load(),
		Snapshots:        s.stats.snapshots.Load(),
		SnapshotFailures: s.stats.snapshotFailures.Load(),
		BehindReads:      s.stats.behindReads.Load(),
		StaleReads:       s.stats.staleReads.Load(),
		WriteLatency:     s.stats.writeLatency.snapshot(),
	}
	last, _ := s.Snapshots()
	st.SnapshotBytes, st.SnapshotTook = last.Bytes, last.Took
	v := s.view.Load()
	st.Zones, st.SingleZone = v.zones, v.singleZone
	for i, p := range s.parts {
		n, _ := p.stats()
		st.Sessions += n
		switch {
		case v.owns(i):
			st.OwnedPartitions++
			if p.ready.Load() {
				st.ReadyPartitions++
			}
		case n > 0:
			st.HeldPartitions++
		}
	}
	for _, q := range v.peers {
		st.Peers++
		if q.degraded.Load() {
			st.DegradedPeers++
		}
	}
	return st
}

// digest returns a 64-bit summary of every session this node holds
// (tombstones included): replicas that hold the same sessions have the
// same digest.
func (s *Store) digest() uint64 {
	var d uint64
	for _, p := range s.parts {
		_, pd := p.stats()
		d ^= pd
	}
	return d
}

// goroutine runs f in a goroutine that Close waits for, unless the store
// is closed; it reports whether f was started.
func (s *Store) goroutine(f func()) bool {
	s.goMu.Lock()
	defer s.goMu.Unlock()
	if s.stopped {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// watchMembership keeps the view in step with the cluster. It is the only
// writer of s.view besides New and Leave.
func (s *Store) watchMembership() {
	for {
		select {
		case <-s.done:
			return
		case <-s.events:
		}
		s.rebuildView()
	}
}

// rebuildView publishes a new view and logs what changed. It runs in New,
// Leave and watchMembership; leavingMu keeps those from interleaving.
func (s *Store) rebuildView() {
	s.leavingMu.Lock()
	defer s.leavingMu.Unlock()
	prev := s.view.Load()
	next := buildView(s.cfg.Mode, s.self, s.cfg.Membership.Members(), prev, s.leaving, s.selfLeave.Load())
	s.watchMinority(prev, next)
	for name, inc := range s.leaving {
		if q := next.byName[name]; q == nil || q.incarnation != inc {
			delete(s.leaving, name) // gone, or back as a new life
		}
	}
	// Not counted for the new membership yet: -1 before the view, so that
	// whoever sees the new view sees it too, and after it, over a count
	// that a round of the old view stored meanwhile (see
	// countUnderReplicated).
	s.replicated.Store(-1)
	s.view.Store(next)
	s.replicated.Store(-1)
	s.leasesViewChanged(prev, next)
	// After the store: see setReady.
	for i, p := range s.parts {
		if !next.owns(i) {
			p.ready.Store(false) // its records stay until handed over
		}
	}
	s.readyChanges.Add(1) // after the flags: see setReady
	if prev == nil {
		return
	}
	for _, q := range prev.peers {
		if next.byName[q.name] != q {
			close(q.gone)
			s.log.Info("peer gone", "peer", q.name, "addr", q.addr, "incarnation", q.incarnation)
		}
	}
	for _, q := range next.peers {
		if prev.byName[q.name] != q {
			s.log.Info("peer joined", "peer", q.name, "addr", q.addr, "incarnation", q.incarnation)
		}
	}
	s.kickRound()
}

// kickRound asks the maintenance loop for a round now.
func (s *Store) kickRound() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// setReady marks partition pi complete, unless this node no longer owns
// it. rebuildView publishes a view before it clears the flags of partitions
// the view does not own, and setReady sets the flag before it reads the
// view, so a partition is never left marked ready on a node that does not
// own it.
//
// The status generation grows after the flag has changed, never before: a
// status poll reads the generation before the flags, so a poll between the
// two would pair the new generation with the old flag, and the pollers,
// told by lease answers that the generation is unchanged, would keep that
// status as current (found by a 6-node test whose cluster never converged:
// a node counted a partition under-replicated for 30 s).
func (s *Store) setReady(pi int) {
	s.parts[pi].ready.Store(true)
	if !s.view.Load().owns(pi) {
		s.parts[pi].ready.Store(false)
	}
	s.readyChanges.Add(1)
}

// statusGen is this node's status generation: it grows whenever what a
// status poll would report changes (a record, a partition's readiness),
// and is never 0. Lease answers carry it, so that a maintenance round
// polls only the peers whose status changed (maintain.go). It is read
// before the status it stands for, so a change during the read shows as
// a newer generation.
func (s *Store) statusGen() uint64 {
	return 1 + s.budget.held.changes.Load() + s.readyChanges.Load()
}

// peerLeaving records that a peer announced its departure and rebuilds the
// view without it as an owner.
// It rebuilds before it returns, so that once the leaving node has its
// acknowledgement, this node sends it no more partitions.
func (s *Store) peerLeaving(name string, incarnation uint64) {
	s.leavingMu.Lock()
	s.leaving[name] = incarnation
	s.leavingMu.Unlock()
	s.rebuildView()
}

// repeat runs fn at once, then period() after it returns, and at once on
// a signal on kick, until Close.
func (s *Store) repeat(period func() time.Duration, kick <-chan struct{}, fn func()) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-kick:
		case <-t.C:
		}
		fn()
		t.Reset(period()) // since Go 1.23 no stale tick survives a Reset
	}
}

// sleep waits for d or Close; it reports false on Close.
func (s *Store) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-s.done:
		return false
	case <-t.C:
		return true
	}
}

// sweep removes expired sessions and tombstones once a second.
func (s *Store) sweep() {
	for s.sleep(expiryBucketMs * time.Millisecond) {
		now := s.now()
		for pi, p := range s.parts {
			var expired func(*record)
			if s.cfg.OnSessionEvent != nil && s.isPrimary(pi) {
				expired = func(r *record) { s.emit(SessionExpired, r) }
			}
			if n := p.sweep(now, expired); n > 0 {
				s.stats.expired.Add(uint64(n))
			}
		}
	}
}
