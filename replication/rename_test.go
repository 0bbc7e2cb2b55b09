package replication_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// A renewed ID is told apart from a destroyed one on every node, in both
// modes, and nothing written to it reaches the session under its new ID.
func TestStore_RenamedIDIsNotADestroyedOne(t *testing.T) {
	for name, mode := range map[string]replication.Mode{"all-to-all": replication.AllToAll, "backups(1)": replication.Backups(1)} {
		t.Run(name, func(t *testing.T) {
			c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
				cfg := replication.DefaultLocalConfig()
				cfg.Mode = mode
				return cfg
			}})
			for _, n := range []string{"a", "b", "c"} {
				c.Start(n)
			}
			c.WaitConverged(t)
			ctx := context.Background()
			a := c.Node("a").Store
			require.NoError(t, errOf(a.Save(ctx, "old", put("cart", "3 apples"))))
			require.NoError(t, errOf(a.Save(ctx, "gone", put("cart", "1 pear"))))
			require.NoError(t, errOf(a.Rename(ctx, "old", "new", put("user", "ann"))))
			require.NoError(t, a.Destroy(ctx, "gone"))

			for _, n := range c.Nodes() {
				renamed, err := n.Store.Renamed(ctx, "old")
				require.NoError(t, err)
				assert.True(t, renamed, "node %s", n.Name)
				for _, id := range []string{"gone", "new", "never"} {
					renamed, err := n.Store.Renamed(ctx, id)
					require.NoError(t, err)
					assert.False(t, renamed, "%s on node %s", id, n.Name)
				}

				_, err = n.Store.Save(ctx, "old", put("note", "from "+n.Name))
				require.ErrorIs(t, err, replication.ErrSessionRenewed, "node %s", n.Name)
				require.ErrorIs(t, err, replication.ErrSessionEnded, "old callers still see an ended session")
				_, err = n.Store.Save(ctx, "gone", put("note", "x"))
				require.ErrorIs(t, err, replication.ErrSessionEnded)
				require.False(t, errors.Is(err, replication.ErrSessionRenewed), "a destroyed session is not a renewed one")
				_, err = n.Store.Rename(ctx, "old", "other", replication.Changes{})
				require.ErrorIs(t, err, replication.ErrSessionRenewed)

				_, ok := value(t, n.Store, "old", "cart")
				assert.False(t, ok, "the old ID reads nothing on %s", n.Name)
			}
			c.WaitConverged(t)
			for _, n := range c.Nodes() {
				_, ok := value(t, n.Store, "new", "note")
				assert.False(t, ok, "a write to the old ID reached the new session on %s", n.Name)
				cart, _ := value(t, n.Store, "new", "cart")
				assert.Equal(t, "3 apples", cart)
			}
		})
	}
}

// Renamed reports a renewal for RenameGrace, after which the old ID is
// an ended one; writes to it keep failing as renewed.
func TestStore_RenamedLastsTheGrace(t *testing.T) {
	var offset atomic.Int64
	c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Clock = replication.SkewedClock(func() time.Duration { return time.Duration(offset.Load()) })
		return cfg
	}})
	for _, n := range []string{"a", "b", "c"} {
		c.Start(n)
	}
	c.WaitConverged(t)
	ctx := context.Background()
	a := c.Node("a").Store
	require.NoError(t, errOf(a.Save(ctx, "old", put("cart", "3 apples"))))
	require.NoError(t, errOf(a.Rename(ctx, "old", "new", put("user", "ann"))))
	require.NoError(t, errOf(a.Save(ctx, "scs", put("cart", "1 pear"))))
	require.NoError(t, c.Node("b").Store.Retire(ctx, "scs"))
	for _, n := range c.Nodes() {
		for _, id := range []string{"old", "scs"} {
			renamed, err := n.Store.Renamed(ctx, id)
			require.NoError(t, err)
			assert.True(t, renamed, "%s on %s", id, n.Name)
			_, ok := value(t, n.Store, id, "cart")
			assert.False(t, ok, "%s reads nothing on %s", id, n.Name)
		}
	}

	offset.Store(int64(replication.RenameGrace + time.Second))
	for _, n := range c.Nodes() {
		for _, id := range []string{"old", "scs"} {
			renamed, err := n.Store.Renamed(ctx, id)
			require.NoError(t, err)
			assert.False(t, renamed, "%s on %s after the grace", id, n.Name)
			_, err = n.Store.Save(ctx, id, put("note", "late"))
			require.ErrorIs(t, err, replication.ErrSessionRenewed, "%s on %s", id, n.Name)
		}
	}
}
