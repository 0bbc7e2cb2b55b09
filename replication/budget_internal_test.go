package replication

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
	"github.com/sessionmesh/sessionmesh/internal/sessionid"
)

// TestBudget_BytesEstimate fills partitions with logins as the login
// example makes them (a session with a user name and a visit count, and
// the tombstone of the ID it had before login) and checks that the
// estimate the budget counts is within 15% of the heap they take.
func TestBudget_BytesEstimate(t *testing.T) {
	if testing.Short() {
		t.Skip("measures the heap")
	}
	const logins = 50_000
	u := &usage{}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	parts := newPartitions(u)
	now := int64(1_700_000_000_000)
	for i := range logins {
		v := version{time: hlcTS(now, i), node: 1}
		s := &record{id: sessionid.New(), created: now, expires: now + 86_400_000, idleMs: 1_800_000, idleUntil: now + 1_800_000,
			attrs: []attr{{name: "user", value: []byte(`"user-` + strconv.Itoa(i) + `"`), version: v}, {name: "visits", value: []byte(strconv.Itoa(i % 100)), version: v}}}
		tomb := &record{id: sessionid.New(), destroyed: true, renamed: now, created: now, expires: now + 86_400_000}
		parts[partitionOf(s.id)].apply(s, now)
		parts[partitionOf(tomb.id)].apply(tomb, now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	est := u.bytes.Load()
	t.Logf("%d records: heap %d bytes (%d per login), estimate %d (%d per login)", u.records.Load(), heap, heap/logins, est, est/logins)
	assert.Equal(t, int64(2*logins), u.records.Load())
	assert.InEpsilon(t, heap, est, 0.15, fmt.Sprintf("heap %d, estimate %d", heap, est))
	runtime.KeepAlive(parts)
}

func hlcTS(now int64, i int) hlc.Timestamp { return hlc.Timestamp(uint64(now)<<16 | uint64(i&0xffff)) }

// TestUsage_FollowsEveryChange checks that what the partitions account in
// their usage is what they hold, through merges, compare-and-sets,
// hand-offs and expiry.
func TestUsage_FollowsEveryChange(t *testing.T) {
	u := &usage{}
	parts := newPartitions(u)
	now := int64(1_700_000_000_000)
	check := func(step string) {
		t.Helper()
		var n, b int64
		for _, p := range parts {
			for _, r := range p.snapshot() {
				n++
				b += r.memSize()
			}
		}
		assert.Equal(t, n, u.records.Load(), step)
		assert.Equal(t, b, u.bytes.Load(), step)
	}
	var all []*record
	for i := range 200 {
		v := version{time: hlcTS(now, i), node: 1}
		r := &record{id: fmt.Sprint("s", i), expires: now + int64(1000*(1+i%3)), attrs: []attr{{name: "a", value: []byte("x"), version: v}}}
		out, _, _ := parts[partitionOf(r.id)].apply(r, now)
		all = append(all, out)
	}
	check("created")
	for i := range 100 {
		id := fmt.Sprint("s", i)
		v := version{time: hlcTS(now, 1000+i), node: 1}
		parts[partitionOf(id)].apply(&record{id: id, attrs: []attr{{name: "b", value: []byte("longer value"), version: v}}}, now)
		parts[partitionOf(id)].update(id, func(cur *record) *record {
			return &record{id: id, attrs: []attr{{name: "a", value: []byte("xyz"), version: version{time: hlcTS(now, 2000+i), node: 1}}}}
		})
	}
	check("merged")
	for _, p := range parts {
		p.dropUnchanged(all[150:])
	}
	check("handed off")
	for _, p := range parts {
		p.sweep(now+2500, nil)
	}
	check("expired")
	assert.Positive(t, u.records.Load())
}
