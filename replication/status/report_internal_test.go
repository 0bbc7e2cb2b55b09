package status

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReporter_Track checks the memory of departed members: noticed when
// they vanish, dropped when they come back, after departedTTL, and beyond
// maxDeparted.
func TestReporter_Track(t *testing.T) {
	r := newReporter(nil, nil)
	t0 := time.Unix(1000, 0)
	ms := func(names ...string) []MemberReport {
		var out []MemberReport
		for _, n := range names {
			out = append(out, MemberReport{Name: n, Addr: n + ":1"})
		}
		return out
	}

	assert.Empty(t, r.track(ms("a", "b", "c"), t0))
	d := r.track(ms("a", "b"), t0.Add(time.Second))
	require.Len(t, d, 1)
	assert.Equal(t, DepartedMember{Name: "c", Addr: "c:1", Since: t0.Add(time.Second)}, d[0])
	d = r.track(ms("a"), t0.Add(2*time.Second))
	require.Len(t, d, 2)
	assert.Equal(t, []string{"b", "c"}, []string{d[0].Name, d[1].Name}, "most recent first")
	assert.Equal(t, t0.Add(time.Second), d[1].Since, "the first notice is kept")

	d = r.track(ms("a", "c"), t0.Add(3*time.Second))
	require.Len(t, d, 1, "c came back")
	assert.Equal(t, "b", d[0].Name)

	assert.Empty(t, r.track(ms("a", "c"), t0.Add(3*time.Second+departedTTL+time.Second)), "forgotten after the TTL")

	var many []string
	for i := range maxDeparted + 10 {
		many = append(many, fmt.Sprintf("m%02d", i))
	}
	r.track(ms(many...), t0)
	assert.Len(t, r.track(nil, t0.Add(time.Second)), maxDeparted)
	assert.Len(t, r.departed, maxDeparted)
}
