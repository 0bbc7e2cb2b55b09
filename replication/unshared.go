package replication

import (
	"context"
	"slices"
)

// Records loaded from a snapshot may be the only copies there are: after
// a stop of every node, the nodes that handed their sessions to the last
// one to leave restart with empty snapshots, find themselves alone or
// among empty peers, and hold their partitions "completely". The
// snapshot's owner then holds sessions that the partitions' owners lack,
// and until it has pushed them, an owner that answered a read from its own
// copy would say "no such session" for a session that exists (found by the
// fleet-restart demo: up to 17 of 54 users logged out after a SIGTERM of
// every node, in 4 of 61 runs).
//
// So the partitions a snapshot filled are marked unshared. A node grants
// no lease to a peer that owns an unshared partition: that peer is not
// authoritative, and its reads ask the owners and, finding no
// authoritative one, every peer, this node included. Each maintenance
// round pushes an unshared partition's records to its other owners (the
// hand-off's exchange: only what they lack travels); once every one of
// them keeps what it holds of the partition, the partition is shared and
// the leases flow again. A node restarted with its peers running holds
// back its co-owners' leases for one round, usually milliseconds.

// markUnshared marks every partition that holds records as unshared; the
// store calls it once its snapshot is loaded, before it serves.
func (s *Store) markUnshared() {
	for _, p := range s.parts {
		if n, _ := p.stats(); n > 0 {
			p.unshared.Store(true)
			s.unshared.Add(1)
		}
	}
}

// withholdsLeaseFrom reports whether this node must not grant q a lease:
// q owns, in v, a partition whose records this node loaded and has not
// pushed to it yet.
func (s *Store) withholdsLeaseFrom(v *view, q *peer) bool {
	if s.unshared.Load() == 0 {
		return false
	}
	for pi, p := range s.parts {
		if p.unshared.Load() && slices.Contains(v.owners[pi], q) {
			return true
		}
	}
	return false
}

// shareLoaded pushes the records of each unshared partition to the
// partition's other owners in v, and marks it shared once each of them
// keeps what it holds of it. A partition with no other owner (this node is
// alone) stays unshared: there is nobody to push to, and nobody asks this
// node for a lease.
func (s *Store) shareLoaded(ctx context.Context, v *view) {
	if s.unshared.Load() == 0 || v.ownerless() {
		return
	}
	for pi, p := range s.parts {
		owners := v.targets(pi)
		if !p.unshared.Load() || len(owners) == 0 {
			continue
		}
		mine, shared := p.snapshot(), true
		for _, q := range owners {
			_, keeps, err := s.exchangeRecords(ctx, q, pi, mine, false)
			if err != nil || !keeps {
				s.log.Debug("loaded records not pushed yet", "peer", q.name, "partition", pi, "keeps", keeps, "err", err)
				shared = false
				break
			}
		}
		if shared && p.unshared.Swap(false) && s.unshared.Add(-1) == 0 {
			s.log.Info("pushed the sessions loaded from the snapshot to their other owners; granting them leases")
		}
	}
}
