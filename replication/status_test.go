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

// TestStatus_IdlePeersAreNotPolled checks that the maintenance rounds of an
// idle cluster poll no peer's status (the lease answers say it has not
// changed), and that a change is still polled and repaired: a write that
// one owner missed reaches it by anti-entropy.
func TestStatus_IdlePeersAreNotPolled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testcluster.New(t, testcluster.Options{Seed: 1})
		for _, n := range []string{"a", "b", "c"} {
			c.Start(n)
		}
		c.WaitReady(t)
		a := c.Node("a")
		_, err := a.Store.Save(context.Background(), "idle-session-xxxxxxxxxxxxxxxxxxxxxxxxxxx", put("n", "1"))
		require.NoError(t, err)
		c.WaitConverged(t)

		// Over 10 s, each of the 6 links carries 40 lease renewals (every
		// ReadLease/4, 250 ms); the 20 rounds (AntiEntropyInterval, 500 ms)
		// used to add 20 status polls.
		// The rounds right after convergence still poll: they run every
		// 50 ms while the cluster settles, before lease answers carry
		// the settled generations. Measure from a second later.
		time.Sleep(time.Second)
		before := calls(c)
		time.Sleep(10 * time.Second)
		idle := calls(c) - before
		assert.LessOrEqual(t, idle, uint64(6*41), "calls in an idle cluster beyond its lease renewals")
		for _, n := range c.Nodes() {
			assert.True(t, n.Store.FullyReplicated(), "%s is not fully replicated while idle", n.Name)
		}

		// A write that b misses changes a's status: the next round polls a,
		// and anti-entropy repairs b.
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
