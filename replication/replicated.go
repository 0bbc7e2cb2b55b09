package replication

import (
	"errors"
	"time"
)

// lossReporter is implemented by transports that notice at once when an
// established connection to a peer breaks; *tcp.Transport does (a killed
// process's connections close with it). The store then stops reporting
// itself fully replicated before the membership has noticed the failure.
type lossReporter interface {
	OnConnLost(fn func(addr string))
}

// errConnLost is why a peer whose connection broke is taken for lost.
var errConnLost = errors.New("connection to the peer broke")

// connLost is the store's OnConnLost: the connection to the peer at addr
// broke.
func (s *Store) connLost(addr string) {
	v := s.view.Load()
	for _, q := range v.peers {
		if q.addr == addr {
			s.ownerLost(q, errConnLost)
		}
	}
}

// ownerLost records that a call to q failed in a way that says it may be
// gone: a refused or broken connection, or a missed deadline. When q is an
// owner in the current view and was not known lost already,
// FullyReplicated turns false at once and stays false until a maintenance
// round that started after this finds every partition's copies ready:
// while q is down, its polls fail and the rounds count its partitions as
// under-replicated; once the membership has dropped it, until
// re-replication has restored its copies elsewhere.
func (s *Store) ownerLost(q *peer, why error) {
	if s.closed() {
		return
	}
	v := s.view.Load()
	if v.byName[q.name] != q || !v.ownsAny(q) || q.lost.Swap(true) {
		return
	}
	s.losses.Add(1) // before the store: see round
	s.lostAt.Store(int64(s.clock.Monotonic()))
	if s.replicated.Swap(-1) == 0 {
		s.log.Info("an owner is unreachable: not fully replicated until its copies are restored", "peer", q.name, "err", why)
	}
	s.kickRound() // its poll dials it again: a refusal moves its partitions (peerRefused)
}

// lossSettle is how long after an owner's loss the maintenance round
// waits before it starts. A killed process's connections close one after
// another as its kernel tears it down, and every peer learns of the death
// from one of them: the peers that learnt first leave the cores to the
// dying process and to the others for these few milliseconds instead of
// starting their rounds. 64 servers sharing 2 cores took up to 130 ms to
// all notice a SIGKILL; one round then also sees every owner lost in a
// crash of several (a zone).
const lossSettle = 25 * time.Millisecond

// settleAfterLoss waits out lossSettle after the last loss; it reports
// false on Close.
func (s *Store) settleAfterLoss() bool {
	last := s.lostAt.Load()
	if last == 0 {
		return true
	}
	if wait := lossSettle - (s.clock.Monotonic() - time.Duration(last)); wait > 0 {
		return s.sleep(wait)
	}
	return true
}

// peerRefused records that q's address refused a connection. Nothing
// listens there, so q's process is gone: a frozen process still accepts
// connections, and a partition times out, it does not refuse. The view
// stops counting q as an owner at once, and its partitions are copied to
// their new owners without waiting for the failure detector, which takes
// seconds (memberlist's suspicion lasts SuspicionMult * log10(N) *
// ProbeInterval: 7 s for 64 nodes with LAN timers). q stays a peer, so
// that reads and hand-offs still try it, until the membership drops it or
// it accepts a connection again.
func (s *Store) peerRefused(q *peer) {
	if s.closed() || s.view.Load().byName[q.name] != q || q.refusing.Swap(true) {
		return
	}
	s.log.Warn("peer refuses connections: its process is gone; its partitions move to other owners", "peer", q.name, "addr", q.addr)
	s.rebuildView()
}

// peerAccepts undoes peerRefused once q answers a call.
func (s *Store) peerAccepts(q *peer) {
	if !q.refusing.Load() || !q.refusing.Swap(false) || s.closed() {
		return
	}
	s.log.Info("peer accepts connections again; it owns partitions again", "peer", q.name, "addr", q.addr)
	s.rebuildView()
}

// ownsAny reports whether q owns a partition in v.
func (v *view) ownsAny(q *peer) bool {
	for pi := range v.owners {
		for _, o := range v.owners[pi] {
			if o == q {
				return true
			}
		}
	}
	return false
}

// answered records that q answered a call: a later failure is a new
// loss.
func (q *peer) answered() { q.lost.Store(false) }
