package sessionmesh_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/internal/testing/leaktest"
	"github.com/sessionmesh/sessionmesh/replication"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

func TestStartNode_SecretClusterOfThreeWithGracefulLeave(t *testing.T) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	start := func(name string, seeds ...string) *sessionmesh.Node {
		cfg := sessionmesh.DefaultLocalNodeConfig()
		cfg.Cluster.NodeName = name
		cfg.Cluster.Seeds = seeds
		cfg.SecretKey, cfg.Label = secret, "shop"
		cfg.Store.Mode = replication.Backups(1)
		cfg.Store.Logger = slog.New(slog.DiscardHandler)
		cfg.Zone = map[string]string{"a": "east", "b": "east", "c": "west"}[name]
		n, err := sessionmesh.StartNode(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	a := start("a")
	seed := a.Cluster.LocalMember().Addr
	b, c := start("b", seed), start("c", seed)
	nodes := []*sessionmesh.Node{a, b, c}
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if !n.Store.IsReady() || !n.Store.FullyReplicated() || n.Store.Stats().Peers != 2 {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond)
	for _, n := range nodes {
		st := n.Store.Stats()
		assert.Equal(t, 2, st.Zones, "the zones reach every store through the cluster metadata")
		assert.Zero(t, st.SingleZone)
	}
	assert.Equal(t, [][]byte{secret}, a.Transport.Keys())
	assert.Equal(t, [][]byte{secret}, a.Cluster.Keys())

	ctx := context.Background()
	for i := 0; i < 30; i++ {
		_, err := nodes[i%3].Store.Save(ctx, "s"+string(rune('a'+i)), replication.Changes{Set: map[string][]byte{"n": []byte("v")}, Lifetime: time.Hour})
		require.NoError(t, err)
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, b.Leave(lctx))
	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "Close is idempotent")
	for i := 0; i < 30; i++ {
		for _, n := range []*sessionmesh.Node{a, c} {
			sess, ok, err := n.Store.Get(ctx, "s"+string(rune('a'+i)))
			require.NoError(t, err)
			require.True(t, ok, "a graceful leave lost session %d", i)
			v, _ := sess.Value("n")
			require.Equal(t, "v", string(v))
		}
	}
}

// TestStartNode_SnapshotIsSealedWithTheClusterSecret checks the plumbing of
// the secret and label into the store's snapshots: a node restarted with
// them gets its sessions back, one with another secret or label refuses
// the snapshot and starts empty.
func TestStartNode_SnapshotIsSealedWithTheClusterSecret(t *testing.T) {
	dir := t.TempDir()
	secret, other := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(secret)
	_, _ = rand.Read(other)
	start := func(secret []byte, label string) *sessionmesh.Node {
		cfg := sessionmesh.DefaultLocalNodeConfig()
		cfg.Cluster.NodeName = "a"
		cfg.SecretKey, cfg.Label = secret, label
		cfg.Store.SnapshotDir = dir
		cfg.Store.Logger = slog.New(slog.DiscardHandler)
		n, err := sessionmesh.StartNode(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.Close() })
		require.Eventually(t, n.Store.IsReady, 10*time.Second, 5*time.Millisecond)
		return n
	}
	stop := func(n *sessionmesh.Node) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, n.Leave(ctx))
		require.NoError(t, n.Close())
	}
	ctx := context.Background()
	n := start(secret, "shop")
	_, err := n.Store.Save(ctx, "s1", replication.Changes{Set: map[string][]byte{"user": []byte("ann")}, Lifetime: time.Hour})
	require.NoError(t, err)
	stop(n)

	n = start(secret, "shop")
	_, ok, err := n.Store.Get(ctx, "s1")
	require.NoError(t, err)
	require.True(t, ok, "the session did not survive the restart")
	stop(n)
	good, err := os.ReadFile(filepath.Join(dir, "sessions.snap"))
	require.NoError(t, err)

	for _, c := range []struct {
		secret []byte
		label  string
	}{{other, "shop"}, {secret, "bank"}} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "sessions.snap"), good, 0o600))
		n = start(c.secret, c.label)
		assert.Zero(t, n.Store.Stats().Sessions, "a snapshot of another cluster was loaded (label %q)", c.label)
		stop(n)
	}
}

// TestNode_UseKeyReSealsTheSnapshot rotates the cluster secret of a node
// that keeps snapshots: restarted with only the new secret, it still gets
// its sessions back.
func TestNode_UseKeyReSealsTheSnapshot(t *testing.T) {
	dir := t.TempDir()
	oldKey, newKey := make([]byte, 32), make([]byte, 32)
	_, _ = rand.Read(oldKey)
	_, _ = rand.Read(newKey)
	start := func(secret []byte) *sessionmesh.Node {
		cfg := sessionmesh.DefaultLocalNodeConfig()
		cfg.Cluster.NodeName = "a"
		cfg.SecretKey = secret
		cfg.Store.SnapshotDir = dir
		cfg.Store.Logger = slog.New(slog.DiscardHandler)
		n, err := sessionmesh.StartNode(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = n.Close() })
		require.Eventually(t, n.Store.IsReady, 10*time.Second, 5*time.Millisecond)
		return n
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := start(oldKey)
	_, err := n.Store.Save(ctx, "s1", replication.Changes{Set: map[string][]byte{"user": []byte("ann")}, Lifetime: time.Hour})
	require.NoError(t, err)
	require.NoError(t, n.InstallKey(newKey))
	require.NoError(t, n.UseKey(newKey))
	require.NoError(t, n.RemoveKey(oldKey))
	require.NoError(t, n.Leave(ctx))
	require.NoError(t, n.Close())

	n = start(newKey)
	_, ok, err := n.Store.Get(ctx, "s1")
	require.NoError(t, err)
	require.True(t, ok, "the snapshot was not re-sealed with the new secret")
}
