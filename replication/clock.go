package replication

import "time"

// Clock is the store's only source of time. It has two readings, because
// the store needs two kinds of time:
//
//   - Now, the wall clock, is what versions (the hybrid logical clock),
//     session creation times, absolute deadlines and tombstone lifetimes
//     are read on. It may differ between nodes and jump (an NTP step, a VM
//     resumed from suspend); the store is built to tolerate that within
//     Config.MaxClockOffset.
//   - Monotonic, the time elapsed since the clock started on a clock that
//     never jumps, is what leases, freshness of peer statuses, waits and
//     latencies are measured on, locally. A monotonic reading never leaves
//     the node.
//
// Waits themselves (timers, context deadlines) use the Go runtime's
// monotonic timers. Tests give each node its own Clock to skew or step its
// wall clock; under testing/synctest both readings and every timer are
// virtual. Implementations must be safe for concurrent use and cheap: the
// read path calls Monotonic once per read.
type Clock interface {
	// Now returns the wall-clock time.
	Now() time.Time
	// Monotonic returns the time elapsed since the clock was created,
	// never decreasing.
	Monotonic() time.Duration
}

// SystemClock returns the machine's clock: time.Now for the wall reading
// and Go's monotonic clock for the other. It is the default Config.Clock.
func SystemClock() Clock { return systemClock{start: time.Now()} }

type systemClock struct{ start time.Time }

func (c systemClock) Now() time.Time           { return time.Now() }
func (c systemClock) Monotonic() time.Duration { return time.Since(c.start) }

// WallClock returns a Clock whose wall reading is now (a manual clock, or
// the system clock plus an offset) and whose monotonic reading is the
// machine's, unaffected by what now does. Tests use it to skew or step one
// node's wall clock.
func WallClock(now func() time.Time) Clock {
	return wallClock{now: now, mono: systemClock{start: time.Now()}}
}

type wallClock struct {
	now  func() time.Time
	mono systemClock
}

func (c wallClock) Now() time.Time           { return c.now() }
func (c wallClock) Monotonic() time.Duration { return c.mono.Monotonic() }

// SkewedClock returns the system clock with its wall reading moved by
// offset, read on every call (so a test may change it while the store
// runs); the monotonic reading is the machine's. Tests use it to run one
// node ahead of or behind the others, or to step its clock.
func SkewedClock(offset func() time.Duration) Clock {
	return WallClock(func() time.Time { return time.Now().Add(offset()) })
}
