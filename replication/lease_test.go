package replication_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// leaseCluster starts stores a, b and c with Backups(1) and a long
// anti-entropy interval (the guarantees below must not depend on how soon
// repair runs), writes n=1 to 40 sessions and returns their IDs.
func leaseCluster(t *testing.T) (*testcluster.Cluster, []string) {
	c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = replication.Backups(1)
		cfg.AntiEntropyInterval = 10 * time.Second
		return cfg
	}})
	a := c.Start("a")
	c.Start("b")
	c.Start("c")
	c.WaitReady(t)
	c.WaitConverged(t)
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = fmt.Sprintf("lease-session-%03d-xxxxxxxxxxxxxxxxxxxxxxxxxx", i)
		_, err := a.Store.Save(context.Background(), ids[i], replication.Changes{Set: map[string][]byte{"n": []byte("1")}, Lifetime: time.Hour})
		require.NoError(t, err)
	}
	return c, ids
}

// staleReads reads every session on every store and counts, per store,
// the reads that do not show n=2.
func staleReads(t *testing.T, c *testcluster.Cluster, ids []string) map[string]int {
	stale := map[string]int{}
	for _, n := range c.Nodes() {
		for _, id := range ids {
			s, ok, err := n.Store.Get(context.Background(), id)
			require.NoError(t, err)
			v, _ := s.Value("n")
			if !ok || string(v) != "2" {
				stale[n.Name]++
			}
		}
	}
	return stale
}

// A node back from a partition must not answer from the copies it kept
// before it has merged them with the writes made while it was away, even
// when the links to it are slow and anti-entropy is far off.
func TestLease_NodeBackFromPartitionDoesNotServeStaleCopies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, ids := leaseCluster(t)
		a, b, cc := c.Node("a"), c.Node("b"), c.Node("c")
		c.Partition([]string{"c"})
		waitPeers(t, map[*testcluster.Node]int{a: 1, b: 1, cc: 0})
		for _, id := range ids {
			_, err := a.Store.Save(context.Background(), id, replication.Changes{Set: map[string][]byte{"n": []byte("2")}})
			require.NoError(t, err)
		}
		c.Heal()
		for _, o := range []string{"a", "b"} {
			c.Net.Delay(o, "c", 50*time.Millisecond)
			c.Net.Delay("c", o, 50*time.Millisecond)
		}
		waitPeers(t, map[*testcluster.Node]int{a: 2, b: 2, cc: 2})
		assert.Empty(t, staleReads(t, c, ids), "reads per store that missed the write made during the partition (of %d sessions)", len(ids))
	})
}

// waitPeers waits until each store sees the given number of peers.
func waitPeers(t *testing.T, want map[*testcluster.Node]int) {
	t.Helper()
	require.Eventually(t, func() bool {
		for n, peers := range want {
			if n.Store.Stats().Peers != peers {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond)
}

// A member that restarts and rejoins before the failure detector noticed
// the crash replaces its old incarnation in one membership change. The old
// process is gone, and so are the leases it held: writes must not wait
// for them to expire.
func TestLease_RestartedMemberDoesNotHoldUpWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
			cfg := replication.DefaultLocalConfig()
			cfg.WriteTimeout = 10 * time.Second
			cfg.ReadLease = 10 * time.Second // a wait for it would be plain to see
			return cfg
		}})
		a := c.Start("a")
		c.Start("b")
		c.WaitReady(t)
		c.WaitConverged(t)
		ctx := context.Background()
		_, err := a.Store.Save(ctx, "before-the-restart-xxxxxxxxxxxxxxxxxxxxxxxx", put("n", "1"))
		require.NoError(t, err)

		c.Restart("b")
		waitPeers(t, map[*testcluster.Node]int{a: 1})
		elapsed := replication.SystemClock().Monotonic
		_, err = a.Store.Save(ctx, "after-the-restart-xxxxxxxxxxxxxxxxxxxxxxxxx", put("n", "2"))
		require.NoError(t, err)
		assert.Less(t, elapsed(), 2*time.Second, "a write right after b's restart waited for the leases of b's old incarnation")
	})
}

// A node whose own requests get lost, while its peers' requests reach it
// (a link that heals in one direction first, or old connections still
// retransmitting after a partition), hears nothing from its peers, so it
// cannot know that they wrote without it. They send it reads and updates:
// it must neither answer them from its stale copies nor apply updates
// computed from them.
func TestLease_NodeThatCannotReachItsPeersIsNotAuthoritative(t *testing.T) {
	c, ids := leaseCluster(t)
	a, b, cc := c.Node("a"), c.Node("b"), c.Node("c")
	ctx := context.Background()
	// Cut c off; the failure detector has not noticed (yet): every view
	// still holds every node.
	for _, o := range []string{"a", "b"} {
		c.Net.Drop(o, "c", 1)
		c.Net.Drop("c", o, 1)
	}
	for _, id := range ids {
		_, err := a.Store.Save(ctx, id, replication.Changes{Set: map[string][]byte{"n": []byte("2")}})
		require.NoError(t, err)
	}
	// The link heals towards c only.
	c.Net.Drop("a", "c", 0)
	c.Net.Drop("b", "c", 0)
	// c asks for leases every 250 ms and each request fails. For two lease
	// durations no read may answer from c's stale copies: not on c (it
	// may fail instead), not through c on a or b.
	for elapsed := replication.SystemClock().Monotonic; elapsed() < 2*time.Second; {
		for _, n := range []*testcluster.Node{cc, a, b} {
			for _, id := range ids {
				s, ok, err := n.Store.Get(ctx, id)
				if n == cc && errors.Is(err, replication.ErrUnreachable) {
					continue
				}
				require.NoError(t, err)
				v, _ := s.Value("n")
				require.True(t, ok && string(v) == "2", "%s read %s as n=%q from c's stale copy", n.Name, id, v)
			}
		}
	}
	for _, id := range ids {
		_, _, err := b.Store.Update(ctx, id, "n", increment)
		require.NoError(t, err)
	}
	c.Net.Heal()
	c.WaitConverged(t)
	for _, n := range c.Nodes() {
		for _, id := range ids {
			s, _, err := n.Store.Get(ctx, id)
			require.NoError(t, err)
			v, _ := s.Value("n")
			assert.Equal(t, "3", string(v), "session %s on %s: an update was computed from c's stale copy", id, n.Name)
		}
	}
}

// A read through the owners must not take the copy of an owner that knows
// it missed writes when another owner does not answer. Found by the
// cluster simulator: the owners of a session were its writer and an owner
// degraded there over a lossy link; the writer acknowledged a write
// without it, and a read on the third node lost the writer's answer and
// returned the degraded owner's copy, without that write.
func TestLease_ReadDoesNotTakeDegradedOwnersCopyWhenWriterIsUnheard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, ids := leaseCluster(t)
		// A session owned by a and c: b reads it through them.
		var id string
		for _, s := range ids {
			owners := c.Node("a").Store.Partitions()[replication.PartitionOf(s)].Owners
			if slices.Contains(owners, "a") && slices.Contains(owners, "c") {
				id = s
				break
			}
		}
		require.NotEmpty(t, id, "no session owned by a and c among %d", len(ids))
		ctx := context.Background()

		c.Net.Drop("a", "c", 1) // c misses a's write; a fences it and acknowledges
		_, err := c.Node("a").Store.Save(ctx, id, replication.Changes{Set: map[string][]byte{"n": []byte("2")}})
		require.NoError(t, err)
		require.Eventually(t, c.Node("c").Store.MissedWrites, 10*time.Second, 10*time.Millisecond,
			"c learns from a lease answer that it is degraded at a")

		c.Net.Drop("b", "a", 1) // b does not hear the writer
		s, ok, err := c.Node("b").Store.Get(ctx, id)
		if err != nil {
			assert.ErrorIs(t, err, replication.ErrUnreachable)
			return
		}
		require.True(t, ok)
		v, _ := s.Value("n")
		assert.Equal(t, "2", string(v), "b answered with the copy of an owner that missed the write")
	})
}
