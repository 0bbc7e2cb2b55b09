package replication

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPeerClocks_EstimateIsTheQuickestDelivery(t *testing.T) {
	c := newPeerClocks()
	a := memberKey{"a", 1}
	_, ok := c.toLocal(a, 100)
	require.False(t, ok, "no samples yet")

	// a's monotonic clock reads 5 s behind this node's; deliveries take
	// 3, 1 and 7 ms.
	const offset = int64(5 * time.Second)
	for i, delay := range []time.Duration{3 * time.Millisecond, time.Millisecond, 7 * time.Millisecond} {
		sent := int64(i+1) * int64(time.Second)
		c.observe(a, sent, sent+offset+int64(delay))
	}
	got, ok := c.toLocal(a, 0)
	require.True(t, ok)
	assert.Equal(t, offset+int64(time.Millisecond), got)

	c.observe(a, 0, 999) // a build that sends no clock: ignored
	got, _ = c.toLocal(a, 0)
	assert.Equal(t, offset+int64(time.Millisecond), got)

	c.observe(memberKey{"a", 2}, 10, 20) // a restarted: its old clock is forgotten
	got, _ = c.toLocal(memberKey{"a", 2}, 0)
	assert.Equal(t, int64(10), got)
	_, ok = c.toLocal(a, 0)
	assert.False(t, ok)
}

func TestPeerClocks_EstimateFollowsTheRecentWindow(t *testing.T) {
	c := newPeerClocks()
	a := memberKey{"a", 1}
	c.observe(a, 1, 2) // an early, quick sample
	for i := range clockWindow {
		c.observe(a, int64(i)+1, int64(i)+101)
	}
	got, _ := c.toLocal(a, 0)
	assert.Equal(t, int64(100), got, "the early sample left the window")
}

// An update's lateness is judged on the coordinator's monotonic clock,
// whatever the wall clocks say: a caller whose wall clock is minutes off
// is late only when its request really arrives after its budget.
func TestPeerClocks_LateBy(t *testing.T) {
	c := newPeerClocks()
	a := memberKey{"a", 1}
	budget := time.Second
	_, ok := c.lateBy(a, 100, budget, 0)
	require.False(t, ok, "no estimate of a's clock: cannot tell")

	const offset = int64(3 * time.Hour) // monotonic clocks start anywhere
	c.observe(a, 1, 1+offset+int64(time.Millisecond))
	sent := int64(10 * time.Second)
	late, ok := c.lateBy(a, sent, budget, sent+offset+int64(500*time.Millisecond))
	require.True(t, ok)
	assert.LessOrEqual(t, late, time.Duration(0), "arrived after 0.5 s of a 1 s budget")
	late, _ = c.lateBy(a, sent, budget, sent+offset+int64(3*time.Second))
	assert.Greater(t, late, time.Duration(0), "arrived after 3 s: the caller gave up")

	_, ok = c.lateBy(a, 0, budget, 0)
	assert.False(t, ok, "a caller that sent no clock")
}
