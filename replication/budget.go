package replication

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
)

// Estimated memory of a record beyond its ID and attribute bytes: the
// record itself, its entry in the partition's map and in the expiry wheel,
// and the allocators' rounding (recordOverhead), and each attribute's
// header and version (attrOverhead). Measured with runtime.MemStats on
// sessions of the login example (TestBudget_BytesEstimate).
const (
	recordOverhead = 180
	attrOverhead   = 64
)

// fallbackMaxBytes is the default of Config.MaxBytes when no memory limit
// can be read: 1 GiB of records, about a million small sessions.
const fallbackMaxBytes = 1 << 30

// memSize returns the estimated memory of r, in bytes.
func (r *record) memSize() int64 {
	n := recordOverhead + len(r.id)
	for i := range r.attrs {
		n += attrOverhead + len(r.attrs[i].name) + len(r.attrs[i].value)
	}
	return int64(n)
}

// usage is what a node's partitions hold: every partition adds and
// removes its records here, under its own lock, so that the budget check
// of a new session is two atomic loads.
type usage struct {
	records atomic.Int64  // records held, tombstones included
	bytes   atomic.Int64  // their estimated memory (memSize)
	changes atomic.Uint64 // every change of what is held (Store.statusGen)
}

// replace accounts for out taking the place of old (nil for none).
func (u *usage) replace(old, out *record) {
	if u == nil {
		return
	}
	u.changes.Add(1)
	if old == nil {
		u.records.Add(1)
	} else {
		u.bytes.Add(-old.memSize())
	}
	u.bytes.Add(out.memSize())
}

// remove accounts for r leaving the partition.
func (u *usage) remove(r *record) {
	if u == nil {
		return
	}
	u.changes.Add(1)
	u.records.Add(-1)
	u.bytes.Add(-r.memSize())
}

// budget is a node's bound on what it holds (Config.MaxSessions and
// MaxBytes; 0: no bound) and the new sessions being written against it.
type budget struct {
	maxSessions, maxBytes int64
	held                  *usage
	// pending counts the new sessions being written on this node, so
	// that concurrent creations cannot all pass a check that only one of
	// them fits.
	pendingSessions, pendingBytes atomic.Int64
	refused                       atomic.Uint64 // new sessions refused
}

// reserve makes room for a new session r, or fails with ErrOverloaded
// when the node holds too much. The caller calls the returned release
// once the write is done (applied or not): the session then counts in
// held where this node owns it.
func (b *budget) reserve(r *record) (release func(), err error) {
	if b.maxSessions <= 0 && b.maxBytes <= 0 {
		return func() {}, nil
	}
	maxSessions, maxBytes := b.maxSessions, b.maxBytes
	if sessionid.Reserved(r.id) {
		// A session admitted under the budget must be able to write its
		// internal records (a principal's index) after its own write:
		// refused then, the session would be half written.
		maxSessions += headroom(maxSessions)
		maxBytes += headroom(maxBytes)
	}
	size := r.memSize()
	n, by := b.pendingSessions.Add(1), b.pendingBytes.Add(size)
	release = func() {
		b.pendingSessions.Add(-1)
		b.pendingBytes.Add(-size)
	}
	held, heldBytes := b.held.records.Load(), b.held.bytes.Load()
	if maxSessions > 0 && held+n > maxSessions || maxBytes > 0 && heldBytes+by > maxBytes {
		release()
		b.refused.Add(1)
		return nil, fmt.Errorf("%w: session %s refused: node holds %d sessions (budget %s) and %d bytes (budget %s)",
			ErrOverloaded, shortID(r.id), held, bound(b.maxSessions), heldBytes, bound(b.maxBytes))
	}
	return release, nil
}

// reservedHeadroom is the part of the budget (1/16) that only records
// with reserved IDs (sessionid.Reserved) may use beyond it.
const reservedHeadroom = 16

// headroom returns what records with reserved IDs may hold beyond limit
// (0: no bound, and no headroom).
func headroom(limit int64) int64 {
	if limit <= 0 {
		return 0
	}
	return limit/reservedHeadroom + 1
}

// bound formats a budget's limit.
func bound(n int64) string {
	if n <= 0 {
		return "none"
	}
	return strconv.FormatInt(n, 10)
}

// defaultMaxBytes returns the default of Config.MaxBytes: half of the Go
// memory limit (GOMEMLIMIT) when one is set, else half of the memory limit
// of the process's cgroup (a container's limit), else fallbackMaxBytes.
// The other half is for everything else a process holds: requests,
// buffers, and the garbage that the collector has not reclaimed yet.
func defaultMaxBytes() int64 {
	if l := debug.SetMemoryLimit(-1); l > 0 && l < math.MaxInt64 {
		return l / 2
	}
	if l := cgroupMemoryLimit(); l > 0 {
		return l / 2
	}
	return fallbackMaxBytes
}

// cgroupMemoryLimit returns the memory limit of the process's cgroup (v2),
// or 0 when it has none or it cannot be read.
func cgroupMemoryLimit() int64 {
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0
	}
	l, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil { // "max": no limit
		return 0
	}
	return l
}
