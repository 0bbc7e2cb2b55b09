package replication_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

func put(kv ...string) replication.Changes {
	c := replication.Changes{Set: map[string][]byte{}, Lifetime: time.Hour}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Set[kv[i]] = []byte(kv[i+1])
	}
	return c
}

func value(t *testing.T, s *replication.Store, id, key string) (string, bool) {
	t.Helper()
	sess, ok, err := s.Get(context.Background(), id)
	require.NoError(t, err)
	if !ok {
		return "", false
	}
	v, ok := sess.Value(key)
	return string(v), ok
}

func startCluster(t *testing.T, names ...string) *testcluster.Cluster {
	c := testcluster.New(t, testcluster.Options{Seed: 1})
	for _, n := range names {
		c.Start(n)
	}
	c.WaitReady(t)
	return c
}

func TestStore_SyncWriteIsVisibleOnEveryNodeWhenSaveReturns(t *testing.T) {
	c := startCluster(t, "a", "b", "c")
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		id := fmt.Sprintf("session-%d", i)
		writer := c.Nodes()[i%3]
		require.NoError(t, errOf(writer.Store.Save(ctx, id, put("user", "ann", "n", fmt.Sprint(i)))))
		for _, n := range c.Nodes() {
			v, ok := value(t, n.Store, id, "n")
			require.True(t, ok, "node %s lacks %s right after Save returned on %s", n.Name, id, writer.Name)
			require.Equal(t, fmt.Sprint(i), v)
		}
	}
}

func TestStore_ConcurrentWritesOfDifferentAttributesBothSurvive(t *testing.T) {
	c := startCluster(t, "a", "b", "c")
	ctx := context.Background()
	a, b := c.Node("a").Store, c.Node("b").Store
	require.NoError(t, errOf(a.Save(ctx, "s", put("user", "ann"))))
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(2)
		go func() { defer wg.Done(); assert.NoError(t, errOf(a.Save(ctx, "s", put(fmt.Sprintf("a%d", i), "x")))) }()
		go func() { defer wg.Done(); assert.NoError(t, errOf(b.Save(ctx, "s", put(fmt.Sprintf("b%d", i), "y")))) }()
	}
	wg.Wait()
	for _, n := range c.Nodes() {
		sess, ok, err := n.Store.Get(ctx, "s")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, 41, sess.Len(), "node %s", n.Name)
	}
	c.WaitConverged(t)
}

func TestStore_ConcurrentWritesOfOneAttributeAgreeOnOneWinner(t *testing.T) {
	c := startCluster(t, "a", "b", "c")
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, n := range c.Nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				assert.NoError(t, errOf(n.Store.Save(ctx, "s", put("theme", n.Name+fmt.Sprint(i)))))
			}
		}()
	}
	wg.Wait()
	c.WaitConverged(t)
	want, _ := value(t, c.Node("a").Store, "s", "theme")
	for _, n := range c.Nodes() {
		got, _ := value(t, n.Store, "s", "theme")
		assert.Equal(t, want, got)
	}
}

func TestStore_DestroyIsFinalEverywhere(t *testing.T) {
	c := startCluster(t, "a", "b", "c")
	ctx := context.Background()
	a, b := c.Node("a").Store, c.Node("b").Store
	require.NoError(t, errOf(a.Save(ctx, "s", put("user", "ann"))))
	require.NoError(t, b.Destroy(ctx, "s"))
	for _, n := range c.Nodes() {
		_, ok := value(t, n.Store, "s", "user")
		assert.False(t, ok, "node %s still serves a destroyed session", n.Name)
	}
	_, err := a.Save(ctx, "s", put("user", "mallory"))
	require.ErrorIs(t, err, replication.ErrSessionEnded)
	for _, n := range c.Nodes() {
		_, ok := value(t, n.Store, "s", "user")
		assert.False(t, ok)
	}
}

func TestStore_RenameMovesTheSessionEverywhereAtOnce(t *testing.T) {
	c := startCluster(t, "a", "b", "c")
	ctx := context.Background()
	a := c.Node("a").Store
	require.NoError(t, errOf(a.Save(ctx, "old", put("cart", "3 apples"))))
	require.NoError(t, errOf(a.Rename(ctx, "old", "new", put("user", "ann"))))
	for _, n := range c.Nodes() {
		_, ok := value(t, n.Store, "old", "cart")
		assert.False(t, ok, "old ID still works on %s", n.Name)
		cart, _ := value(t, n.Store, "new", "cart")
		user, _ := value(t, n.Store, "new", "user")
		assert.Equal(t, "3 apples", cart, "node %s", n.Name)
		assert.Equal(t, "ann", user, "node %s", n.Name)
	}
	require.ErrorIs(t, errOf(a.Rename(ctx, "old", "other", replication.Changes{})), replication.ErrSessionEnded)
}

func TestStore_KilledNodeLosesNothing(t *testing.T) {
	c := startCluster(t, "a", "b", "c")
	ctx := context.Background()
	for i := 0; i < 100; i++ {
		require.NoError(t, errOf(c.Nodes()[i%3].Store.Save(ctx, fmt.Sprint(i), put("n", fmt.Sprint(i)))))
	}
	c.Kill("b")
	for i := 0; i < 100; i++ {
		for _, n := range c.Nodes() {
			v, ok := value(t, n.Store, fmt.Sprint(i), "n")
			require.True(t, ok)
			require.Equal(t, fmt.Sprint(i), v)
		}
	}
	// Writes go on without the dead node.
	require.NoError(t, errOf(c.Node("a").Store.Save(ctx, "after", put("n", "x"))))
	v, _ := value(t, c.Node("c").Store, "after", "n")
	assert.Equal(t, "x", v)
}

func TestStore_RestartedNodeCatchesUpBeforeItIsReady(t *testing.T) {
	c := startCluster(t, "a", "b", "c")
	ctx := context.Background()
	for i := 0; i < 300; i++ {
		require.NoError(t, errOf(c.Node("a").Store.Save(ctx, fmt.Sprint(i), put("n", fmt.Sprint(i)))))
	}
	c.Kill("c")
	for i := 300; i < 600; i++ {
		require.NoError(t, errOf(c.Node("b").Store.Save(ctx, fmt.Sprint(i), put("n", fmt.Sprint(i)))))
	}
	c.Start("c")
	c.WaitReady(t)
	cs := c.Node("c").Store
	for i := 0; i < 600; i++ {
		v, ok := value(t, cs, fmt.Sprint(i), "n")
		require.True(t, ok, "restarted node lacks session %d", i)
		require.Equal(t, fmt.Sprint(i), v)
	}
	c.WaitConverged(t)
}

// A node that joins while others keep writing ends up with every write
// acknowledged before, during and after its state transfer.
func TestStore_JoinUnderWriteLoadMissesNothing(t *testing.T) {
	c := startCluster(t, "a", "b")
	ctx := context.Background()
	var acked sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, name := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := c.Node(name).Store
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i)
				if _, err := s.Save(ctx, id, put("n", id)); err == nil {
					acked.Store(id, true)
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return c.Node("a").Store.Stats().Sessions > 200 }, 10*time.Second, time.Millisecond)
	c.Start("c")
	c.WaitReady(t)
	require.Eventually(t, func() bool { return c.Node("c").Store.Stats().Sessions > 400 }, 10*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()
	c.WaitConverged(t)
	cs := c.Node("c").Store
	n := 0
	acked.Range(func(k, _ any) bool {
		_, ok := value(t, cs, k.(string), "n")
		assert.True(t, ok, "joined node lacks acknowledged write %s", k)
		n++
		return true
	})
	assert.Greater(t, n, 400)
}

func TestStore_ReadsOnANodeThatIsNotReadyGoToAPeer(t *testing.T) {
	c := startCluster(t, "a", "b")
	ctx := context.Background()
	require.NoError(t, errOf(c.Node("a").Store.Save(ctx, "s", put("user", "ann"))))
	// Slow links to the newcomer's sources keep its state transfer going
	// for seconds.
	c.Net.Delay("c", "a", 100*time.Millisecond)
	c.Net.Delay("c", "b", 100*time.Millisecond)
	cs := c.Start("c").Store
	require.False(t, cs.IsReady())
	v, ok := value(t, cs, "s", "user")
	assert.True(t, ok, "a node that is not ready yet must still serve sessions it has not copied")
	assert.Equal(t, "ann", v)
	assert.False(t, cs.IsReady(), "the read happened before the transfer finished")
	assert.Equal(t, uint64(1), cs.Stats().RemoteReads)
	c.Net.Heal()
	c.WaitReady(t)
}

func TestStore_AntiEntropyRepairsLostWrites(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.AntiEntropyInterval = 50 * time.Millisecond // as startCluster
		shortLeases(&cfg)                               // each write b misses waits out b's lease
		return cfg
	}})
	for _, n := range []string{"a", "b", "c"} {
		c.Start(n)
	}
	c.WaitReady(t)
	ctx := context.Background()
	// Half of a's writes to b vanish, as if the connection had broken
	// after the write left a; a sees the error and moves on.
	c.Net.Drop("a", "b", 0.5)
	for i := 0; i < 200; i++ {
		require.NoError(t, errOf(c.Node("a").Store.Save(ctx, fmt.Sprint(i), put("n", fmt.Sprint(i)))))
	}
	c.Net.Heal()
	c.WaitConverged(t)
	for i := 0; i < 200; i++ {
		_, ok := value(t, c.Node("b").Store, fmt.Sprint(i), "n")
		require.True(t, ok)
	}
	assert.Positive(t, c.Node("a").Store.Stats().Repairs+c.Node("b").Store.Stats().Repairs+c.Node("c").Store.Stats().Repairs)
}

// In virtual time (testing/synctest), so the waits are exact.
func TestStore_SlowPeerDelaysWritesOnlyOnce(t *testing.T) {
	synctest.Test(t, testSlowPeerDelaysWritesOnlyOnce)
}

func testSlowPeerDelaysWritesOnlyOnce(t *testing.T) {
	const writeTimeout, readLease = 200 * time.Millisecond, 200 * time.Millisecond
	c := testcluster.New(t, testcluster.Options{Seed: 2, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.WriteTimeout, cfg.ReadLease = writeTimeout, readLease
		cfg.AntiEntropyInterval = 50 * time.Millisecond
		return cfg
	}})
	c.Start("a")
	c.Start("b")
	c.WaitReady(t)
	ctx := context.Background()
	a := c.Node("a").Store
	// b is frozen: nothing it sends reaches a, nothing a sends reaches it.
	// (With only a's calls delayed, b's own anti-entropy pulls the writes
	// from a and a rightly stops counting b degraded.)
	c.Net.Delay("a", "b", time.Hour)
	c.Net.Delay("b", "a", time.Hour)

	elapsed := replication.SystemClock().Monotonic
	require.NoError(t, errOf(a.Save(ctx, "s0", put("n", "0"))))
	// WriteTimeout for b's acknowledgement, then until the lease a
	// granted b (renewed every ReadLease/4) has run out.
	took := elapsed()
	assert.GreaterOrEqual(t, took, writeTimeout, "the first write waits for the frozen peer")
	assert.LessOrEqual(t, took, writeTimeout+readLease, "and for b's lease, no longer")
	assert.Equal(t, 1, a.Stats().DegradedPeers)
	elapsed = replication.SystemClock().Monotonic
	for i := 1; i < 20; i++ {
		require.NoError(t, errOf(a.Save(ctx, fmt.Sprint("s", i), put("n", fmt.Sprint(i)))))
	}
	assert.Zero(t, elapsed(), "later writes do not wait for a degraded peer")

	c.Net.Heal()
	require.Eventually(t, func() bool { return a.Stats().DegradedPeers == 0 }, 10*time.Second, 10*time.Millisecond)
	c.WaitConverged(t)
	for i := 0; i < 20; i++ {
		_, ok := value(t, c.Node("b").Store, fmt.Sprint("s", i), "n")
		require.True(t, ok, "b was repaired")
	}
}

// Both halves of a partition take writes, and the writes meet after the
// heal.
func TestStore_PartitionedSidesConvergeAfterHeal(t *testing.T) {
	c := startCluster(t, "a", "b", "c", "d")
	ctx := context.Background()
	require.NoError(t, errOf(c.Node("a").Store.Save(ctx, "shared", put("v", "before"))))
	c.Partition([]string{"a", "b"}, []string{"c", "d"})
	require.NoError(t, errOf(c.Node("a").Store.Save(ctx, "left", put("v", "l"))))
	require.NoError(t, errOf(c.Node("d").Store.Save(ctx, "right", put("v", "r"))))
	require.NoError(t, errOf(c.Node("b").Store.Save(ctx, "shared", put("x", "from left"))))
	require.NoError(t, errOf(c.Node("c").Store.Save(ctx, "shared", put("y", "from right"))))
	c.Heal()
	c.WaitConverged(t)
	for _, n := range c.Nodes() {
		for _, kv := range [][3]string{{"left", "v", "l"}, {"right", "v", "r"}, {"shared", "x", "from left"}, {"shared", "y", "from right"}, {"shared", "v", "before"}} {
			got, _ := value(t, n.Store, kv[0], kv[1])
			assert.Equal(t, kv[2], got, "node %s session %s attribute %s", n.Name, kv[0], kv[1])
		}
	}
}

// The side of a partition that holds fewer nodes than vanished from its
// view refuses reads, writes and updates (ErrMinority) rather than answer
// from copies that lack what the other side writes, and says so in
// Health; once the members are back it serves again, with the other
// side's writes.
func TestStore_MinorityRefusesUntilTheMembersAreBack(t *testing.T) {
	c := startCluster(t, "a", "b", "c", "d", "e")
	ctx := context.Background()
	require.NoError(t, errOf(c.Node("a").Store.Save(ctx, "shared", put("v", "before"))))
	d := c.Node("d").Store
	base, ok, err := d.Get(ctx, "shared")
	require.NoError(t, err)
	require.True(t, ok)
	c.Partition([]string{"a", "b", "c"}, []string{"d", "e"})
	require.NoError(t, errOf(c.Node("a").Store.Save(ctx, "left", put("v", "l"))))
	require.NoError(t, c.Node("b").Store.Health())

	_, _, err = d.Get(ctx, "left")
	require.ErrorIs(t, err, replication.ErrMinority, "d would answer that the session written on the other side does not exist")
	require.ErrorIs(t, err, replication.ErrUnreachable)
	withBase := put("y", "from right")
	withBase.Base = base
	require.ErrorIs(t, errOf(d.Save(ctx, "shared", withBase)), replication.ErrMinority)
	require.ErrorIs(t, errOf(c.Node("e").Store.Save(ctx, "right", put("v", "r"))), replication.ErrMinority)
	_, _, err = d.Update(ctx, "shared", "n", func([]byte, bool) ([]byte, error) { return []byte("1"), nil })
	require.ErrorIs(t, err, replication.ErrMinority)
	require.ErrorIs(t, d.Health(), replication.ErrMinority)
	assert.True(t, d.Stats().Minority)
	assert.False(t, c.Node("a").Store.Stats().Minority)

	c.Heal()
	c.WaitConverged(t)
	require.NoError(t, d.Health())
	assert.False(t, d.Stats().Minority, "the members are back")
	got, _ := value(t, d, "left", "v")
	assert.Equal(t, "l", got)
	_, ok = value(t, d, "shared", "y")
	assert.False(t, ok, "the refused write is on no node")
}

// Half of the cluster is not a minority: each node of a two-node cluster
// cut in two serves on its own, as the survivor of a crash does.
func TestStore_HalfOfTheClusterKeepsServing(t *testing.T) {
	c := startCluster(t, "a", "b")
	ctx := context.Background()
	require.NoError(t, errOf(c.Node("a").Store.Save(ctx, "s", put("v", "1"))))
	c.Partition([]string{"a"}, []string{"b"})
	for _, n := range c.Nodes() {
		require.NoError(t, errOf(n.Store.Save(ctx, "s", put(n.Name, "x"))), "node %s", n.Name)
		got, ok := value(t, n.Store, "s", "v")
		assert.True(t, ok)
		assert.Equal(t, "1", got)
		assert.False(t, n.Store.Stats().Minority)
	}
}

func TestStore_ExpiredSessionsAreNeverReturned(t *testing.T) {
	clock := hlc.NewManualClock(replication.SystemClock().Now())
	c := testcluster.New(t, testcluster.Options{Seed: 3, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Clock = replication.WallClock(clock.Now)
		return cfg
	}})
	c.Start("a")
	c.Start("b")
	c.WaitReady(t)
	ctx := context.Background()
	a, b := c.Node("a").Store, c.Node("b").Store
	require.NoError(t, errOf(a.Save(ctx, "short", replication.Changes{Set: map[string][]byte{"k": []byte("v")}, Lifetime: time.Minute})))
	require.NoError(t, errOf(a.Save(ctx, "idle", replication.Changes{Set: map[string][]byte{"k": []byte("v")}, Lifetime: time.Hour, IdleTimeout: 10 * time.Minute})))

	clock.Advance(9 * time.Minute)
	sess, ok, err := b.Get(ctx, "idle")
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, b.Touch(ctx, sess)) // used on b: moves its idle deadline on both
	clock.Advance(2 * time.Minute)
	for _, s := range []*replication.Store{a, b} {
		_, ok := value(t, s, "short", "k")
		assert.False(t, ok, "past its lifetime")
		_, ok = value(t, s, "idle", "k")
		assert.True(t, ok, "touched on b 2 minutes ago")
	}
	clock.Advance(9 * time.Minute)
	for _, s := range []*replication.Store{a, b} {
		_, ok := value(t, s, "idle", "k")
		assert.False(t, ok, "idle for 11 minutes")
	}
	require.ErrorIs(t, errOf(a.Save(ctx, "idle", put("k", "again"))), replication.ErrSessionEnded)
	require.Eventually(t, func() bool { return a.Stats().Sessions == 0 && b.Stats().Sessions == 0 }, 10*time.Second, 10*time.Millisecond, "the sweeper removes both")
}

func TestStore_TouchReplicatesOnlyInCoarseSteps(t *testing.T) {
	clock := hlc.NewManualClock(replication.SystemClock().Now())
	c := testcluster.New(t, testcluster.Options{Seed: 4, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Clock = replication.WallClock(clock.Now)
		return cfg
	}})
	c.Start("a")
	c.Start("b")
	c.WaitReady(t)
	ctx := context.Background()
	a := c.Node("a").Store
	require.NoError(t, errOf(a.Save(ctx, "s", replication.Changes{Set: map[string][]byte{"k": []byte("v")}, IdleTimeout: 80 * time.Second})))
	writes := a.Stats().Writes
	for i := 0; i < 9; i++ { // 9 reads a second apart: under the 10 s step
		clock.Advance(time.Second)
		sess, _, err := a.Get(ctx, "s")
		require.NoError(t, err)
		require.NoError(t, a.Touch(ctx, sess))
	}
	assert.Equal(t, writes, a.Stats().Writes, "touches within one step stay local")
	clock.Advance(2 * time.Second)
	sess, _, err := a.Get(ctx, "s")
	require.NoError(t, err)
	require.NoError(t, a.Touch(ctx, sess))
	assert.Equal(t, writes+1, a.Stats().Writes, "a touch past the step is replicated")
}

func TestStore_CloseIsIdempotentAndFinal(t *testing.T) {
	c := startCluster(t, "a")
	s := c.Node("a").Store
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, _, err := s.Get(context.Background(), "s")
	require.ErrorIs(t, err, replication.ErrClosed)
	require.ErrorIs(t, errOf(s.Save(context.Background(), "s", put("k", "v"))), replication.ErrClosed)
}

// errOf drops the Version of a write, for assertions on its error.
func errOf(_ replication.Version, err error) error { return err }

// A session destroyed on one side of a partition stays destroyed after the
// heal, although the other side kept writing to it meanwhile.
func TestStore_DestroyDuringPartitionWinsAfterHeal(t *testing.T) {
	c := startCluster(t, "a", "b", "c", "d")
	ctx := context.Background()
	require.NoError(t, errOf(c.Node("a").Store.Save(ctx, "s", put("user", "ann"))))
	c.Partition([]string{"a", "b"}, []string{"c", "d"})
	require.NoError(t, c.Node("a").Store.Destroy(ctx, "s"))
	for i := 0; i < 5; i++ { // the other side goes on using the session
		require.NoError(t, errOf(c.Node("d").Store.Save(ctx, "s", put("cart", fmt.Sprint(i)))))
	}
	c.Heal()
	c.WaitConverged(t)
	for _, n := range c.Nodes() {
		_, ok := value(t, n.Store, "s", "user")
		assert.False(t, ok, "node %s brought a destroyed session back", n.Name)
	}
}
