package replication_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/replication"
)

// TestSnapshot_LoadedSessionsAreFoundBeforeTheirOwnersHaveThem restarts a
// fleet in the order a stop of every node can leave it: the node that
// kept every session in its snapshot comes back after two empty ones that
// have found each other and hold their partitions completely. Its pushes
// to them are slow; until they arrive, reads on the empty nodes must find
// the sessions on it instead of answering that they do not exist.
func TestSnapshot_LoadedSessionsAreFoundBeforeTheirOwnersHaveThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := snapshotCluster(t, time.Hour, func(_ string, cfg *replication.Config) { cfg.Mode = replication.Backups(1) })
		ctx := context.Background()
		a := c.Start("a")
		c.WaitReady(t)
		f := populate(t, c, "kept", 30)
		require.NoError(t, a.Store.Leave(ctx)) // alone: keeps everything in its snapshot
		c.Kill("a")

		c.Start("b")
		c.Start("c")
		c.WaitConverged(t)
		c.Net.Delay("a", "b", time.Minute)
		c.Net.Delay("a", "c", time.Minute)
		c.Start("a")
		synctest.Wait()
		// Reads on b and c, so that they ask a for leases at the busy
		// pace; then wait until each has asked, and had its answer.
		asked := map[string]uint64{}
		for _, n := range []string{"b", "c"} {
			asked[n] = c.Node(n).Store.LeaseRequests()
			value(t, c.Node(n).Store, "probe-session-xxxxxxxxxxxxxxxxxxxxxxx", "user")
		}
		require.Eventually(t, func() bool {
			return c.Node("b").Store.LeaseRequests() > asked["b"] && c.Node("c").Store.LeaseRequests() > asked["c"]
		}, 5*time.Second, 10*time.Millisecond, "b and c asked a for no lease")
		synctest.Wait()
		require.Equal(t, 30, c.Node("a").Store.Stats().Sessions, "a loaded its snapshot")
		for _, n := range []string{"b", "c"} {
			require.Zero(t, c.Node(n).Store.Stats().Sessions, "%s got a's sessions already", n)
		}
		for _, n := range []string{"b", "c"} {
			for id, want := range f.live {
				v, ok := value(t, c.Node(n).Store, id, "user")
				require.True(t, ok, "%s answered that session %s, held by a only, does not exist", n, id)
				require.Equal(t, want, v)
			}
			for _, id := range f.loggedOut {
				_, ok := value(t, c.Node(n).Store, id, "user")
				require.False(t, ok, "%s brought logged-out session %s back", n, id)
			}
		}

		// Once the pushes arrive, every node holds its share and answers
		// from it: convergence requires every node to be authoritative, so
		// a grants its leases again.
		c.Net.Delay("a", "b", 0)
		c.Net.Delay("a", "c", 0)
		c.WaitConverged(t)
		f.check(t, c)
	})
}
