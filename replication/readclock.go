package replication

import (
	"sync/atomic"
	"time"
)

// The read clock.
//
// Every read judges expiry by the wall clock. With the default clock a
// goroutine keeps a reading in Unix milliseconds current every
// readClockTick, which saves the local read path a clock read (a sixth of
// its cost). A ticker at 100 Hz is also most of what an idle node costs:
// a lone idle process spent 2% of a core on it, and 64 of them on one
// machine more than a core. So the goroutine parks after readClockIdle
// without a read; the next read finds no reading, reads the clock itself
// and wakes the goroutine.

const (
	readClockTick = 10 * time.Millisecond // how often the reading advances
	readClockIdle = time.Second           // how long without reads before the goroutine parks
)

// readClock is a wall-clock reading refreshed while reads use it.
type readClock struct {
	now  func() int64 // the wall clock, in Unix milliseconds
	ms   atomic.Int64 // the reading; 0 while parked
	used atomic.Bool  // a read took the reading since the last tick
	wake chan struct{}
}

func newReadClock(now func() int64) *readClock {
	c := &readClock{now: now, wake: make(chan struct{}, 1)}
	c.ms.Store(now())
	return c
}

// read returns the reading, at most readClockTick old.
func (c *readClock) read() int64 {
	if t := c.ms.Load(); t != 0 {
		if !c.used.Load() {
			c.used.Store(true)
		}
		return t
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return c.now()
}

// run refreshes the reading until done is closed, parked while no read
// uses it.
func (c *readClock) run(done <-chan struct{}) {
	t := time.NewTicker(readClockTick)
	defer t.Stop()
	idleTicks := 0
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if c.used.Swap(false) {
			idleTicks = 0
		} else {
			idleTicks++
		}
		if idleTicks >= int(readClockIdle/readClockTick) {
			c.park(t, done)
			idleTicks = 0
		}
		c.ms.Store(c.now())
	}
}

// park clears the reading and stops t until a read wakes it or done is
// closed.
func (c *readClock) park(t *time.Ticker, done <-chan struct{}) {
	c.ms.Store(0)
	t.Stop()
	select {
	case <-done:
	case <-c.wake:
		t.Reset(readClockTick)
	}
}
