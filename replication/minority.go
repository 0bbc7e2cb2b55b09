package replication

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/transport"
)

// A node cut off from the others declares them dead, one after another,
// and is then alone in its view: it owns every partition, needs nobody's
// lease, and would answer "no such session" for every session created on
// the other side. Leases cannot tell it otherwise, since it asks nobody
// for one. Nor can they once the partition heals and the nodes rejoin one
// by one: a node restarted meanwhile that reaches the lone node first
// agrees with it on a view of two, and both answer from copies that lack
// what the others wrote (found by the cluster simulator, seed 1947: an
// Update on such a node found "session ended" for a session logged in on
// the other side, a logout).
//
// So a node remembers, for MinorityHold, the members that vanished from
// its view without announcing their departure (a crash verdict, a false
// suspicion, a partition; not a graceful leave), and while its view holds
// fewer members than it remembers vanished ones, it is in a minority: it
// answers no read from its copies, refuses reads, writes and updates
// with ErrMinority (Health reports it, so a readiness probe takes the node
// out of the load balancer), and grants no lease, so the members that
// agree with it are not authoritative either; its answers to their reads
// say it is in a minority, and those reads fail too instead of taking a
// minority's copies for the whole. Writes are refused as well: taken, one
// stamped by a clock ahead could win over a later write acknowledged on
// the other side once the views meet again. A member that comes back (any
// incarnation) counts as present at once. Half is enough: the survivor of
// a two-node cluster keeps serving, as one of two partitioned nodes does
// (there is no majority to defer to).
//
// A crashed process is not a partition: a member whose address refuses
// connections (nothing listens there) is gone, and does not count. The
// node asks each vanished member once; on a host that is still up, a
// killed process's address refuses at once. What does not answer at all
// (a cut link, a frozen process, a host that is down) counts until
// MinorityHold has passed, so the survivors of the loss of most hosts
// serve again on their own after it, and a partition longer than it is a
// split brain again, as it was before the rule.

// minorityWatch remembers the members that vanished from a node's view
// without announcing their departure. It is pure: its caller passes the
// monotonic time (nanoseconds) and holds the lock.
type minorityWatch struct {
	hold     int64                     // MinorityHold, in nanoseconds
	present  int                       // members in the view, this node included
	vanished map[string]vanishedMember // by name
}

// vanishedMember is a member that left the view without announcing it.
type vanishedMember struct {
	addr  string
	until int64 // monotonic time until which it counts
}

func newMinorityWatch(hold time.Duration) *minorityWatch {
	return &minorityWatch{hold: int64(hold), vanished: map[string]vanishedMember{}}
}

// viewChanged records a new view, whose members (this node included) are
// present, and the members of the previous view (name: address) that left
// it without announcing their departure and are not known to be gone. It
// returns the monotonic time until which the view is a minority, or 0
// when it is not one.
func (w *minorityWatch) viewChanged(now int64, present []string, vanished map[string]string) (minorityUntil int64) {
	if w.hold <= 0 {
		return 0 // MinorityHold negative: off
	}
	w.present = len(present)
	for name, m := range w.vanished {
		if m.until <= now || slices.Contains(present, name) {
			delete(w.vanished, name)
		}
	}
	for name, addr := range vanished {
		if !slices.Contains(present, name) {
			w.vanished[name] = vanishedMember{addr: addr, until: now + w.hold}
		}
	}
	return w.until()
}

// gone forgets a vanished member found gone (its address refuses
// connections) and returns viewChanged's answer again.
func (w *minorityWatch) gone(name string) (minorityUntil int64) {
	delete(w.vanished, name)
	return w.until()
}

// until returns the monotonic time until which more members count as
// vanished than are present: the (present+1)-th latest of their deadlines.
func (w *minorityWatch) until() int64 {
	if len(w.vanished) <= w.present {
		return 0
	}
	untils := make([]int64, 0, len(w.vanished))
	for _, m := range w.vanished {
		untils = append(untils, m.until)
	}
	slices.Sort(untils)
	return untils[len(untils)-1-w.present]
}

// watchMinority records the members that vanished from the view between
// prev and next without announcing their departure and publishes until
// when next is a minority; while it is one, it asks every member counted
// as vanished whether it is gone. Callers hold leavingMu (rebuildView),
// before it forgets the departures of members gone.
func (s *Store) watchMinority(prev, next *view) {
	if prev == nil {
		return
	}
	present := make([]string, 0, len(next.peers)+1)
	present = append(present, s.self.name)
	for _, q := range next.peers {
		present = append(present, q.name)
	}
	vanished := map[string]string{}
	for _, q := range prev.peers {
		if next.byName[q.name] == nil && s.leaving[q.name] != q.incarnation && !q.refusing.Load() {
			vanished[q.name] = q.addr
		}
	}
	s.publishMinority(s.minority.viewChanged(s.leases.mono(), present, vanished))
	if !s.leases.inMinority() {
		return
	}
	ask := maps.Clone(s.minority.vanished)
	done := make(chan struct{})
	s.askingVanished.Store(&done)
	if !s.goroutine(func() {
		defer close(done)
		s.askVanished(ask)
	}) {
		close(done)
	}
}

// askVanished calls each vanished member once, and forgets those whose
// address refuses the connection: their process is gone, not cut off.
func (s *Store) askVanished(vanished map[string]vanishedMember) {
	hello, err := encodeHello(helloRequest{name: s.self.name, incarnation: s.self.incarnation, partitions: numPartitions, protocol: protocolVersion})
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for name, m := range vanished {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.ReadLease)
			defer cancel()
			if _, err := s.tr.Call(ctx, m.addr, hello); errors.Is(err, transport.ErrRefused) {
				s.leavingMu.Lock()
				defer s.leavingMu.Unlock()
				s.publishMinority(s.minority.gone(name))
			}
		})
	}
	wg.Wait()
}

// awaitVanishedAnswers waits until the members this node last asked
// whether they are gone (askVanished) have answered, at most ReadLease,
// and reports whether it asked any. A read or write that the minority
// would refuse waits for them first: right after a crash verdict that
// reached the view before any call to the crashed process had been
// refused, the answers are a moment away.
func (s *Store) awaitVanishedAnswers(ctx context.Context) bool {
	done := s.askingVanished.Load()
	if done == nil {
		return false
	}
	t := time.NewTimer(s.cfg.ReadLease)
	defer t.Stop()
	select {
	case <-*done:
	case <-t.C:
	case <-ctx.Done():
	case <-s.done:
	}
	return true
}

// writable is Health for a write: a minority's refusal waits for the
// vanished members' answers first (awaitVanishedAnswers).
func (s *Store) writable(ctx context.Context) error {
	err := s.Health()
	if errors.Is(err, ErrMinority) && s.awaitVanishedAnswers(ctx) {
		err = s.Health()
	}
	return err
}

// publishMinority makes until the time until which this node is in a
// minority, and logs when that starts or ends. Callers hold leavingMu.
func (s *Store) publishMinority(until int64) {
	now := s.leases.mono()
	switch was := s.leases.minorityUntil.Swap(until); {
	case until > now && was <= now:
		s.log.Warn("fewer members in view than vanished from it without leaving: answering no read from this node's copies",
			"members", s.minority.present, "vanished", len(s.minority.vanished), "for_at_most", time.Duration(until-now))
	case until <= now && was > now:
		s.log.Info("no longer in a minority: answering reads from this node's copies again",
			"members", s.minority.present, "vanished", len(s.minority.vanished))
	}
}
