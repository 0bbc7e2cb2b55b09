// Package leaktest checks a test binary for leaked goroutines, with the
// grace period memberlist needs.
//
// Every Close in this module waits for the goroutines it owns, but
// memberlist's outlive its Shutdown for a while: a probe in flight waits
// for its ack timer (up to 8 probe intervals) and a stream handler for its
// TCP timeout. goleak's own retries last about half a second, so packages
// whose tests run memberlist use VerifyTestMain from here:
//
//	func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
//
// A goroutine that never ends still fails the run.
package leaktest

import (
	"testing"
	"time"

	"go.uber.org/goleak"
)

// grace is how long goroutines get to end after the tests before they
// count as leaked.
const grace = 15 * time.Second

// VerifyTestMain runs the tests, waits up to 15 s for goroutines to end,
// then fails the binary if any is left (goleak.VerifyTestMain). opts are
// passed to goleak, e.g. to ignore a dependency's goroutine that never
// ends.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	goleak.VerifyTestMain(graceM{m, opts}, opts...)
}

type graceM struct {
	m    *testing.M
	opts []goleak.Option
}

func (g graceM) Run() int {
	code := g.m.Run()
	for deadline := time.Now().Add(grace); time.Now().Before(deadline); {
		if goleak.Find(g.opts...) == nil {
			break
		}
	}
	return code
}
