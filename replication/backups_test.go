package replication_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/memnet"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/transport"
)

// shortLeases shortens read leases, for tests that make many writes miss
// an owner on purpose: each such write waits out the owner's lease.
func shortLeases(cfg *replication.Config) { cfg.ReadLease = 50 * time.Millisecond }

func modeCluster(t *testing.T, seed int64, mode replication.Mode, names ...string) *testcluster.Cluster {
	return modeClusterWith(t, seed, mode, nil, names...)
}

// modeClusterWith is modeCluster with tweak applied to every node's
// configuration.
func modeClusterWith(t *testing.T, seed int64, mode replication.Mode, tweak func(*replication.Config), names ...string) *testcluster.Cluster {
	// Maintenance rounds poll every peer: pace them to the cluster size.
	interval := time.Duration(10*len(names)) * time.Millisecond
	c := testcluster.New(t, testcluster.Options{Seed: seed, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = mode
		cfg.AntiEntropyInterval = interval
		if tweak != nil {
			tweak(&cfg)
		}
		return cfg
	}})
	for _, n := range names {
		c.Start(n)
	}
	c.WaitConverged(t)
	return c
}

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%02d", i)
	}
	return out
}

// requireAllReadable checks that every node serves sessions 0..n-1 with
// their value.
func requireAllReadable(t *testing.T, c *testcluster.Cluster, n int) {
	t.Helper()
	for _, node := range c.Nodes() {
		for i := 0; i < n; i++ {
			v, ok := value(t, node.Store, fmt.Sprint("s", i), "n")
			require.True(t, ok, "node %s lost session %d", node.Name, i)
			require.Equal(t, fmt.Sprint(i), v)
		}
	}
}

func writeSessions(t *testing.T, c *testcluster.Cluster, n int) {
	t.Helper()
	nodes := c.Nodes()
	for i := 0; i < n; i++ {
		require.NoError(t, errOf(nodes[i%len(nodes)].Store.Save(context.Background(), fmt.Sprint("s", i), put("n", fmt.Sprint(i)))))
	}
}

func totalSessions(c *testcluster.Cluster) int {
	total := 0
	for _, n := range c.Nodes() {
		total += n.Store.Stats().Sessions
	}
	return total
}

func TestBackups_EverySessionHasExactlyItsCopies(t *testing.T) {
	c := modeCluster(t, 1, replication.Backups(1), nodeNames(5)...)
	writeSessions(t, c, 300)
	assert.Equal(t, 600, totalSessions(c), "a primary and one backup of each session, nothing elsewhere")
	requireAllReadable(t, c, 300)
	c.WaitConverged(t)
	for _, n := range c.Nodes() {
		st := n.Store.Stats()
		assert.Less(t, st.Sessions, 300, "node %s holds a share, not everything", n.Name)
		assert.Positive(t, st.RemoteReads, "node %s read sessions it does not own through their owners", n.Name)
	}
}

func TestBackups_AllToAllWhenTooFewMembers(t *testing.T) {
	c := modeCluster(t, 2, replication.Backups(2), "a", "b")
	writeSessions(t, c, 50)
	assert.Equal(t, 100, totalSessions(c), "with n+1 members or fewer every member owns everything")
}

func TestBackups_KillThenReReplicateThenKillAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := modeCluster(t, 3, replication.Backups(1), nodeNames(5)...)
		writeSessions(t, c, 300)
		elapsed := replication.SystemClock().Monotonic
		c.Kill("n01")
		c.WaitConverged(t)
		t.Logf("300 sessions fully replicated again %v after a kill", elapsed())
		requireAllReadable(t, c, 300)
		assert.Equal(t, 600, totalSessions(c))
		c.Kill("n03")
		requireAllReadable(t, c, 300)
		c.WaitConverged(t)
		assert.Equal(t, 600, totalSessions(c))
	})
}

func TestBackups_JoinMovesPartitionsAndDropsOldCopies(t *testing.T) {
	c := modeCluster(t, 4, replication.Backups(1), "n00", "n01", "n02")
	writeSessions(t, c, 300)
	c.Start("n03")
	c.Start("n04")
	requireAllReadable(t, c, 300) // also while the newcomers copy
	c.WaitConverged(t)
	assert.Equal(t, 600, totalSessions(c), "old owners dropped what moved")
	assert.Positive(t, c.Node("n03").Store.Stats().Sessions)
	var handedOff uint64
	for _, n := range c.Nodes() {
		handedOff += n.Store.Stats().HandedOff
	}
	assert.Positive(t, handedOff)
	requireAllReadable(t, c, 300)
}

// A rolling restart where each node leaves gracefully loses nothing, even
// with a single copy of each session.
func TestBackups_RollingRestartWithZeroBackupsLosesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := modeCluster(t, 5, replication.Backups(0), nodeNames(4)...)
		writeSessions(t, c, 200)
		assert.Equal(t, 200, totalSessions(c))
		for _, name := range nodeNames(4) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			require.NoError(t, c.Node(name).Store.Leave(ctx))
			cancel()
			assert.Zero(t, c.Node(name).Store.Stats().Sessions, "%s handed everything over", name)
			c.Kill(name)
			requireAllReadable(t, c, 200)
			c.Start(name)
			c.WaitConverged(t)
		}
		requireAllReadable(t, c, 200)
		assert.Equal(t, 200, totalSessions(c))
	})
}

func TestBackups_WritesDuringLeaveAreKept(t *testing.T) {
	c := modeCluster(t, 6, replication.Backups(0), nodeNames(3)...)
	writeSessions(t, c, 100)
	leaver := c.Node("n01").Store
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- leaver.Leave(ctx)
	}()
	ctx := context.Background()
	for i := 100; i < 200; i++ {
		require.NoError(t, errOf(c.Nodes()[i%3].Store.Save(ctx, fmt.Sprint("s", i), put("n", fmt.Sprint(i)))))
	}
	require.NoError(t, <-done)
	// Writes that reached the leaving node after its hand-off started are
	// handed over by another round before Leave returns.
	require.NoError(t, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return leaver.Leave(ctx)
	}())
	c.Kill("n01")
	requireAllReadable(t, c, 200)
}

func TestBackups_AntiEntropyRepairsDroppedWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Every write that misses an owner repaired since its last miss waits
		// out that owner's read lease: short leases keep this run short.
		c := modeClusterWith(t, 7, replication.Backups(1), shortLeases, nodeNames(5)...)
		for _, from := range nodeNames(5) {
			for _, to := range nodeNames(5) {
				if from != to {
					c.Net.DropResponses(from, to, 0.2) // applied, but the writer hears nothing
					c.Net.Drop(from, to, 0.1)          // never applied
				}
			}
		}
		ctx := context.Background()
		for i := 0; i < 300; i++ {
			_, _ = c.Nodes()[i%5].Store.Save(ctx, fmt.Sprint("s", i), put("n", fmt.Sprint(i)))
		}
		c.Net.Heal()
		c.WaitConverged(t)
		// Every session that reached at least one owner is now on both.
		for _, n := range c.Nodes() {
			assert.Zero(t, n.Store.Stats().HeldPartitions)
		}
	})
}

// TestBackups_BytesPerWrite measures the replication traffic of one write
// (a non-owner reads the session from its owner first, then writes to
// every owner) in clusters of 3, 5 and 9 nodes: flat with Backups(1),
// growing with the cluster in AllToAll mode.
func TestBackups_BytesPerWrite(t *testing.T) {
	const writes = 300
	measure := func(mode replication.Mode, nodes int) float64 {
		c := testcluster.New(t, testcluster.Options{Seed: int64(nodes), Config: func(string) replication.Config {
			cfg := replication.DefaultLocalConfig()
			cfg.Mode = mode
			cfg.AntiEntropyInterval = time.Hour // no background traffic while measuring
			return cfg
		}})
		for _, n := range nodeNames(nodes) {
			c.Start(n)
		}
		c.WaitReady(t)
		sum := func() uint64 {
			var b uint64
			for _, st := range c.Net.Stats() {
				b += st.RequestBytes + st.ResponseBytes
			}
			return b
		}
		// The nodes merge with each other once after the last join (a
		// view change asks every node to; the request arrives with a lease
		// renewal): wait until only lease renewals are left, tens of KiB
		// per 300 ms where a round of status polls is hundreds, twice in a
		// row, longer than a renewal period.
		last, quiet := sum(), 0
		require.Eventually(t, func() bool {
			now := sum()
			if now-last < 32<<10 {
				quiet++
			} else {
				quiet = 0
			}
			last = now
			return quiet >= 2
		}, 10*time.Second, 300*time.Millisecond, "background traffic did not settle")
		before := sum()
		value := make([]byte, 1024)
		ctx := context.Background()
		ns := c.Nodes()
		for i := 0; i < writes; i++ {
			id := fmt.Sprintf("session-%04d", i)
			require.NoError(t, errOf(ns[i%len(ns)].Store.Save(ctx, id, replication.Changes{Set: map[string][]byte{"v": value}, Lifetime: time.Hour})))
		}
		perWrite := float64(sum()-before) / writes
		c.Close()
		return perWrite
	}
	results := map[string][]float64{}
	for _, mode := range []replication.Mode{replication.Backups(1), replication.AllToAll} {
		for _, n := range []int{3, 5, 9} {
			b := measure(mode, n)
			results[mode.String()] = append(results[mode.String()], b)
			t.Logf("%-11s %d nodes: %6.0f bytes of replication traffic per 1 KiB write", mode, n, b)
		}
	}
	// With Backups(1) a write reaches 2 owners: from an owner, 1 copy
	// travels; from a non-owner, 2 (plus the read of the session). The
	// share of non-owners grows with the cluster, so the cost rises
	// towards 2 copies and stays there.
	b1, all := results["backups(1)"], results["all-to-all"]
	for i, b := range b1 {
		assert.Less(t, b, 2.2*1024, "backups(1), %d nodes: at most 2 copies of a 1 KiB write", []int{3, 5, 9}[i])
	}
	assert.Less(t, b1[2], 1.5*b1[0], "backups(1): 9 nodes cost about what 3 do")
	assert.Greater(t, all[2], 3*all[0], "all-to-all: 9 nodes cost 4x what 3 do")
}

// TestBackups_TwentyNodesRandomKillsAndJoins kills and starts nodes at
// random (waiting for full replication before each kill, as the copy count
// demands) and checks the cluster converges with every session on exactly
// its owners.
func TestBackups_TwentyNodesRandomKillsAndJoins(t *testing.T) {
	if testing.Short() {
		t.Skip("20 nodes")
	}
	rng := rand.New(rand.NewPCG(42, 42))
	c := modeCluster(t, 8, replication.Backups(1), nodeNames(20)...)
	writeSessions(t, c, 500)
	next := 20
	for step := 0; step < 8; step++ {
		live := c.Nodes()
		if rng.IntN(2) == 0 && len(live) > 4 {
			c.Kill(live[rng.IntN(len(live))].Name)
		} else {
			c.Start(fmt.Sprintf("n%02d", next))
			next++
		}
		c.WaitConverged(t)
	}
	assert.Equal(t, 1000, totalSessions(c))
	requireAllReadable(t, c, 500)
}

var _ transport.Transport = (*memnet.Node)(nil)

// FullyReplicated must not report a count made before a failure: once a
// node has taken a crash into its membership, it reports false until the
// survivors have re-replicated.
func TestBackups_FullyReplicatedTurnsFalseWhenAMemberFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := modeCluster(t, 1, replication.Backups(1), "a", "b", "c")
		a, b := c.Node("a"), c.Node("b")
		ctx := context.Background()
		for i := range 50 {
			_, err := a.Store.Save(ctx, fmt.Sprint("s", i), put("k", "v"))
			require.NoError(t, err)
		}
		c.WaitConverged(t)
		require.True(t, a.Store.FullyReplicated())
		// Slow links keep the re-replication from finishing at once.
		c.Net.Delay("a", "b", 200*time.Millisecond)
		c.Net.Delay("b", "a", 200*time.Millisecond)

		c.Kill("c")
		waitPeers(t, map[*testcluster.Node]int{a: 1})
		assert.False(t, a.Store.FullyReplicated(), "a reported the count from before the crash")
		c.Net.Heal()
		require.Eventually(t, func() bool { return a.Store.FullyReplicated() && b.Store.FullyReplicated() },
			10*time.Second, time.Millisecond, "the survivors did not re-replicate")
	})
}

// A crashed node's partitions are copied to their new owners as soon as a
// call to it is refused, without waiting for the failure detector (which
// here never notices): a refused connection means nothing listens at its
// address any more.
func TestBackups_RefusedPeerLosesItsPartitionsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := modeCluster(t, 5, replication.Backups(1), "a", "b", "c")
		writeSessions(t, c, 60)
		a, b := c.Node("a").Store, c.Node("b").Store
		require.Less(t, a.Stats().Sessions, 60, "a holds a share before the crash")
		elapsed := replication.SystemClock().Monotonic
		c.KillUnnoticed("c")
		require.Eventually(t, func() bool {
			return a.FullyReplicated() && b.FullyReplicated() && a.Stats().Sessions == 60 && b.Stats().Sessions == 60
		}, 20*time.Second, time.Millisecond, "the survivors did not re-replicate without a verdict")
		t.Logf("every session on both survivors %v after the crash", elapsed())
		assert.Len(t, a.Peers(), 2, "c is still a peer: only the membership can drop it")
		for _, st := range []*replication.Store{a, b} {
			for i := range 60 {
				v, ok := value(t, st, fmt.Sprint("s", i), "n")
				require.True(t, ok, "session %d", i)
				require.Equal(t, fmt.Sprint(i), v)
			}
		}
	})
}

// A node that does not own a session writes it through its owners without
// reading it from them first when the caller passes the session it loaded
// (as httpsession does), and destroys it without reading it at all.
func TestBackups_WriteOnANonOwnerDoesNotReadTheSessionFirst(t *testing.T) {
	c := modeCluster(t, 7, replication.Backups(1), nodeNames(4)...)
	ctx := context.Background()
	id, _ := sessionNotOwnedBy(t, c, "n03")
	writer := c.Node("n03").Store
	reads := func() uint64 { return writer.Stats().RemoteReads }
	sess, ok, err := writer.Get(ctx, id)
	require.NoError(t, err)
	require.True(t, ok)

	before := reads()
	require.NoError(t, errOf(writer.Save(ctx, id, replication.Changes{Set: map[string][]byte{"n": []byte("1")}})))
	require.Equal(t, before+1, reads(), "without a base, a non-owner reads the session from its owners")

	before = reads()
	require.NoError(t, errOf(writer.Save(ctx, id, replication.Changes{Set: map[string][]byte{"n": []byte("2")}, Base: sess})))
	assert.Equal(t, before, reads(), "with the loaded session as its base, it does not")
	v, ok := value(t, c.Node("n00").Store, id, "n")
	require.True(t, ok)
	assert.Equal(t, "2", v)

	before = reads()
	require.NoError(t, writer.Destroy(ctx, id))
	assert.Equal(t, before, reads(), "a destroy reads nothing")
	for _, n := range c.Nodes() {
		_, ok := value(t, n.Store, id, "n")
		assert.False(t, ok, "%s still serves the destroyed session", n.Name)
	}
}

// ownersOf returns the owners of id's partition as st sees them.
func ownersOf(t *testing.T, st *replication.Store, id string) []string {
	t.Helper()
	for _, p := range st.Partitions() {
		if p.Partition == replication.PartitionOf(id) {
			return p.Owners
		}
	}
	t.Fatalf("no partition for %s", id)
	return nil
}

// A node that does not own a session holds no copy of it: when none of the
// owners acknowledges its write (its links to them lose every message), the
// write fails instead of being acknowledged and lost. Found by the cluster
// simulator.
func TestBackups_WriteThatReachesNoOwnerFails(t *testing.T) {
	t.Run("sync", func(t *testing.T) { testWriteThatReachesNoOwnerFails(t, replication.Sync) })
	// An asynchronous write on a node that holds no copy waits for the
	// owners too: queued, a failed send would leave it on no node.
	t.Run("async", func(t *testing.T) { testWriteThatReachesNoOwnerFails(t, replication.Async) })
}

func testWriteThatReachesNoOwnerFails(t *testing.T, wc replication.WriteConcern) {
	c := modeClusterWith(t, 8, replication.Backups(1), func(cfg *replication.Config) {
		shortLeases(cfg)
		cfg.WriteConcern = wc
	}, nodeNames(4)...)
	ctx := context.Background()
	id, owners := sessionNotOwnedBy(t, c, "n03")
	for _, o := range owners {
		c.Net.Drop("n03", o, 1)
	}
	_, err := c.Node("n03").Store.Save(ctx, id, put("n", "lost?"))
	require.ErrorIs(t, err, replication.ErrUnreachable)

	c.Net.Drop("n03", owners[0], 0) // one owner reachable again
	// Until it has merged with the other owner (the failed write fenced
	// it), it does not answer the write's read of the session, and the
	// write fails rather than build on nothing.
	require.Eventually(t, func() bool {
		return errOf(c.Node("n03").Store.Save(ctx, id, put("n", "kept"))) == nil
	}, 10*time.Second, 10*time.Millisecond, "a write through the reachable owner never succeeded")
	v, ok := value(t, c.Node(owners[0]).Store, id, "n")
	require.True(t, ok)
	assert.Equal(t, "kept", v)
}

// sessionNotOwnedBy writes sessions from another node until one is owned
// by others than node, and returns it with its owners.
func sessionNotOwnedBy(t *testing.T, c *testcluster.Cluster, node string) (string, []string) {
	t.Helper()
	other := c.Nodes()[0]
	if other.Name == node {
		other = c.Nodes()[1]
	}
	for i := 0; ; i++ {
		id := fmt.Sprint("s", i)
		require.NoError(t, errOf(other.Store.Save(context.Background(), id, put("n", "0"))))
		if owners := ownersOf(t, other.Store, id); !slices.Contains(owners, node) {
			return id, owners
		}
	}
}
