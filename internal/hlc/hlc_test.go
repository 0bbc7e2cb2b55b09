package hlc

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestClock_NowFollowsWallClock(t *testing.T) {
	mc := NewManualClock(epoch)
	c := NewClock(mc.Now, 0)
	a := c.Now()
	assert.Equal(t, epoch, a.Time().UTC())
	assert.Equal(t, uint16(0), a.Logical())

	mc.Advance(5 * time.Millisecond)
	b := c.Now()
	assert.Equal(t, epoch.Add(5*time.Millisecond), b.Time().UTC())
	assert.Equal(t, uint16(0), b.Logical(), "logical counter resets when wall time advances")
}

func TestClock_NowIsMonotonicWhenWallClockStallsOrGoesBack(t *testing.T) {
	mc := NewManualClock(epoch)
	c := NewClock(mc.Now, 0)
	prev := c.Now()
	for i := 0; i < 1000; i++ {
		if i%100 == 0 {
			mc.Advance(-time.Second)
		}
		ts := c.Now()
		require.Greater(t, ts, prev)
		prev = ts
	}
}

func TestClock_LogicalOverflowCarriesIntoMilliseconds(t *testing.T) {
	mc := NewManualClock(epoch)
	c := NewClock(mc.Now, 0)
	var last Timestamp
	for i := 0; i < 1<<logicalBits+10; i++ {
		last = c.Now()
	}
	assert.Equal(t, epoch.Add(time.Millisecond), last.Time().UTC())
	assert.Equal(t, uint16(9), last.Logical())
}

func TestClock_UpdateOrdersAfterRemote(t *testing.T) {
	slow := NewManualClock(epoch)
	fast := NewManualClock(epoch.Add(3 * time.Second))
	a := NewClock(slow.Now, 10*time.Second)
	b := NewClock(fast.Now, 10*time.Second)

	remote := b.Now()
	require.NoError(t, a.Update(remote))
	local := a.Now()
	assert.Greater(t, local, remote, "a write after seeing a remote one orders after it despite the slower clock")
}

func TestClock_UpdateRejectsTimestampTooFarAhead(t *testing.T) {
	mc := NewManualClock(epoch)
	c := NewClock(mc.Now, time.Second)
	before := c.Now()
	err := c.Update(FromTime(epoch.Add(time.Hour)))
	require.ErrorIs(t, err, ErrClockJump)
	assert.Equal(t, before, c.Last(), "a rejected timestamp is not adopted")
	require.NoError(t, c.Update(FromTime(epoch.Add(500*time.Millisecond))))
}

func TestClock_ConcurrentNowIsUnique(t *testing.T) {
	c := NewClock(nil, 0)
	const goroutines, each = 8, 2000
	var mu sync.Mutex
	seen := make(map[Timestamp]bool, goroutines*each)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]Timestamp, 0, each)
			for i := 0; i < each; i++ {
				local = append(local, c.Now())
			}
			mu.Lock()
			defer mu.Unlock()
			for _, ts := range local {
				seen[ts] = true
			}
		}()
	}
	wg.Wait()
	assert.Len(t, seen, goroutines*each)
}

func TestTimestamp_String(t *testing.T) {
	ts := FromTime(epoch) + 7
	assert.Equal(t, "2026-01-02T03:04:05.000Z+7", ts.String())
}
