// Package hlc implements a hybrid logical clock: timestamps that follow the
// wall clock when it moves forward, never go backwards, and stay ordered
// across nodes whose clocks disagree (Kulkarni et al., "Logical Physical
// Clocks", 2014; the shape follows cockroach's pkg/util/hlc).
//
// A Timestamp packs milliseconds since the Unix epoch into the upper 48 bits
// and a logical counter into the lower 16, so timestamps compare as plain
// integers and cost 8 bytes on the wire. When more than 65,535 events fall in
// one millisecond the counter carries into the millisecond field: the clock
// runs slightly ahead of the wall clock for a moment but stays monotonic.
//
// The physical clock is injected (Clock.now), so tests drive it by hand with
// ManualClock.
package hlc

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// logicalBits is the number of low bits of a Timestamp that count events
// within one millisecond.
const logicalBits = 16

// Timestamp is a hybrid logical clock reading: wall milliseconds in the upper
// 48 bits, a logical counter in the lower 16. The zero Timestamp is earlier
// than every reading of a Clock.
type Timestamp uint64

// FromTime returns the earliest Timestamp whose physical part is t.
func FromTime(t time.Time) Timestamp {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return Timestamp(uint64(ms) << logicalBits)
}

// Time returns the physical part of ts.
func (ts Timestamp) Time() time.Time {
	return time.UnixMilli(int64(uint64(ts) >> logicalBits))
}

// Logical returns the logical counter of ts.
func (ts Timestamp) Logical() uint16 {
	return uint16(ts)
}

// String formats ts as "<RFC 3339 time>+<logical>".
func (ts Timestamp) String() string {
	return fmt.Sprintf("%s+%d", ts.Time().UTC().Format("2006-01-02T15:04:05.000Z"), ts.Logical())
}

// ErrClockJump is returned by Clock.Update for a remote timestamp that is
// further ahead of the local wall clock than the clock's maximum offset.
var ErrClockJump = errors.New("hlc: remote timestamp too far ahead of local clock")

// Clock issues Timestamps. It is safe for concurrent use.
type Clock struct {
	now       func() time.Time
	maxOffset time.Duration

	mu   sync.Mutex
	last Timestamp // guards: the largest timestamp issued or observed
}

// NewClock returns a Clock that reads physical time from now (time.Now when
// nil) and refuses to adopt remote timestamps more than maxOffset ahead of
// it. A maxOffset of zero disables the check.
func NewClock(now func() time.Time, maxOffset time.Duration) *Clock {
	if now == nil {
		now = time.Now
	}
	return &Clock{now: now, maxOffset: maxOffset}
}

// Now returns a Timestamp greater than every Timestamp this clock has issued
// or observed through Update.
func (c *Clock) Now() Timestamp {
	phys := FromTime(c.now())
	c.mu.Lock()
	defer c.mu.Unlock()
	if phys > c.last {
		c.last = phys
	} else {
		c.last++
	}
	return c.last
}

// Update records a timestamp seen in a message from another node, so that
// every later Now is greater than it. A timestamp more than the maximum
// offset ahead of the local wall clock is not adopted: Update returns
// ErrClockJump and the clock is unchanged.
func (c *Clock) Update(remote Timestamp) error {
	if c.maxOffset > 0 {
		limit := FromTime(c.now().Add(c.maxOffset))
		if remote > limit {
			return fmt.Errorf("%w: %s is more than %s ahead", ErrClockJump, remote, c.maxOffset)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if remote > c.last {
		c.last = remote
	}
	return nil
}

// Last returns the largest timestamp issued or observed so far.
func (c *Clock) Last() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// ManualClock is a physical clock for tests that moves only when told to.
// It is safe for concurrent use.
type ManualClock struct {
	mu  sync.Mutex
	now time.Time // guards: the current reading
}

// NewManualClock returns a ManualClock reading t.
func NewManualClock(t time.Time) *ManualClock {
	return &ManualClock{now: t}
}

// Now returns the current reading. Pass it to NewClock.
func (m *ManualClock) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Advance moves the clock forward by d (backwards when d is negative).
func (m *ManualClock) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = m.now.Add(d)
}

// Set sets the current reading to t.
func (m *ManualClock) Set(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = t
}
