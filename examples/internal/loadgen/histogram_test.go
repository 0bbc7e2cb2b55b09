package loadgen

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// exactQuantile is the nearest-rank q-quantile of sorted values.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	rank := max(int(math.Ceil(q*float64(len(sorted)))), 1)
	return sorted[rank-1]
}

func TestHistogram_Empty(t *testing.T) {
	var h Histogram
	assert.Zero(t, h.Count())
	assert.Zero(t, h.Quantile(0.5))
	assert.Zero(t, h.Quantile(1))
	assert.Zero(t, h.Max())
	assert.Zero(t, h.Min())
	assert.Zero(t, h.Mean())
	h.Merge(&Histogram{})
	h.Merge(nil)
	assert.Zero(t, h.Count())
}

func TestHistogram_OneValue(t *testing.T) {
	var h Histogram
	h.Record(1234567 * time.Nanosecond)
	for _, q := range []float64{0, 0.01, 0.5, 0.99, 1} {
		assert.Equal(t, 1234567*time.Nanosecond, h.Quantile(q), "q=%v", q)
	}
	assert.Equal(t, 1234567*time.Nanosecond, h.Mean())
}

func TestHistogram_SmallValuesAreExact(t *testing.T) {
	var h Histogram
	for v := range 256 {
		h.Record(time.Duration(v))
	}
	assert.Equal(t, time.Duration(0), h.Quantile(0))
	assert.Equal(t, time.Duration(127), h.Quantile(0.5)) // rank 128 of 256
	assert.Equal(t, time.Duration(252), h.Quantile(0.985))
	assert.Equal(t, time.Duration(255), h.Quantile(1))
}

func TestHistogram_NegativeCountsAsZero(t *testing.T) {
	var h Histogram
	h.Record(-time.Second)
	assert.Equal(t, time.Duration(0), h.Max())
	assert.Equal(t, uint64(1), h.Count())
}

func TestHistogram_Buckets(t *testing.T) {
	// Buckets tile the non-negative integers without gaps or overlaps, and
	// every bucket's width is at most 1/128 of its smallest value.
	prevHi := int64(-1)
	for i := range numBuckets {
		lo, hi := bucketBounds(i)
		require.Equal(t, uint64(prevHi+1), lo, "bucket %d", i)
		require.GreaterOrEqual(t, hi, lo)
		if i >= 2*subCount {
			require.LessOrEqual(t, float64(hi-lo+1), float64(lo)/subCount, "bucket %d", i)
		}
		require.Equal(t, i, bucketOf(lo))
		require.Equal(t, i, bucketOf(hi))
		if hi == math.MaxUint64 {
			require.Equal(t, numBuckets-1, i)
			return
		}
		prevHi = int64(hi)
		if prevHi < 0 { // past MaxInt64: the rest is beyond any Duration
			return
		}
	}
}

// TestHistogram_QuantilesMatchSorting compares the histogram's quantiles
// with exact ones from sorted samples, for several distributions.
func TestHistogram_QuantilesMatchSorting(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() time.Duration{
		"uniform µs":  func() time.Duration { return time.Duration(rng.Int64N(1000000)) },
		"exponential": func() time.Duration { return time.Duration(rng.ExpFloat64() * 200000) },
		"bimodal": func() time.Duration {
			if rng.IntN(100) < 2 {
				return 50*time.Millisecond + time.Duration(rng.Int64N(int64(time.Millisecond)))
			}
			return 60*time.Microsecond + time.Duration(rng.Int64N(20000))
		},
		"seconds": func() time.Duration { return time.Duration(rng.Int64N(int64(30 * time.Second))) },
	}
	qs := []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			for _, n := range []int{1, 7, 100, 10000} {
				var h Histogram
				vals := make([]time.Duration, n)
				var sum float64
				for i := range vals {
					vals[i] = gen()
					h.Record(vals[i])
					sum += float64(vals[i])
				}
				slices.Sort(vals)
				require.Equal(t, uint64(n), h.Count())
				require.Equal(t, vals[0], h.Min())
				require.Equal(t, vals[n-1], h.Max())
				require.InDelta(t, sum/float64(n), float64(h.Mean()), 1)
				for _, q := range qs {
					exact := exactQuantile(vals, q)
					got := h.Quantile(q)
					require.GreaterOrEqual(t, got, exact, "n=%d q=%v", n, q)
					require.LessOrEqual(t, float64(got), float64(exact)*(1+1.0/subCount)+1, "n=%d q=%v", n, q)
				}
			}
		})
	}
}

func TestHistogram_MergeEqualsRecordingEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var all, a, b Histogram
	for i := range 5000 {
		v := time.Duration(rng.Int64N(int64(10 * time.Millisecond)))
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var merged Histogram
	merged.Merge(&a)
	merged.Merge(&b)
	assert.Equal(t, all.Count(), merged.Count())
	assert.Equal(t, all.Min(), merged.Min())
	assert.Equal(t, all.Max(), merged.Max())
	assert.Equal(t, all.Mean(), merged.Mean())
	for _, q := range []float64{0, 0.25, 0.5, 0.9, 0.99, 1} {
		assert.Equal(t, all.Quantile(q), merged.Quantile(q), "q=%v", q)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		870:                     "870ns",
		64200:                   "64.2µs",
		1250 * time.Microsecond: "1.25ms",
		123 * time.Millisecond:  "123ms",
		2310 * time.Millisecond: "2.31s",
	} {
		assert.Equal(t, want, FormatDuration(d))
	}
}

func TestNewHistogram_RecordDoesNotAllocate(t *testing.T) {
	h := NewHistogram()
	allocs := testing.AllocsPerRun(100, func() { h.Record(time.Millisecond) })
	assert.Zero(t, allocs)
	assert.Equal(t, time.Millisecond, h.Quantile(0.5))
}
