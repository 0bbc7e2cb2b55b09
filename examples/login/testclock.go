package main

import (
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/replication"
)

// testClockEnv names a file that holds a duration ("5s", "-2m"), for tests
// only: the store's wall clock then runs that far from the machine's, and
// rewriting the file steps it while the server runs. It exists so that
// multi-process tests can give each server its own clock; never set it in
// production, where the clock is the machine's.
const testClockEnv = "SESSIONMESH_TEST_CLOCK_FILE"

// testClock returns the store clock named by testClockEnv, or nil when it
// is not set.
func testClock() replication.Clock {
	path := os.Getenv(testClockEnv)
	if path == "" {
		return nil
	}
	f := &offsetFile{path: path}
	return replication.WallClock(func() time.Time { return time.Now().Add(f.offset()) })
}

// offsetFile reads an offset from a file, at most every 50 ms.
type offsetFile struct {
	path string

	mu   sync.Mutex
	last time.Time     // guards: when the file was last read
	off  time.Duration // guards: what it said
}

func (f *offsetFile) offset() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.last) < 50*time.Millisecond {
		return f.off
	}
	f.last = time.Now()
	if b, err := os.ReadFile(f.path); err == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
			f.off = d
		}
	}
	return f.off
}
