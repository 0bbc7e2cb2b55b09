package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

// touchFraction sets how far a read must move the idle deadline before the
// extension is replicated: one eighth of the idle timeout. Other nodes may
// therefore see an idle deadline up to IdleTimeout/8 older than the last
// read implies; they never see one later.
const touchFraction = 8

// maxBackgroundSends bounds the writes in flight to one degraded peer. When
// it is reached, further writes skip that peer and anti-entropy repairs it.
const maxBackgroundSends = 64

// Store is a replicated session store: a node's copy of every session, kept
// in step with its peers. It is safe for concurrent use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	tr    Transport
	clock *hlc.Clock
	self  cluster.Member
	node  uint64 // this incarnation's ID, the tie-break of its versions
	parts []*partition

	peers  atomic.Pointer[peerSet] // written only by watchMembership
	events chan cluster.Event

	readyCh chan struct{}   // closed once every partition is ready
	done    chan struct{}   // closed by Close
	ctx     context.Context // cancelled by Close, for the store's own calls
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once

	stats storeCounters
}

// storeCounters are the store's running totals; see Stats.
type storeCounters struct {
	writes, writeErrors, degradedWrites, skippedSends atomic.Uint64
	remoteReads, repairs, repairedRecords             atomic.Uint64
	rejected, expired                                 atomic.Uint64
}

// New starts a store on cfg.Membership and cfg.Transport. It returns at
// once; the store catches up with its peers in the background and closes
// Ready when it holds every session. Until then reads of sessions it does
// not hold yet are answered by a peer.
func New(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	self := cfg.Membership.LocalMember()
	h := newHash64()
	h.writeString(self.Name)
	h.writeUint64(self.Incarnation)
	s := &Store{
		cfg:     cfg,
		log:     cfg.Logger.With("node", self.Name),
		tr:      cfg.Transport,
		clock:   hlc.NewClock(cfg.Now, cfg.MaxClockOffset),
		self:    self,
		node:    h.sum(),
		parts:   newPartitions(),
		events:  make(chan cluster.Event, 64),
		readyCh: make(chan struct{}),
		done:    make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.peers.Store(buildPeerSet(self, cfg.Membership.Members(), &peerSet{}))
	s.tr.Serve(s.handle)
	cfg.Membership.Notify(s.events)
	s.wg.Add(4)
	go s.watchMembership()
	go s.catchUp()
	go s.antiEntropy()
	go s.sweep()
	return s, nil
}

// Ready returns a channel closed once the store holds a complete copy of
// every session it should hold, i.e. once it may serve reads alone.
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

func (s *Store) now() int64 { return s.cfg.Now().UnixMilli() }

func (s *Store) closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Get returns the session id if it exists and has not expired or been
// destroyed. A missing session is (Session{}, false, nil). Reads are local
// once the store is ready; before that, a session this node may not hold
// completely is read from a ready peer.
func (s *Store) Get(ctx context.Context, id string) (Session, bool, error) {
	if s.closed() {
		return Session{}, false, ErrClosed
	}
	if !validID(id) {
		return Session{}, false, nil
	}
	p := s.parts[partitionOf(id)]
	r := p.get(id)
	if !p.ready.Load() {
		var err error
		if r, err = s.fetchFromPeer(ctx, p, id); err != nil {
			return Session{}, false, err
		}
	}
	if r == nil || !r.live(s.now()) {
		return Session{}, false, nil
	}
	return Session{r: r}, true, nil
}

// validID reports whether id can name a session.
func validID(id string) bool { return id != "" && len(id) <= maxIDLen }

// fetchFromPeer reads id from a ready peer, merges what it gets into the
// local copy and returns the result. When no ready peer answers, it returns
// the local copy.
func (s *Store) fetchFromPeer(ctx context.Context, p *partition, id string) (*record, error) {
	req, err := encodeGet(id)
	if err != nil {
		return nil, err
	}
	for _, q := range s.readPeers() {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		resp, err := s.tr.Call(cctx, q.addr, req)
		cancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			s.log.Debug("read from peer failed", "peer", q.name, "err", err)
			continue
		}
		ready, r, err := decodeGetReply(resp)
		if err != nil {
			s.log.Warn("bad read reply", "peer", q.name, "err", err)
			continue
		}
		if !ready {
			continue
		}
		s.stats.remoteReads.Add(1)
		if r == nil || r.id != id {
			return p.get(id), nil
		}
		if err := s.clock.Update(r.maxVersion().time); err != nil {
			s.stats.rejected.Add(1)
			s.log.Warn("refused record from peer", "peer", q.name, "err", err)
			continue
		}
		out, _ := p.apply(r, s.now())
		return out, nil
	}
	return p.get(id), nil
}

// readPeers returns the peers to read from, those that said they were
// ready first, healthy before degraded.
func (s *Store) readPeers() []*peer {
	list := append([]*peer(nil), s.peers.Load().list...)
	sort.SliceStable(list, func(i, j int) bool {
		a, b := list[i], list[j]
		if a.ready.Load() != b.ready.Load() {
			return a.ready.Load()
		}
		return !a.degraded.Load() && b.degraded.Load()
	})
	return list
}

// Save applies changes to session id, creating it if it does not exist,
// and replicates them. With the default (synchronous) write concern it
// returns once every live peer has acknowledged the write, or has failed
// (a crashed peer is skipped at once), or has not answered within
// WriteTimeout (the peer is then marked degraded and repaired by
// anti-entropy); the write has been applied locally in every case. It
// returns ErrSessionEnded when the session has been destroyed or has
// expired. Save with no changes extends the idle deadline like Touch.
func (s *Store) Save(ctx context.Context, id string, c Changes) error {
	if s.closed() {
		return ErrClosed
	}
	if !validID(id) {
		return fmt.Errorf("save session: %w", ErrInvalidID)
	}
	p := s.parts[partitionOf(id)]
	cur, err := s.current(ctx, p, id)
	if err != nil {
		return err
	}
	now := s.now()
	var delta *record
	switch {
	case cur == nil:
		delta = &record{id: id, created: now, idleMs: c.IdleTimeout.Milliseconds()}
		if c.Lifetime > 0 {
			delta.expires = now + c.Lifetime.Milliseconds()
		}
	case !cur.live(now):
		return ErrSessionEnded
	default:
		delta = &record{id: id, created: cur.created, expires: cur.expires, idleMs: cur.idleMs}
	}
	if delta.idleMs > 0 {
		delta.idleUntil = now + delta.idleMs
	}
	delta.attrs = s.changedAttrs(c)
	return s.write(ctx, p, delta)
}

// current returns the local record of id, completed from a peer first when
// the partition is not ready.
func (s *Store) current(ctx context.Context, p *partition, id string) (*record, error) {
	if p.ready.Load() {
		return p.get(id), nil
	}
	return s.fetchFromPeer(ctx, p, id)
}

// changedAttrs turns c into attributes sorted by name, all with one new
// version.
func (s *Store) changedAttrs(c Changes) []attr {
	if c.empty() {
		return nil
	}
	v := version{time: s.clock.Now(), node: s.node}
	as := make([]attr, 0, len(c.Set)+len(c.Delete))
	for name, value := range c.Set {
		as = append(as, attr{name: name, value: value, version: v})
	}
	for _, name := range c.Delete {
		if _, set := c.Set[name]; !set {
			as = append(as, attr{name: name, version: v, deleted: true})
		}
	}
	sort.Slice(as, func(i, j int) bool { return as[i].name < as[j].name })
	return as
}

// write applies records locally, in order, and replicates them in one
// message, so that a peer applies them together.
func (s *Store) write(ctx context.Context, p *partition, r *record, more ...*record) error {
	now := s.now()
	p.apply(r, now)
	for _, m := range more {
		s.parts[partitionOf(m.id)].apply(m, now)
	}
	s.stats.writes.Add(1)
	return s.replicate(ctx, append([]*record{r}, more...))
}

// Touch extends the idle deadline of session id because it was just used.
// The extension is kept locally and replicated only once it has moved by
// an eighth of the idle timeout, so reads do not turn into replicated
// writes. It returns ErrSessionEnded when the session is gone.
func (s *Store) Touch(ctx context.Context, id string) error {
	if s.closed() {
		return ErrClosed
	}
	if !validID(id) {
		return fmt.Errorf("touch session: %w", ErrInvalidID)
	}
	p := s.parts[partitionOf(id)]
	cur, err := s.current(ctx, p, id)
	if err != nil {
		return err
	}
	now := s.now()
	if cur == nil || !cur.live(now) {
		return ErrSessionEnded
	}
	if cur.idleMs <= 0 {
		return nil
	}
	until := now + cur.idleMs
	for {
		t := cur.touched.Load()
		if t >= until || cur.touched.CompareAndSwap(t, until) {
			break
		}
	}
	if until-cur.idleUntil < cur.idleMs/touchFraction {
		return nil
	}
	delta := &record{id: id, created: cur.created, expires: cur.expires, idleMs: cur.idleMs, idleUntil: until}
	return s.write(ctx, p, delta)
}

// Destroy ends session id everywhere. Its tombstone stays until the
// session's absolute deadline, so no late or re-sent write can bring it
// back. Destroying a session that does not exist is not an error.
func (s *Store) Destroy(ctx context.Context, id string) error {
	if s.closed() {
		return ErrClosed
	}
	if !validID(id) {
		return nil
	}
	p := s.parts[partitionOf(id)]
	cur, err := s.current(ctx, p, id)
	if err != nil {
		return err
	}
	return s.write(ctx, p, s.tombstone(id, cur))
}

// tombstone returns the record that destroys id, whose current record is
// cur (nil when unknown).
func (s *Store) tombstone(id string, cur *record) *record {
	t := &record{id: id, destroyed: true, expires: s.now() + s.cfg.TombstoneTTL.Milliseconds()}
	if cur != nil && cur.expires != 0 {
		t.created, t.expires, t.idleMs = cur.created, cur.expires, cur.idleMs
	}
	return t
}

// Rename moves session oldID to newID, applies changes to it, and destroys
// oldID, as one write: every peer applies the new session and the old
// tombstone together, so the old ID stops working everywhere when the new
// one starts to. Call it when a user logs in (session fixation). The session
// keeps its creation time and absolute deadline. Writes to oldID that race
// with Rename are lost. It returns ErrSessionEnded when oldID is gone.
func (s *Store) Rename(ctx context.Context, oldID, newID string, c Changes) error {
	if s.closed() {
		return ErrClosed
	}
	if !validID(oldID) || !validID(newID) || oldID == newID {
		return fmt.Errorf("rename session: %w", ErrInvalidID)
	}
	op := s.parts[partitionOf(oldID)]
	cur, err := s.current(ctx, op, oldID)
	if err != nil {
		return err
	}
	now := s.now()
	if cur == nil || !cur.live(now) {
		return ErrSessionEnded
	}
	moved := &record{id: newID, created: cur.created, expires: cur.expires, idleMs: cur.idleMs}
	if moved.idleMs > 0 {
		moved.idleUntil = now + moved.idleMs
	}
	for _, a := range cur.attrs {
		if !a.deleted {
			moved.attrs = append(moved.attrs, a)
		}
	}
	moved = merge(moved, &record{id: newID, attrs: s.changedAttrs(c)})
	return s.write(ctx, s.parts[partitionOf(newID)], moved, s.tombstone(oldID, cur))
}

// Leave prepares the store for a graceful departure. With all-to-all
// replication every peer already holds every session, so there is nothing
// to hand over; it returns once writes in flight have finished or ctx ends.
func (s *Store) Leave(ctx context.Context) error {
	if s.closed() {
		return ErrClosed
	}
	for {
		busy := false
		for _, q := range s.peers.Load().list {
			if q.background.Load() > 0 {
				busy = true
			}
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Close stops the store: it stops its goroutines, closes the transport and
// waits for both. Calls after Close return ErrClosed. It is safe to call more
// than once. Close does not leave the cluster: peers treat the node as
// failed. Call Leave first (and the cluster's Leave) for a graceful exit.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		s.cfg.Membership.StopNotify(s.events)
		close(s.done)
		s.cancel()
		err = s.tr.Close()
		s.wg.Wait()
	})
	return err
}

// Stats is a snapshot of a store's counters.
type Stats struct {
	Sessions        int    // sessions held, tombstones included
	Peers           int    // peers replicated to
	DegradedPeers   int    // peers not waited for until repaired
	Ready           bool   // the store holds every session it should
	Writes          uint64 // writes applied locally and replicated
	WriteErrors     uint64 // writes whose replication failed on some peer
	DegradedWrites  uint64 // writes that stopped waiting for a peer at WriteTimeout
	SkippedSends    uint64 // sends to degraded peers dropped to bound memory
	RemoteReads     uint64 // reads answered by a peer because this node was not ready
	Repairs         uint64 // anti-entropy rounds that found differences
	RepairedRecords uint64 // records exchanged by anti-entropy
	Rejected        uint64 // messages or records refused (malformed, clock too far ahead)
	Expired         uint64 // sessions and tombstones removed by the sweeper
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Ready:           s.IsReady(),
		Writes:          s.stats.writes.Load(),
		WriteErrors:     s.stats.writeErrors.Load(),
		DegradedWrites:  s.stats.degradedWrites.Load(),
		SkippedSends:    s.stats.skippedSends.Load(),
		RemoteReads:     s.stats.remoteReads.Load(),
		Repairs:         s.stats.repairs.Load(),
		RepairedRecords: s.stats.repairedRecords.Load(),
		Rejected:        s.stats.rejected.Load(),
		Expired:         s.stats.expired.Load(),
	}
	for _, p := range s.parts {
		n, _ := p.stats()
		st.Sessions += n
	}
	for _, q := range s.peers.Load().list {
		st.Peers++
		if q.degraded.Load() {
			st.DegradedPeers++
		}
	}
	return st
}

// replicate sends records to every peer and waits as Save documents.
func (s *Store) replicate(ctx context.Context, rs []*record) error {
	peers := s.peers.Load().list
	if len(peers) == 0 {
		return nil
	}
	msg, err := encodeApply(rs...)
	if err != nil {
		return fmt.Errorf("encode write: %w", err)
	}
	type result struct {
		q   *peer
		err error
	}
	results := make(chan result, len(peers))
	waiting := 0
	for _, q := range peers {
		if q.degraded.Load() {
			s.sendInBackground(q, msg)
			continue
		}
		waiting++
		go func() {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
			defer cancel()
			results <- result{q, s.call(cctx, q, msg)}
		}()
	}
	for ; waiting > 0; waiting-- {
		r := <-results
		switch {
		case r.err == nil:
		case ctx.Err() != nil:
			// The caller gave up; the write is applied locally and sent.
		case errors.Is(r.err, context.DeadlineExceeded):
			if !r.q.degraded.Swap(true) {
				s.log.Warn("peer did not acknowledge a write in time; not waiting for it until repaired",
					"peer", r.q.name, "timeout", s.cfg.WriteTimeout)
			}
			s.stats.degradedWrites.Add(1)
		case errors.Is(r.err, ErrUnreachable):
			// A crashed or restarting peer: it catches up when it comes back.
			s.log.Debug("peer unreachable", "peer", r.q.name, "err", r.err)
		default:
			s.stats.writeErrors.Add(1)
			s.log.Warn("peer refused a write", "peer", r.q.name, "err", r.err)
		}
	}
	return ctx.Err()
}

// call sends an apply message to q and checks its acknowledgement.
func (s *Store) call(ctx context.Context, q *peer, msg []byte) error {
	resp, err := s.tr.Call(ctx, q.addr, msg)
	if err != nil {
		return err
	}
	return decodeAckReply(resp)
}

// sendInBackground sends msg to a degraded peer without waiting, within the
// bound of maxBackgroundSends.
func (s *Store) sendInBackground(q *peer, msg []byte) {
	if q.background.Add(1) > maxBackgroundSends {
		q.background.Add(-1)
		s.stats.skippedSends.Add(1)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer q.background.Add(-1)
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.WriteTimeout)
		defer cancel()
		if err := s.call(ctx, q, msg); err != nil {
			s.log.Debug("background send failed", "peer", q.name, "err", err)
		}
	}()
}

// watchMembership keeps the peer set in step with the cluster.
func (s *Store) watchMembership() {
	defer s.wg.Done()
	s.refreshPeers()
	for {
		select {
		case <-s.done:
			return
		case <-s.events:
			s.refreshPeers()
		}
	}
}

func (s *Store) refreshPeers() {
	prev := s.peers.Load()
	next := buildPeerSet(s.self, s.cfg.Membership.Members(), prev)
	s.peers.Store(next)
	for _, q := range prev.list {
		if next.byName[q.name] != q {
			s.log.Info("stopped replicating to peer", "peer", q.name, "addr", q.addr, "incarnation", q.incarnation)
		}
	}
	for _, q := range next.list {
		if prev.byName[q.name] != q {
			s.log.Info("replicating to peer", "peer", q.name, "addr", q.addr, "incarnation", q.incarnation)
		}
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
	defer s.wg.Done()
	for s.sleep(expiryBucketMs * time.Millisecond) {
		now := s.now()
		for _, p := range s.parts {
			if n := p.sweep(now); n > 0 {
				s.stats.expired.Add(uint64(n))
			}
		}
	}
}

// randomPeer returns a random peer that passes ok, or nil.
func (s *Store) randomPeer(ok func(*peer) bool) *peer {
	var candidates []*peer
	for _, q := range s.peers.Load().list {
		if ok(q) {
			candidates = append(candidates, q)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	return candidates[rand.IntN(len(candidates))]
}

// Digest returns a 64-bit summary of every session this node holds
// (tombstones included). Replicas that hold the same sessions have the same
// digest, so comparing digests across nodes tells whether they have
// converged.
func (s *Store) Digest() uint64 {
	var d uint64
	for _, p := range s.parts {
		_, pd := p.stats()
		d ^= pd
	}
	return d
}
