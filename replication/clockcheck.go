package replication

import (
	"fmt"
	"time"
)

// checkClock compares this node's wall clock with its peers' (as
// wallOffsets estimates them) and decides whether it must refuse writes.
//
// Peers refuse records whose versions are more than MaxClockOffset ahead
// of their own clock (admission.go). A node whose clock is that far ahead
// of the cluster would acknowledge writes that every peer then refuses: a
// silent loss. So a node ahead of the median of its peers by more than
// half of MaxClockOffset refuses writes itself, before acknowledging
// anything (ErrClockOffset), and says so in Health, until its clock comes
// back. A node behind the cluster is not refused: the hybrid logical clock
// orders its versions after what it has seen, and its deadlines are its
// own. A peer more than a quarter of MaxClockOffset away is logged, once
// each time it crosses that line.
func (s *Store) checkClock() {
	v := s.view.Load()
	bound := s.cfg.MaxClockOffset / 2
	var offsets []time.Duration
	for _, q := range v.peers {
		off, errBound, ok := s.wallOffsets.estimate(keyOf(q))
		if !ok {
			continue
		}
		offsets = append(offsets, off)
		s.noteClockSpread(max(off, -off) + errBound)
		far := off > s.cfg.MaxClockOffset/4 || off < -s.cfg.MaxClockOffset/4
		if far != q.clockFar.Swap(far) && far {
			s.log.Warn("peer's clock is far from this node's", "peer", q.name,
				"offset", off.Round(time.Millisecond), "error_bound", errBound.Round(time.Millisecond))
		}
	}
	ahead, ok := aheadOfCluster(offsets)
	var problem error
	if ok && ahead > bound {
		problem = fmt.Errorf("%w: this node's clock is %s ahead of the cluster's (limit %s)",
			ErrClockOffset, ahead.Round(time.Millisecond), bound)
	}
	prev := s.clockProblem.Load()
	switch {
	case problem != nil && prev == nil:
		s.log.Error("refusing writes: clock too far ahead of the cluster", "ahead", ahead.Round(time.Millisecond), "limit", bound)
	case problem == nil && prev != nil:
		s.log.Info("clock back within bounds; accepting writes again", "ahead", ahead.Round(time.Millisecond))
	}
	if problem == nil {
		s.clockProblem.Store(nil)
	} else {
		s.clockProblem.Store(&problem)
	}
}

// noteClockSpread raises the largest wall-clock offset this node has
// measured to a peer, error bound included, to d.
func (s *Store) noteClockSpread(d time.Duration) {
	for {
		cur := s.clockSpread.Load()
		if int64(d) <= cur || s.clockSpread.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// Health returns nil while the store can take writes, or why it cannot:
// an error wrapping ErrClockOffset while its wall clock is too far ahead
// of the cluster's (see Config.MaxClockOffset), ErrMinority while its view
// holds fewer members than vanished from it (see Config.MinorityHold), or
// ErrPeerRefused while a member that was in the cluster before this node
// started refuses it (another protocol version, cluster label, secret or
// certificate). A readiness probe should fail while it is not nil, and
// show its text.
func (s *Store) Health() error {
	if p := s.clockProblem.Load(); p != nil {
		return *p
	}
	if s.leases.inMinority() {
		return ErrMinority
	}
	return refusalProblem(s.view.Load())
}
