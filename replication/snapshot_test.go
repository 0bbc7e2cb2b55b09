package replication_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// snapshotCluster returns a cluster whose nodes keep snapshots, each in a
// directory of its own that outlives its incarnations.
func snapshotCluster(t *testing.T, interval time.Duration, tweak func(name string, cfg *replication.Config)) *testcluster.Cluster {
	var mu sync.Mutex
	dirs := map[string]string{}
	base := t.TempDir()
	return testcluster.New(t, testcluster.Options{Seed: 1, Config: func(name string) replication.Config {
		mu.Lock()
		defer mu.Unlock()
		if dirs[name] == "" {
			dirs[name] = filepath.Join(base, name)
		}
		cfg := replication.DefaultLocalConfig()
		cfg.AntiEntropyInterval = 50 * time.Millisecond
		cfg.SnapshotDir = dirs[name]
		cfg.SnapshotInterval = interval
		cfg.SnapshotKey = bytes.Repeat([]byte{7}, 32)
		cfg.SnapshotLabel = "test"
		if tweak != nil {
			tweak(name, &cfg)
		}
		return cfg
	}})
}

// fleet is what a test wrote: sessions that must survive with their
// value, and sessions logged out that must stay so.
type fleet struct {
	live      map[string]string
	loggedOut []string
}

// populate writes n sessions spread over the nodes and destroys every
// fifth one on another node than the one that wrote it.
func populate(t *testing.T, c *testcluster.Cluster, prefix string, n int) fleet {
	t.Helper()
	ctx := context.Background()
	nodes := c.Nodes()
	f := fleet{live: map[string]string{}}
	for i := range n {
		id := fmt.Sprintf("%s-session-%03d", prefix, i)
		v := fmt.Sprintf("user-%d", i)
		require.NoError(t, errOf(nodes[i%len(nodes)].Store.Save(ctx, id, put("user", v))))
		if i%5 == 0 {
			require.NoError(t, nodes[(i+1)%len(nodes)].Store.Destroy(ctx, id))
			f.loggedOut = append(f.loggedOut, id)
			continue
		}
		f.live[id] = v
	}
	return f
}

// check asserts that every node of c holds every live session of f and
// none of the ones logged out.
func (f fleet) check(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	for _, n := range c.Nodes() {
		for id, want := range f.live {
			v, ok := value(t, n.Store, id, "user")
			require.True(t, ok, "node %s lost session %s", n.Name, id)
			require.Equal(t, want, v, "node %s, session %s", n.Name, id)
		}
		for _, id := range f.loggedOut {
			_, ok := value(t, n.Store, id, "user")
			require.False(t, ok, "node %s brought logged-out session %s back", n.Name, id)
		}
	}
}

// waitSnapshots waits until every node has written a snapshot after now,
// which holds every write acknowledged before. It first writes a session
// on every node (all-to-all): a snapshot is skipped when nothing changed,
// so a node whose last snapshot already held everything would write no
// other.
func waitSnapshots(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	base := map[string]uint64{}
	for _, n := range c.Nodes() {
		base[n.Name] = n.Store.Stats().Snapshots
	}
	require.NoError(t, errOf(c.Nodes()[0].Store.Save(context.Background(), "snapshot-trigger", put("user", "x"))))
	require.Eventually(t, func() bool {
		for _, n := range c.Nodes() {
			if n.Store.Stats().Snapshots <= base[n.Name] {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "no snapshot written")
}

// leaveAll calls Leave on every node at once and returns how long the
// slowest took.
func leaveAll(t *testing.T, c *testcluster.Cluster) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	took := make([]time.Duration, len(c.Nodes()))
	errs := make([]error, len(took))
	for i, n := range c.Nodes() {
		wg.Go(func() {
			elapsed := replication.SystemClock().Monotonic
			errs[i] = n.Store.Leave(ctx)
			took[i] = elapsed()
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	return slices.Max(took)
}

// killAll closes every node without Leave, as a crash does, and returns
// their names.
func killAll(c *testcluster.Cluster) []string {
	var names []string
	for _, n := range c.Nodes() {
		names = append(names, n.Name)
		c.Kill(n.Name)
	}
	return names
}

// restartAll starts the named nodes again and waits for them to converge.
func restartAll(t *testing.T, c *testcluster.Cluster, names []string) {
	for _, name := range names {
		c.Start(name)
	}
	c.WaitConverged(t)
}

func TestSnapshot_FleetStopKeepsEverySessionAndEveryLogout(t *testing.T) {
	// An interval longer than the test: only Leave and Close write.
	c := snapshotCluster(t, time.Hour, nil)
	for _, n := range []string{"a", "b", "c"} {
		c.Start(n)
	}
	c.WaitReady(t)
	f := populate(t, c, "fleet", 60)

	took := leaveAll(t, c)
	require.Less(t, took, 2500*time.Millisecond, "Leave waited for peers that are all leaving")
	restartAll(t, c, killAll(c))
	f.check(t, c)
	// A node that handed sessions over before it learnt that its peers
	// were leaving too may have kept none: they are in its peers'
	// snapshots, written by Close after the hand-over.
	loaded := 0
	for _, n := range c.Nodes() {
		_, l := n.Store.Snapshots()
		loaded += l.Records
	}
	require.Positive(t, loaded, "no node loaded a snapshot")
}

func TestSnapshot_CrashOfEveryNodeKeepsWhatTheLastSnapshotsHeld(t *testing.T) {
	c := snapshotCluster(t, 50*time.Millisecond, nil)
	for _, n := range []string{"a", "b", "c"} {
		c.Start(n)
	}
	c.WaitReady(t)
	f := populate(t, c, "crash", 60)
	waitSnapshots(t, c)
	for _, n := range c.Nodes() {
		st := n.Store.Stats()
		require.Positive(t, st.SnapshotBytes, n.Name)
		require.Zero(t, st.SnapshotFailures, n.Name)
	}
	restartAll(t, c, killAll(c)) // Close without Leave: a crash, no last snapshot
	f.check(t, c)
}

func TestSnapshot_LogoutAndWriteWhileDownWinOverTheSnapshot(t *testing.T) {
	c := snapshotCluster(t, 50*time.Millisecond, nil)
	for _, n := range []string{"a", "b", "c"} {
		c.Start(n)
	}
	c.WaitReady(t)
	f := populate(t, c, "down", 30)
	waitSnapshots(t, c)
	c.Kill("c")

	ctx := context.Background()
	a := c.Node("a").Store
	var out, changed string
	for id := range f.live {
		switch {
		case out == "":
			out = id
		case changed == "":
			changed = id
		}
	}
	require.NoError(t, a.Destroy(ctx, out))
	delete(f.live, out)
	f.loggedOut = append(f.loggedOut, out)
	require.NoError(t, errOf(a.Save(ctx, changed, put("user", "newer"))))
	f.live[changed] = "newer"

	c.Start("c")
	c.WaitConverged(t)
	f.check(t, c)
}

// captured collects log lines.
type captured struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *captured) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *captured) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

func TestSnapshot_CorruptOrForeignSnapshotStartsEmpty(t *testing.T) {
	var logs captured
	label := "test"
	c := snapshotCluster(t, time.Hour, func(_ string, cfg *replication.Config) {
		cfg.SnapshotLabel = label
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	a := c.Start("a")
	c.WaitReady(t)
	populate(t, c, "own", 10)
	require.NoError(t, a.Store.Leave(context.Background()))
	c.Kill("a")

	label = "other" // a foreign snapshot: another cluster's label
	a = c.Start("a")
	c.WaitReady(t)
	require.Zero(t, a.Store.Stats().Sessions)
	require.Contains(t, logs.String(), "snapshot refused; starting empty")
	require.Contains(t, logs.String(), "another cluster")
}

func TestSnapshot_InterruptedWritesLeaveNoFilesBehind(t *testing.T) {
	dir := t.TempDir()
	stray := filepath.Join(dir, ".sessions.snap.12345.tmp") // a write a crash interrupted
	require.NoError(t, os.WriteFile(stray, []byte("half a snapshot"), 0o600))
	c := testcluster.New(t, testcluster.Options{Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.SnapshotDir = dir
		return cfg
	}})
	c.Start("a")
	c.WaitReady(t)
	_, err := os.Stat(stray)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestSnapshot_GarbageFileStartsEmptyAndIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"garbage":   bytes.Repeat([]byte{0xff}, 1000),
		"truncated": []byte("SMSNAP\x01\x01"),
		"empty":     nil,
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name, "sessions.snap")
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
			require.NoError(t, os.WriteFile(path, content, 0o600))
			var logs captured
			c := testcluster.New(t, testcluster.Options{Config: func(string) replication.Config {
				cfg := replication.DefaultLocalConfig()
				cfg.SnapshotDir = filepath.Dir(path)
				cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
				return cfg
			}})
			a := c.Start("a")
			c.WaitReady(t)
			require.Zero(t, a.Store.Stats().Sessions)
			require.Contains(t, logs.String(), "corrupt snapshot")
			_, err := os.Stat(path + ".refused")
			require.NoError(t, err, "the refused snapshot was not kept aside")
		})
	}
}

func TestLeave_FleetStopWithoutSnapshotsSaysSessionsAreLost(t *testing.T) {
	var logs captured
	c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.AntiEntropyInterval = 50 * time.Millisecond
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		return cfg
	}})
	for _, n := range []string{"a", "b", "c"} {
		c.Start(n)
	}
	c.WaitReady(t)
	populate(t, c, "lost", 10)
	took := leaveAll(t, c)
	require.Less(t, took, 2500*time.Millisecond, "Leave waited for peers that are all leaving")
	require.Contains(t, logs.String(), "level=WARN msg=\"no peer left to hand sessions over to and no SnapshotDir: its sessions are lost\"")
	require.Contains(t, logs.String(), "sessions=8")
}

func TestSnapshot_ExpiredRecordsAreNotLoaded(t *testing.T) {
	var offset atomic.Int64 // added to the wall clock
	c := snapshotCluster(t, time.Hour, func(_ string, cfg *replication.Config) {
		cfg.Clock = replication.SkewedClock(func() time.Duration { return time.Duration(offset.Load()) })
	})
	a := c.Start("a")
	c.WaitReady(t)
	ctx := context.Background()
	short := put("user", "ann")
	short.Lifetime = time.Minute
	require.NoError(t, errOf(a.Store.Save(ctx, "short", short)))
	require.NoError(t, errOf(a.Store.Save(ctx, "long", put("user", "bob"))))
	require.NoError(t, a.Store.Leave(ctx))
	c.Kill("a")

	offset.Store(int64(2 * time.Minute)) // the node was down for two minutes
	a = c.Start("a")
	c.WaitReady(t)
	_, loaded := a.Store.Snapshots()
	require.Equal(t, 1, loaded.Records, "the expired session was loaded")
	_, ok := value(t, a.Store, "short", "user")
	require.False(t, ok)
	v, ok := value(t, a.Store, "long", "user")
	require.True(t, ok)
	require.Equal(t, "bob", v)
}
