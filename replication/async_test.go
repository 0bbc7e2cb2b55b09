package replication_test

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

func asyncCluster(t *testing.T, seed int64, mode replication.Mode, names ...string) *testcluster.Cluster {
	c := testcluster.New(t, testcluster.Options{Seed: seed, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = mode
		cfg.WriteConcern = replication.Async
		cfg.AntiEntropyInterval = 50 * time.Millisecond
		cfg.MaxReadWait = 2 * time.Second
		return cfg
	}})
	for _, n := range names {
		c.Start(n)
	}
	c.WaitConverged(t)
	return c
}

func delayAll(c *testcluster.Cluster, d time.Duration) {
	for _, a := range c.Nodes() {
		for _, b := range c.Nodes() {
			if a != b {
				c.Net.Delay(a.Name, b.Name, d)
			}
		}
	}
}

// In virtual time (testing/synctest): the write returns without any time
// passing, although every link is 300 ms slow.
func TestAsync_SaveDoesNotWaitForPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := asyncCluster(t, 21, replication.AllToAll, "a", "b", "c")
		delayAll(c, 300*time.Millisecond)
		elapsed := replication.SystemClock().Monotonic
		_, err := c.Node("a").Store.Save(context.Background(), "s", put("k", "v"))
		require.NoError(t, err)
		assert.Zero(t, elapsed())
		c.Net.Heal()
		c.WaitConverged(t)
	})
}

// TestAsync_ReadYourWritesAcrossNodes writes on one node and reads on the
// next with the version of the write, while replication lags behind: no
// read may miss the write it follows.
func TestAsync_ReadYourWritesAcrossNodes(t *testing.T) {
	for _, mode := range []replication.Mode{replication.AllToAll, replication.Backups(1)} {
		t.Run(mode.String(), func(t *testing.T) {
			c := asyncCluster(t, 22, mode, nodeNames(4)...)
			delayAll(c, 20*time.Millisecond)
			ctx := context.Background()
			nodes := c.Nodes()
			var behind uint64
			for i := 0; i < 40; i++ {
				id := fmt.Sprint("user-", i%5)
				want := fmt.Sprint(i)
				v, err := nodes[i%4].Store.Save(ctx, id, put("n", want))
				require.NoError(t, err)
				reader := nodes[(i+1)%4].Store
				sess, ok, err := reader.GetAtLeast(ctx, id, v)
				require.NoError(t, err)
				require.True(t, ok, "write %d not visible on the next node", i)
				got, _ := sess.Value("n")
				require.Equal(t, want, string(got), "stale read after write %d", i)
				require.GreaterOrEqual(t, sess.Version(), v)
			}
			for _, n := range nodes {
				st := n.Store.Stats()
				behind += st.BehindReads
				assert.Zero(t, st.StaleReads)
			}
			assert.Positive(t, behind, "replication lagged behind the reads, so some had to wait")
			c.Net.Heal()
			c.WaitConverged(t)
		})
	}
}

// An asynchronous write carries the recent attributes it builds on: a
// replica that gets it before an earlier write made elsewhere (on another
// sender, over a slower link) does not pass GetAtLeast for its version
// without them. Found by the cluster simulator: a login's attributes were
// missing from a copy that already held the next write.
func TestAsync_WriteCarriesTheRecentWritesItBuildsOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := asyncCluster(t, 24, replication.AllToAll, "a", "b", "c")
		ctx := context.Background()
		a, b, cs := c.Node("a").Store, c.Node("b").Store, c.Node("c").Store
		c.Net.Delay("a", "c", time.Second) // the login reaches c late
		login, err := a.Save(ctx, "s", put("user", "u1"))
		require.NoError(t, err)
		_, ok, err := b.GetAtLeast(ctx, "s", login)
		require.NoError(t, err)
		require.True(t, ok)
		next, err := b.Save(ctx, "s", put("w", "1"))
		require.NoError(t, err)
		synctest.Wait() // b's write is on c; a's login is not
		sess, ok, err := cs.GetAtLeast(ctx, "s", next)
		require.NoError(t, err)
		require.True(t, ok)
		user, _ := sess.Value("user")
		assert.Equal(t, "u1", string(user), "c answered at the version of b's write without the login it built on")
		c.Net.Heal()
		c.WaitConverged(t)
	})
}

// A read that waits for a write that cannot reach its node gives up after
// MaxReadWait; when it holds no copy of the session at all, it fails
// rather than log the user out.
func TestAsync_ReadWaitIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testcluster.New(t, testcluster.Options{Seed: 23, Config: func(string) replication.Config {
			cfg := replication.DefaultLocalConfig()
			cfg.WriteConcern = replication.Async
			cfg.MaxReadWait = 100 * time.Millisecond
			return cfg
		}})
		c.Start("a")
		c.Start("b")
		c.WaitReady(t)
		// b answers from its own copy (it holds a's lease) when the link goes:
		// otherwise the read fails, as no owner is reachable.
		require.Eventually(t, func() bool { return c.Node("b").Store.Stats().Authoritative }, 5*time.Second, time.Millisecond)
		c.Partition([]string{"a"}, []string{"b"})
		ctx := context.Background()
		v, err := c.Node("a").Store.Save(ctx, "s", put("k", "v"))
		require.NoError(t, err)
		elapsed := replication.SystemClock().Monotonic
		_, _, err = c.Node("b").Store.GetAtLeast(ctx, "s", v)
		require.ErrorIs(t, err, replication.ErrUnreachable, "b cannot know the write, and must not answer that there is no such session")
		assert.Less(t, elapsed(), time.Second)
		assert.Equal(t, uint64(1), c.Node("b").Store.Stats().StaleReads)
	})
}

func TestSync_VersionsGrowWithEveryWrite(t *testing.T) {
	c := startCluster(t, "a", "b")
	ctx := context.Background()
	var last replication.Version
	for i := 0; i < 10; i++ {
		v, err := c.Nodes()[i%2].Store.Save(ctx, "s", put("n", fmt.Sprint(i)))
		require.NoError(t, err)
		require.Greater(t, v, last)
		last = v
		p, err := replication.ParseVersion(v.String())
		require.NoError(t, err)
		require.Equal(t, v, p)
	}
	_, err := replication.ParseVersion("not a version!")
	require.Error(t, err)
}

// Versions come from clients' cookies: made-up ones must not make a node
// wait (long) for writes that never happened.
func TestAsync_MadeUpVersionsDoNotHoldReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := asyncCluster(t, 24, replication.AllToAll, "a", "b")
		ctx := context.Background()
		b := c.Node("b").Store
		v, err := c.Node("a").Store.Save(ctx, "s", put("k", "v"))
		require.NoError(t, err)
		for name, made := range map[string]replication.Version{
			"an hour ahead": v + replication.Version(time.Hour.Milliseconds()<<16),
			"a day ago":     v - replication.Version((24*time.Hour).Milliseconds()<<16),
		} {
			elapsed := replication.SystemClock().Monotonic
			_, _, err := b.GetAtLeast(ctx, "unknown-session", made)
			require.NoError(t, err)
			assert.Less(t, elapsed(), 100*time.Millisecond, "%s: answered without waiting", name)
		}
		assert.Equal(t, uint64(2), b.Stats().StaleReads)
		c.Net.Heal()
	})
}

func TestStore_DeletingWhatIsNotThereWritesNoTombstone(t *testing.T) {
	c := startCluster(t, "a")
	ctx := context.Background()
	s := c.Node("a").Store
	require.NoError(t, errOf(s.Save(ctx, "s", put("k", "v"))))
	before := s.Digest()
	require.NoError(t, errOf(s.Save(ctx, "s", replication.Changes{Delete: []string{"never-set"}})))
	assert.Equal(t, before, s.Digest(), "no tombstone for an attribute that was never set")
	require.NoError(t, errOf(s.Save(ctx, "s", replication.Changes{Delete: []string{"k"}})))
	assert.NotEqual(t, before, s.Digest())
}
