package replication

import (
	"slices"
	"sync"
	"time"
)

// peerClocks estimates, for each peer, how its monotonic clock reads in
// terms of this node's, from the lease requests peers already send every
// ReadLease/4: each carries the sender's monotonic reading, and its
// arrival here gives one sample of (this node's reading at arrival) -
// (the peer's at sending) = offset + one-way delay. The smallest of the
// recent samples is the best estimate, an upper bound of the offset by the
// smallest delay. No wall clock plays a part, so neither skew nor a step
// of either node's wall clock changes it. It is safe for concurrent use.
type peerClocks struct {
	mu      sync.Mutex
	samples map[memberKey]*clockSamples // guards
}

// clockWindow is how many recent samples an estimate takes the smallest
// of: enough to find a quick delivery among slow ones, few enough that
// the relative drift of two monotonic clocks (at most ~100 ppm) stays far
// below a millisecond across the window.
const clockWindow = 16

type clockSamples struct {
	ring [clockWindow]int64
	n    int // samples recorded, capped at clockWindow
	next int // where the next sample goes
}

func newPeerClocks() *peerClocks { return &peerClocks{samples: map[memberKey]*clockSamples{}} }

// observe records that a message peer sent at its monotonic time sent
// arrived at this node's monotonic time now.
func (c *peerClocks) observe(peer memberKey, sent, now int64) {
	if sent == 0 {
		return // a build that does not send its clock
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.samples[peer]
	if s == nil {
		for k := range c.samples { // a restarted member starts afresh
			if k.name == peer.name {
				delete(c.samples, k)
			}
		}
		s = &clockSamples{}
		c.samples[peer] = s
	}
	s.ring[s.next] = now - sent
	s.next = (s.next + 1) % clockWindow
	s.n = min(s.n+1, clockWindow)
}

// toLocal converts the peer's monotonic reading t into this node's,
// early by at most the smallest recent one-way delay; ok is false without
// samples from that peer.
func (c *peerClocks) toLocal(peer memberKey, t int64) (local int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.samples[peer]
	if s == nil || s.n == 0 {
		return 0, false
	}
	return t + slices.Min(s.ring[:s.n]), true
}

// forget drops what is known of the members not in keep.
func (c *peerClocks) forget(keep []memberKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.samples {
		if !slices.Contains(keep, k) {
			delete(c.samples, k)
		}
	}
}

// lateBy returns how long after its caller stopped waiting an update
// arrived here at monotonic time now, from the caller's monotonic send
// time and the time it waits (budget), measured in this node's monotonic
// clock; 0 or less when in time. ok is false when this node cannot tell
// (no samples of the caller's clock, or a caller that sent none).
func (c *peerClocks) lateBy(caller memberKey, sent int64, budget time.Duration, now int64) (late time.Duration, ok bool) {
	if sent == 0 || budget <= 0 {
		return 0, false
	}
	start, ok := c.toLocal(caller, sent)
	if !ok {
		return 0, false
	}
	return time.Duration(now - (start + int64(budget))), true
}

// wallOffsets estimates, for each peer, how far its wall clock is from this
// node's, NTP-style, from the lease exchanges that already happen: this
// node's wall clock when it asked (t1) and when the answer came back (t4),
// and the peer's when it answered (t2), give offset = t2 - (t1+t4)/2, off
// by at most half the round trip. Of the recent samples the one with the
// shortest round trip is kept. It is safe for concurrent use.
type wallOffsets struct {
	mu      sync.Mutex
	samples map[memberKey]*offsetSamples // guards
}

type offsetSample struct {
	offset, rtt time.Duration
}

type offsetSamples struct {
	ring [clockWindow]offsetSample
	n    int
	next int
}

func newWallOffsets() *wallOffsets { return &wallOffsets{samples: map[memberKey]*offsetSamples{}} }

// observe records one exchange with peer: t1 and t4 on this node's wall
// clock, t2 on the peer's (Unix nanoseconds), rtt on the monotonic clock.
func (w *wallOffsets) observe(peer memberKey, t1, t2, t4 int64, rtt time.Duration) {
	if t2 == 0 {
		return // a build that does not send its clock
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.samples[peer]
	if s == nil {
		for k := range w.samples {
			if k.name == peer.name {
				delete(w.samples, k)
			}
		}
		s = &offsetSamples{}
		w.samples[peer] = s
	}
	s.ring[s.next] = offsetSample{offset: time.Duration(t2 - (t1+t4)/2), rtt: rtt}
	s.next = (s.next + 1) % clockWindow
	s.n = min(s.n+1, clockWindow)
}

// estimate returns the peer's offset (its wall clock minus this node's)
// and its error bound; ok is false without samples.
func (w *wallOffsets) estimate(peer memberKey) (offset, bound time.Duration, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.samples[peer]
	if s == nil || s.n == 0 {
		return 0, 0, false
	}
	best := slices.MinFunc(s.ring[:s.n], func(a, b offsetSample) int { return int(a.rtt - b.rtt) })
	return best.offset, best.rtt / 2, true
}

// forget drops what is known of the members not in keep.
func (w *wallOffsets) forget(keep []memberKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k := range w.samples {
		if !slices.Contains(keep, k) {
			delete(w.samples, k)
		}
	}
}

// aheadOfCluster returns how far this node's wall clock is ahead of the
// median of its peers' (negative: behind), from the given peer offsets
// (each peer's clock minus this node's); ok is false without any.
func aheadOfCluster(offsets []time.Duration) (time.Duration, bool) {
	if len(offsets) == 0 {
		return 0, false
	}
	sorted := slices.Clone(offsets)
	slices.Sort(sorted)
	return -sorted[len(sorted)/2], true
}
