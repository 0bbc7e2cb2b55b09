package replication

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// PartitionInfo describes one partition as this node sees it.
type PartitionInfo struct {
	// Partition is the partition's number, 0 to Partitions-1.
	Partition int
	// Owners are the names of the owning members, primary first.
	Owners []string
	// Owned reports whether this node is among the owners.
	Owned bool
	// Complete reports whether this node holds the partition completely
	// (it owns it and has finished copying it).
	Complete bool
	// Sessions is the number of records this node holds in the
	// partition, tombstones included.
	Sessions int
	// Digest summarises those records; complete owners of a partition
	// have equal digests once they have converged.
	Digest uint64
}

// Partitions returns what this node knows of every partition, in order.
func (s *Store) Partitions() []PartitionInfo {
	v := s.view.Load()
	out := make([]PartitionInfo, numPartitions)
	for i, p := range s.parts {
		n, d := p.stats()
		info := PartitionInfo{Partition: i, Owned: v.owns(i), Complete: p.ready.Load(), Sessions: n, Digest: d}
		for _, q := range v.owners[i] {
			info.Owners = append(info.Owners, q.name)
		}
		out[i] = info
	}
	return out
}

// Scan calls fn for every live session of the cluster, partition by
// partition, until fn returns false. Partitions this node holds completely
// are read locally; the others are read in chunks from a complete owner
// (or, during a rebalance, merged from every node that holds records of
// them). Memory stays bounded by one partition. The sessions are snapshots:
// writes made during the scan may or may not be seen.
func (s *Store) Scan(ctx context.Context, fn func(Session) bool) error {
	if s.closed() {
		return ErrClosed
	}
	v := s.view.Load()
	now := s.now()
	for pi, p := range s.parts {
		var rs []*record
		if s.authoritative(p) {
			rs = p.snapshot()
		} else {
			var err error
			if rs, err = s.scanRemote(ctx, v, pi); err != nil {
				return fmt.Errorf("scan partition %d: %w", pi, err)
			}
		}
		for _, r := range rs {
			if r.live(now) && !fn(Session{r: r}) {
				return nil
			}
		}
	}
	return nil
}

// scanRemote reads partition pi from a complete owner, or merges every
// peer's records of it when no owner is complete.
func (s *Store) scanRemote(ctx context.Context, v *view, pi int) ([]*record, error) {
	read := func(q *peer, complete bool) (map[string]*record, error) {
		out := map[string]*record{}
		after := ""
		for {
			req, err := encodeFetchRange(pi, after, s.cfg.TransferChunkBytes)
			if err != nil {
				return nil, err
			}
			resp, err := s.callTimeout(ctx, q, req)
			if err != nil {
				return nil, err
			}
			chunk, err := decodeRangeReply(resp)
			if err != nil {
				return nil, err
			}
			if complete && !chunk.ready {
				return nil, errNotComplete
			}
			if err := s.admit("scan", chunk.records...); err != nil {
				return nil, err
			}
			for _, r := range chunk.records {
				out[r.id] = r
			}
			if chunk.done || len(chunk.records) == 0 {
				return out, nil
			}
			after = chunk.records[len(chunk.records)-1].id
		}
	}
	for _, q := range ownersByPreference(v.targets(pi)) {
		if m, err := read(q, true); err == nil {
			return sorted(m), nil
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	merged := map[string]*record{}
	for _, r := range s.parts[pi].snapshot() {
		merged[r.id] = r
	}
	for _, q := range v.peers {
		m, err := read(q, false)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		for id, r := range m {
			merged[id] = merge(merged[id], r)
		}
	}
	return sorted(merged), nil
}

func sorted(m map[string]*record) []*record {
	out := make([]*record, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sortRecords(out)
	return out
}

// LatencyHistogram is a cumulative histogram of durations, in the shape
// Prometheus histograms take.
type LatencyHistogram struct {
	// Bounds are the upper bounds of the buckets, in seconds, ascending;
	// an implicit last bucket is unbounded.
	Bounds []float64
	// Counts are the cumulative counts per bucket: Counts[i] observations
	// were at most Bounds[i].
	Counts []uint64
	// Count is the number of observations and Sum their total, in seconds.
	Count uint64
	Sum   float64
}

// latencyBounds are the histogram's bucket bounds: 50 µs to about 3.3 s,
// doubling.
var latencyBounds = func() []float64 {
	var b []float64
	for d := 50 * time.Microsecond; d < 4*time.Second; d *= 2 {
		b = append(b, d.Seconds())
	}
	return b
}()

// latencyHistogram records durations without locks.
type latencyHistogram struct {
	buckets [32]atomic.Uint64 // per bucket, not cumulative; the last is unbounded
	sumNs   atomic.Uint64
}

func (h *latencyHistogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d.Seconds() > latencyBounds[i] {
		i++
	}
	h.buckets[i].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

func (h *latencyHistogram) snapshot() LatencyHistogram {
	out := LatencyHistogram{Bounds: latencyBounds, Counts: make([]uint64, len(latencyBounds))}
	var cum uint64
	for i := range latencyBounds {
		cum += h.buckets[i].Load()
		out.Counts[i] = cum
	}
	out.Count = cum + h.buckets[len(latencyBounds)].Load()
	out.Sum = float64(h.sumNs.Load()) / float64(time.Second)
	if math.IsNaN(out.Sum) {
		out.Sum = 0
	}
	return out
}

// PeerInfo describes another member as this node sees it.
type PeerInfo struct {
	// Name and Addr are the member's name and replication address.
	Name, Addr string
	// Incarnation identifies the member's current process life.
	Incarnation uint64
	// Degraded reports that the peer missed a write acknowledgement and
	// is not waited for until repaired.
	Degraded bool
	// LastStatus is when the peer last answered a status poll (zero if
	// never); the fields below come from that answer.
	LastStatus time.Time
	// CompletePartitions is the number of partitions the peer holds
	// completely as an owner.
	CompletePartitions int
	// Sessions is the number of records the peer holds, tombstones
	// included.
	Sessions int
	// ClockOffset is how far the peer's wall clock is ahead of this
	// node's (negative: behind), measured from lease exchanges, and
	// ClockOffsetBound the most it may be off (half the round trip of the
	// best recent exchange). Both are 0 before the first exchange.
	ClockOffset, ClockOffsetBound time.Duration
	// Protocol is the highest protocol version the peer's build speaks,
	// as its hello said (1 for the first release); 0 before any hello.
	// During a rollout it shows which peers run the new build.
	Protocol uint64
	// Refusal says why the peer refuses this node (another protocol
	// version, cluster label, secret or certificate); empty while it
	// accepts it. See Store.Health.
	Refusal string
}

// Peers returns the other members this node replicates with, by name.
func (s *Store) Peers() []PeerInfo {
	v := s.view.Load()
	out := make([]PeerInfo, 0, len(v.peers))
	now, mono := s.clock.Now(), s.clock.Monotonic()
	for _, q := range v.peers {
		info := PeerInfo{Name: q.name, Addr: q.addr, Incarnation: q.incarnation, Degraded: q.degraded.Load()}
		info.ClockOffset, info.ClockOffsetBound, _ = s.wallOffsets.estimate(keyOf(q))
		info.Protocol = q.version.protocol.Load()
		if r := q.version.refusal.Load(); r != nil {
			info.Refusal = r.reason
		}
		if st := q.status.Load(); st != nil {
			info.LastStatus = now.Add(st.at - mono)
			for i := range st.ready {
				if st.ready[i] {
					info.CompletePartitions++
				}
				info.Sessions += int(st.counts[i])
			}
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}
