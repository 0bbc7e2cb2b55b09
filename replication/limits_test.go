package replication_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// TestStore_Limits writes sessions over the limits on one node and checks
// that they are refused locally, and that a peer with smaller limits
// refuses them when they arrive over the network.
func TestStore_Limits(t *testing.T) {
	small := replication.Limits{MaxAttributes: 4, MaxValueSize: 16, MaxSessionSize: 64}
	c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(name string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Limits = small
		if name == "big" {
			cfg.Limits = replication.Limits{MaxAttributes: 100, MaxValueSize: 1 << 10, MaxSessionSize: 1 << 12}
		}
		return cfg
	}})
	big, a := c.Start("big"), c.Start("a")
	c.WaitReady(t)
	ctx := context.Background()

	require.NoError(t, errOf(a.Store.Save(ctx, "ok", put("k1", "v", "k2", "v"))))
	require.NoError(t, errOf(a.Store.Save(ctx, "ok", put("k3", "v", "k4", "v"))), "four attributes are allowed")
	_, err := a.Store.Save(ctx, "ok", put("k5", "v"))
	require.ErrorIs(t, err, replication.ErrSessionTooLarge, "a fifth attribute")
	require.NoError(t, errOf(a.Store.Save(ctx, "ok", put("k1", "replaced"))), "replacing one is fine")
	require.ErrorIs(t, errOf(a.Store.Save(ctx, "ok", put("k1", strings.Repeat("x", 17)))), replication.ErrSessionTooLarge)
	require.ErrorIs(t, errOf(a.Store.Save(ctx, "new", put("a", strings.Repeat("x", 16), "b", strings.Repeat("x", 16),
		"c", strings.Repeat("x", 16), "d", strings.Repeat("x", 16)))), replication.ErrSessionTooLarge, "68 bytes in all")
	require.ErrorIs(t, errOf(a.Store.Rename(ctx, "ok", "renamed", put("k9", "v"))), replication.ErrSessionTooLarge)
	_, ok, err := a.Store.Get(ctx, "new")
	require.NoError(t, err)
	assert.False(t, ok, "a refused write stores nothing")

	// The node with big limits writes what a refuses.
	changes := put()
	for i := range 10 {
		changes.Set[fmt.Sprint("attr", i)] = []byte("v")
	}
	require.NoError(t, errOf(big.Store.Save(ctx, "wide", changes)))
	assert.NotZero(t, a.Store.Stats().Rejected, "a counts the refused record")
	_, ok, err = a.Store.Get(ctx, "wide")
	require.NoError(t, err)
	assert.False(t, ok, "a stored a record over its limits")
}
