package replication

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

func TestPartitionOf_SpreadsIDs(t *testing.T) {
	counts := make([]int, numPartitions)
	for i := 0; i < numPartitions*100; i++ {
		counts[partitionOf(fmt.Sprintf("session-%d", i))]++
	}
	for p, n := range counts {
		require.Greater(t, n, 40, "partition %d got %d of ~100", p, n)
		require.Less(t, n, 170, "partition %d got %d of ~100", p, n)
	}
}

func TestPartition_DigestIsMaintainedIncrementally(t *testing.T) {
	p := newPartitions(&usage{})[0]
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("s%d", i%20)
		p.apply(&record{id: id, attrs: []attr{{name: "a", value: []byte{byte(i)}, version: version{uint64ToTS(i), 1}}}}, 0)
	}
	var want uint64
	for _, r := range p.snapshot() {
		want ^= r.digest()
	}
	n, got := p.stats()
	assert.Equal(t, 20, n)
	assert.Equal(t, want, got)
}

func TestPartition_ApplyIgnoresExpiredNewRecord(t *testing.T) {
	p := newPartitions(&usage{})[0]
	r, _, changed := p.apply(&record{id: "old", expires: 100}, 200)
	assert.Nil(t, r)
	assert.False(t, changed)
	assert.Nil(t, p.get("old"), "a late message can't bring back an expired session")
}

func TestPartition_SweepRemovesOnlyWhatExpired(t *testing.T) {
	p := newPartitions(&usage{})[0]
	now := int64(1_000_000)
	p.apply(&record{id: "short", expires: now + 1500}, now)
	p.apply(&record{id: "idle", expires: now + 100_000, idleMs: 2000, idleUntil: now + 2000}, now)
	p.apply(&record{id: "long", expires: now + 100_000}, now)
	p.apply(&record{id: "forever"}, now)

	assert.Equal(t, 0, p.sweep(now+1000, nil))
	// A touch moves the idle session's deadline: the sweeper re-checks it later.
	p.get("idle").touched.Store(now + 5000)
	assert.Equal(t, 1, p.sweep(now+2000, nil), "short expired")
	assert.Nil(t, p.get("short"))
	assert.Equal(t, 0, p.sweep(now+3000, nil))
	assert.NotNil(t, p.get("idle"))
	assert.Equal(t, 1, p.sweep(now+6000, nil))
	assert.Nil(t, p.get("idle"))

	assert.Equal(t, 1, p.sweep(now+200_000, nil))
	assert.NotNil(t, p.get("forever"))
	n, d := p.stats()
	assert.Equal(t, 1, n)
	assert.Equal(t, p.get("forever").digest(), d)
	assert.Empty(t, p.expiry, "nothing left to check")
}

func uint64ToTS(i int) hlc.Timestamp { return hlc.Timestamp(i + 1) }

func TestPartition_SweepLooksOnlyAtWhatExpires(t *testing.T) {
	p := newPartitions(&usage{})[0]
	now := int64(1_000_000)
	for i := 0; i < 10_000; i++ {
		p.apply(&record{id: fmt.Sprint("long", i), expires: now + 86_400_000}, now)
	}
	for i := 0; i < 10; i++ {
		p.apply(&record{id: fmt.Sprint("short", i), expires: now + 5_000}, now)
	}
	for t := now; t <= now+60_000; t += 1000 { // a minute of sweeps, one a second
		p.sweep(t, nil)
	}
	n, _ := p.stats()
	assert.Equal(t, 10_000, n)
	assert.Equal(t, 10, p.checked, "a minute of sweeping looked at the 10 sessions that expired, not at the 10,000 that did not")
}

// After a long gap (a paused process, a clock step) one sweep removes what
// expired in the gap and keeps what did not, in time proportional to the
// buckets that hold entries, not to the seconds of the gap.
func TestPartition_SweepAfterALongGap(t *testing.T) {
	p := newPartitions(&usage{})[0]
	now := int64(1_000_000)
	for i := 0; i < 100; i++ {
		p.apply(&record{id: fmt.Sprint("hour", i), expires: now + 3_600_000}, now)
		p.apply(&record{id: fmt.Sprint("year", i), expires: now + 365*86_400_000}, now)
	}
	require.Equal(t, 0, p.sweep(now, nil))
	elapsed := SystemClock().Monotonic
	assert.Equal(t, 100, p.sweep(now+30*86_400_000, nil), "a month later, the hour-long sessions are gone")
	n, _ := p.stats()
	assert.Equal(t, 100, n)
	assert.Equal(t, 100, p.sweep(now+10*366*86_400_000, nil), "ten years later, all are gone")
	assert.Less(t, elapsed(), time.Second, "ten years are 316 million one-second buckets")
}
