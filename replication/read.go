package replication

import (
	"context"
	"slices"
	"time"
)

// Get returns the session id if it exists and has not expired or been
// destroyed. A missing session is (Session{}, false, nil).
//
// A node that owns the session's partition and holds it completely reads
// locally, without any network traffic. Otherwise it asks the owners,
// primary first, then the backups, and takes the first answer from an owner
// that holds the partition completely. During rebalancing, when no such
// owner answers, it asks every peer and merges what they hold.
func (s *Store) Get(ctx context.Context, id string) (Session, bool, error) {
	if s.closed() {
		return Session{}, false, ErrClosed
	}
	if !validID(id) {
		return Session{}, false, nil
	}
	pi := partitionOf(id)
	var r *record
	if p := s.parts[pi]; p.ready.Load() {
		r = p.get(id)
	} else {
		var err error
		if r, err = s.readRemote(ctx, s.view.Load(), pi, id); err != nil {
			return Session{}, false, err
		}
	}
	if r == nil || !r.live(s.now()) {
		return Session{}, false, nil
	}
	return Session{r: r}, true, nil
}

// current returns the latest record of id that this node can know: its own
// when it holds the partition completely, else one read from the owners.
func (s *Store) current(ctx context.Context, v *view, pi int, id string) (*record, error) {
	if p := s.parts[pi]; p.ready.Load() {
		return p.get(id), nil
	}
	return s.readRemote(ctx, v, pi, id)
}

// readRemote reads id from its owners (see Get). When this node owns the
// partition, what it learns is merged into its own copy.
func (s *Store) readRemote(ctx context.Context, v *view, pi int, id string) (*record, error) {
	if !s.joined.Load() {
		var err error
		if v, err = s.awaitJoined(ctx); err != nil {
			return nil, err
		}
	}
	req, err := encodeGet(id)
	if err != nil {
		return nil, err
	}
	p := s.parts[pi]
	owner := v.owns(pi)
	// What this node holds: as a new owner, what writes delivered so far;
	// as a former owner, what it has not handed over yet. Partial or
	// stale, it is still true, and merging keeps whatever is newer.
	merged := p.get(id)
	learn := func(r *record) error {
		if r == nil || r.id != id {
			return nil
		}
		if err := s.checkRemote([]*record{r}); err != nil {
			return err
		}
		if err := s.clock.Update(r.maxVersion().time); err != nil {
			s.stats.rejected.Add(1)
			return err
		}
		if owner {
			merged, _ = p.apply(r, s.now())
		} else {
			merged = merge(merged, r)
		}
		return nil
	}

	owners := ownersByPreference(v.targets(pi))
	for _, q := range owners {
		ready, r, err := s.get(ctx, q, req)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			continue
		}
		if err := learn(r); err != nil { // a partial copy is still true
			s.log.Warn("refused record from peer", "peer", q.name, "err", err)
			continue
		}
		if ready {
			s.stats.remoteReads.Add(1)
			return merged, nil
		}
	}
	// Rebalancing: no owner holds the partition completely yet. Merge
	// what everybody has: former owners keep their records until the new
	// owners are complete. When that finds nothing, ask the owners once
	// more, as one may have completed meanwhile.
	ask := func(qs []*peer) error {
		for _, q := range qs {
			_, r, err := s.get(ctx, q, req)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err == nil {
				if err := learn(r); err != nil {
					s.log.Warn("refused record from peer", "peer", q.name, "err", err)
				}
			}
		}
		return nil
	}
	var others []*peer
	for _, q := range v.peers {
		if !slices.Contains(owners, q) {
			others = append(others, q)
		}
	}
	if err := ask(others); err != nil {
		return nil, err
	}
	if merged == nil {
		if err := ask(owners); err != nil {
			return nil, err
		}
	}
	s.stats.remoteReads.Add(1)
	return merged, nil
}

// get asks q for one session.
func (s *Store) get(ctx context.Context, q *peer, req []byte) (ready bool, r *record, err error) {
	cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	resp, err := s.tr.Call(cctx, q.addr, req)
	if err != nil {
		s.log.Debug("read from peer failed", "peer", q.name, "err", err)
		return false, nil, err
	}
	ready, r, err = decodeGetReply(resp)
	if err != nil {
		s.log.Warn("bad read reply", "peer", q.name, "err", err)
	}
	return ready, r, err
}

// ownersByPreference returns owners in order of preference for reads:
// the view's order (primary first), healthy before degraded.
func ownersByPreference(owners []*peer) []*peer {
	out := slices.Clone(owners)
	slices.SortStableFunc(out, func(a, b *peer) int {
		switch {
		case a.degraded.Load() == b.degraded.Load():
			return 0
		case b.degraded.Load():
			return -1
		}
		return 1
	})
	return out
}

// awaitJoined waits, at most WriteTimeout, until the node has joined the
// cluster, and returns the view from then. A node that has just started
// knows no peers: answering "no such session" before it has met them would
// log out users whose requests reach it first.
func (s *Store) awaitJoined(ctx context.Context) (*view, error) {
	t := time.NewTimer(s.cfg.WriteTimeout)
	defer t.Stop()
	select {
	case <-s.cfg.Membership.Settled():
		s.joinedOnce.Do(func() {
			s.rebuildView()
			s.joined.Store(true)
		})
	case <-t.C:
		s.log.Warn("read before the node has joined the cluster; answering with what it holds")
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, ErrClosed
	}
	return s.view.Load(), nil
}
