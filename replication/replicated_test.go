package replication_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/meshtest"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// TestFullyReplicated_FalseAtOnceWhenAnOwnerDies kills one of five real
// nodes (TCP, memberlist) in Backups(1) mode and checks that every
// survivor stops reporting itself fully replicated within 50 ms, long
// before the membership notices, and does not report it again until the
// dead node owns nothing in its view and its copies are restored.
func TestFullyReplicated_FalseAtOnceWhenAnOwnerDies(t *testing.T) {
	nodes := meshtest.Start(t, 5, meshtest.Options{Store: func(_ string, cfg *replication.Config) {
		cfg.Mode = replication.Backups(1)
	}})
	ctx := context.Background()
	for i := range 100 {
		require.NoError(t, errOf(nodes[i%5].Store.Save(ctx, fmt.Sprint("s", i), put("user", "u"))))
	}
	survivors := nodes[:4]
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if !n.Store.FullyReplicated() {
				return false
			}
		}
		return true
	}, 20*time.Second, time.Millisecond, "fully replicated before the kill")

	sinceKill := replication.SystemClock().Monotonic
	nodes[4].Kill()
	falseAfter := make([]time.Duration, len(survivors))
	require.Eventually(t, func() bool {
		done := true
		for i, n := range survivors {
			asked := sinceKill()
			if falseAfter[i] == 0 {
				if !n.Store.FullyReplicated() {
					falseAfter[i] = sinceKill()
				} else {
					// A busy machine may delay this goroutine, never
					// the store's state: only what is read after the
					// bound counts.
					assert.Less(t, asked, 50*time.Millisecond, "%s fully replicated after the kill", n.Name)
				}
			}
			done = done && falseAfter[i] != 0
		}
		return done
	}, 5*time.Second, 100*time.Microsecond)
	t.Logf("not fully replicated after %v", falseAfter)

	// False until the dead node owns nothing in the view and
	// re-replication is done: never true while a survivor still counts it
	// as an owner. (Its refused connections take its partitions away
	// before the membership drops it.)
	dead := nodes[4].Name
	require.Eventually(t, func() bool {
		all := true
		for _, n := range survivors {
			if n.Store.FullyReplicated() {
				for _, p := range n.Store.Partitions() {
					if !assert.NotContains(t, p.Owners, dead, "%s reports fully replicated with the dead node an owner", n.Name) {
						return true
					}
				}
			} else {
				all = false
			}
		}
		return all
	}, 20*time.Second, time.Millisecond)
	t.Logf("fully replicated again %v after the kill", sinceKill())
	for i := range 100 {
		_, ok, err := survivors[i%4].Store.Get(ctx, fmt.Sprint("s", i))
		require.NoError(t, err)
		require.True(t, ok, "s%d", i)
	}
}

// TestFullyReplicated_SoonAfterAKillInAnIdleCluster kills an owner in an
// idle cluster and checks, in virtual time, that every survivor is fully
// replicated again within half a second of the kill. A node learns that a
// peer's status changed from the peer's lease answers, which come at best
// every ReadLease/4 (a second here) and far less often when idle; the new
// owners' statuses must be polled as they copy instead. (Without that, 3
// of these 3 seeds take 1.1 s.)
func TestFullyReplicated_SoonAfterAKillInAnIdleCluster(t *testing.T) {
	for _, seed := range []int64{2, 3, 4} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { killInAnIdleCluster(t, seed) })
		})
	}
}

func killInAnIdleCluster(t *testing.T, seed int64) {
	const lease = 4 * time.Second
	c := testcluster.New(t, testcluster.Options{Seed: seed, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = replication.Backups(1)
		cfg.AntiEntropyInterval = 5 * time.Second
		cfg.WriteTimeout, cfg.ReadLease = lease, lease
		return cfg
	}})
	names := []string{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7"}
	for _, n := range names {
		c.Start(n)
	}
	c.WaitConverged(t)
	ctx := context.Background()
	for i := range 200 {
		require.NoError(t, errOf(c.Node(names[i%len(names)]).Store.Save(ctx, fmt.Sprint("s", i), put("user", "u"))))
	}
	c.WaitConverged(t)
	time.Sleep(3 * lease) // no requests: the nodes renew their leases at the idle pace

	killed := time.Now()
	c.Kill("n3")
	c.WaitConverged(t)
	took := time.Since(killed)
	t.Logf("fully replicated again %v after the kill", took)
	assert.Less(t, took, 500*time.Millisecond)
}
