package replication

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadClock_ParksWhenUnusedAndWakesOnARead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		wall := func() int64 { return SystemClock().Now().UnixMilli() }
		c := newReadClock(wall)
		done := make(chan struct{})
		stopped := make(chan struct{})
		go func() { c.run(done); close(stopped) }()

		// In use: the reading follows the clock within a tick.
		for range 50 {
			time.Sleep(7 * time.Millisecond)
			assert.InDelta(t, wall(), c.read(), float64(readClockTick.Milliseconds()))
		}

		// Unused for readClockIdle: parked, no reading left behind, and the
		// goroutine asleep (no ticks) for as long as nobody reads.
		time.Sleep(readClockIdle + 2*readClockTick)
		synctest.Wait()
		require.Zero(t, c.ms.Load(), "an unused read clock keeps ticking")

		// The next read is exact and wakes it; the reading is back a tick later.
		time.Sleep(time.Hour)
		assert.Equal(t, wall(), c.read())
		time.Sleep(readClockTick)
		synctest.Wait()
		assert.NotZero(t, c.ms.Load())
		assert.InDelta(t, wall(), c.read(), float64(readClockTick.Milliseconds()))

		close(done)
		<-stopped
	})
}
