package loadgen

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the resolution of a Histogram: each power of two is split
// into 1<<subBits buckets, so a recorded value is known to within 1/128 of
// itself (0.8%).
const subBits = 7

const (
	subCount = 1 << subBits
	// numBuckets covers every non-negative int64: exponents 0..56 of
	// subCount buckets each, plus the exact values below subCount.
	numBuckets = (64-subBits)*subCount + subCount
)

// Histogram records durations (latencies) in logarithmic buckets with a
// relative error of at most 1/128, in constant memory. Count, Min, Max and
// Mean are exact; quantiles are exact to within a bucket.
//
// The zero Histogram is empty and ready to use. A Histogram is not safe for
// concurrent use: give each goroutine its own and Merge them.
type Histogram struct {
	counts   []uint64 // allocated on the first Record
	n        uint64
	sum      float64 // nanoseconds, as float64 so that it cannot overflow
	min, max time.Duration
}

// NewHistogram returns an empty Histogram with its buckets allocated, so
// that Record never allocates (for benchmarks that report allocations).
func NewHistogram() *Histogram {
	return &Histogram{counts: make([]uint64, numBuckets)}
}

// bucketOf returns the bucket of v >= 0.
func bucketOf(v uint64) int {
	e := bits.Len64(v) - (subBits + 1)
	if e <= 0 {
		return int(v) // exact: v < 2*subCount
	}
	return e*subCount + int(v>>uint(e))
}

// bucketBounds returns the smallest and largest value of bucket i.
func bucketBounds(i int) (lo, hi uint64) {
	if i < 2*subCount {
		return uint64(i), uint64(i)
	}
	e := i/subCount - 1
	m := uint64(i - e*subCount)
	lo = m << uint(e)
	return lo, lo + (1 << uint(e)) - 1
}

// Record adds one duration. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	h.counts[bucketOf(uint64(d))]++
	if h.n == 0 || d < h.min {
		h.min = d
	}
	if d > h.max {
		h.max = d
	}
	h.n++
	h.sum += float64(d)
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of values recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest value recorded, or 0.
func (h *Histogram) Min() time.Duration { return h.min }

// Max returns the largest value recorded, or 0.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean returns the average of the values recorded, or 0.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.n)))
}

// Quantile returns the q-quantile (0 <= q <= 1) of the values recorded, by
// the nearest-rank definition: the smallest recorded value v such that at
// least a fraction q of the values are <= v. The answer is the upper end of
// the bucket holding that value, clamped to [Min, Max], so it is never
// below the exact quantile and at most 1/128 above it. Quantile(0) is Min,
// Quantile(1) is Max, and an empty Histogram returns 0.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= rank {
			_, hi := bucketBounds(i)
			return min(max(time.Duration(hi), h.min), h.max)
		}
	}
	return h.max
}
