package replication_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
)

// TestIdle_NoPollsAndRareLeaseRenewals checks what an idle cluster costs:
// its maintenance rounds poll no peer's status (the lease answers say it
// has not changed) and its leases are renewed every 16 ReadLeases instead
// of every quarter. A request after the idle spell is answered correctly
// and brings the leases back; a write that one owner missed still changes
// the writer's status, is polled and repaired.
func TestIdle_NoPollsAndRareLeaseRenewals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testcluster.New(t, testcluster.Options{Seed: 1}) // ReadLease 1 s, AntiEntropyInterval 500 ms
		for _, n := range []string{"a", "b", "c"} {
			c.Start(n)
		}
		c.WaitReady(t)
		a := c.Node("a")
		const id = "idle-session-xxxxxxxxxxxxxxxxxxxxxxxxxxx"
		_, err := a.Store.Save(context.Background(), id, put("n", "1"))
		require.NoError(t, err)
		c.WaitConverged(t)

		// Idle from 2 ReadLeases after the last request on. Over the next
		// 32 s each of the 6 links carries 2 or 3 lease renewals (4 or 5
		// at the earlier idle pace of 8 ReadLeases); it used to carry 128
		// renewals and 64 status polls.
		time.Sleep(3 * time.Second)
		before := calls(c)
		time.Sleep(32 * time.Second)
		idle := calls(c) - before
		assert.LessOrEqual(t, idle, uint64(6*3), "calls in an idle cluster")

		// Asking every node for its counters each 5 s, as a metrics
		// scraper or a rollout script does, costs nothing: the leases keep
		// the idle pace (at most 2 renewals a link in these 15 s). It used
		// to cost a renewal from every peer of each node asked whose
		// authority had lapsed, 6 calls per scrape; before that, the busy
		// pace, 48.
		before = calls(c)
		for range 3 {
			for _, n := range c.Nodes() {
				_ = n.Store.Stats()
			}
			time.Sleep(5 * time.Second)
		}
		scraped := calls(c) - before
		assert.LessOrEqual(t, scraped, uint64(6*2), "calls in an idle cluster scraped every 5 s")

		// The first read after it is right, and asks for leases again.
		v, ok := value(t, a.Store, id, "n")
		assert.True(t, ok)
		assert.Equal(t, "1", v)
		require.Eventually(t, func() bool { return a.Store.Stats().Authoritative }, time.Second, time.Millisecond,
			"leases did not come back after a request")
		for _, n := range c.Nodes() {
			assert.True(t, n.Store.FullyReplicated(), "%s is not fully replicated after an idle spell", n.Name)
		}

		// A write that b misses changes a's status: a round polls a, and
		// anti-entropy repairs b.
		c.Net.Drop("a", "b", 1)
		_, err = a.Store.Save(context.Background(), "missed-by-b-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", put("n", "2"))
		require.NoError(t, err)
		c.Net.Drop("a", "b", 0)
		c.WaitConverged(t)
	})
}

// calls sums the calls made over every link of c's network.
func calls(c *testcluster.Cluster) uint64 {
	var n uint64
	for _, st := range c.Net.Stats() {
		n += st.Calls
	}
	return n
}

// TestIdle_ViewChangeAsksNoLeases checks that a view change in an idle
// cluster (a SIGKILL, a join) costs no lease renewals, and that the first
// request after it still finds the leases and answers right.
func TestIdle_ViewChangeAsksNoLeases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testcluster.New(t, testcluster.Options{Seed: 2}) // ReadLease 1 s
		for _, n := range []string{"a", "b", "c", "d"} {
			c.Start(n)
		}
		c.WaitReady(t)
		const id = "view-change-session-xxxxxxxxxxxxxxxxxxxx"
		_, err := c.Node("a").Store.Save(context.Background(), id, put("n", "1"))
		require.NoError(t, err)
		c.WaitConverged(t)
		time.Sleep(3 * time.Second) // idle from 2 ReadLeases after the last request

		asked := func() (n uint64) { // by the nodes that stay
			for _, name := range []string{"a", "b", "c"} {
				n += c.Node(name).Store.LeaseRequests()
			}
			return n
		}
		before := asked()
		c.Kill("d")
		time.Sleep(time.Second)
		assert.Zero(t, asked()-before, "lease requests after a view change in an idle cluster")

		v, ok := value(t, c.Node("b").Store, id, "n")
		assert.True(t, ok)
		assert.Equal(t, "1", v)
		require.Eventually(t, func() bool { return c.Node("b").Store.Stats().Authoritative }, time.Second, time.Millisecond,
			"leases did not come back after a request")
		assert.Positive(t, asked()-before)
	})
}
