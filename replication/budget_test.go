package replication_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// TestStore_Budget fills a three-node all-to-all cluster to its session
// budget and checks the overload answer: every node refuses new sessions
// (Save and Rename) with ErrOverloaded and counts them, while the sessions
// that exist keep taking writes on every node and replicating.
func TestStore_Budget(t *testing.T) {
	const budget = 40
	c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.MaxSessions = budget
		return cfg
	}})
	a, b, d := c.Start("a"), c.Start("b"), c.Start("c")
	c.WaitReady(t)
	ctx := context.Background()
	nodes := []*testcluster.Node{a, b, d}

	for i := range budget {
		require.NoError(t, errOf(nodes[i%3].Store.Save(ctx, fmt.Sprint("s", i), put("user", fmt.Sprint("u", i)))), "session %d", i)
	}
	c.WaitConverged(t)
	for _, n := range nodes {
		st := n.Store.Stats()
		assert.Equal(t, budget, st.Sessions, n.Name)
		assert.Equal(t, budget, st.MaxSessions, n.Name)
		assert.Positive(t, st.Bytes, n.Name)
		require.ErrorIs(t, errOf(n.Store.Save(ctx, "new-"+n.Name, put("user", "x"))), replication.ErrOverloaded, n.Name)
		require.ErrorIs(t, errOf(n.Store.Rename(ctx, "s1", "renamed-"+n.Name, put())), replication.ErrOverloaded, n.Name)
		assert.Equal(t, uint64(2), n.Store.Stats().Overloaded, n.Name)
		_, ok, err := n.Store.Get(ctx, "new-"+n.Name)
		require.NoError(t, err)
		assert.False(t, ok, "a refused session is stored nowhere")
	}
	// Internal records (reserved IDs) have a sixteenth of headroom, so a
	// session admitted under the budget can be indexed.
	for i := range budget/16 + 1 {
		require.NoError(t, errOf(a.Store.Save(ctx, fmt.Sprint("~index-", i), put("ids", "x"))), "reserved record %d", i)
	}
	require.ErrorIs(t, errOf(a.Store.Save(ctx, "~index-full", put("ids", "x"))), replication.ErrOverloaded)

	// Sessions that exist keep working, on every node.
	for i, n := range nodes {
		require.NoError(t, errOf(n.Store.Save(ctx, fmt.Sprint("s", i), put("visits", "1"))), n.Name)
		_, _, err := n.Store.Update(ctx, fmt.Sprint("s", i+3), "visits", func(old []byte, _ bool) ([]byte, error) { return append(old, '1'), nil })
		require.NoError(t, err, n.Name)
	}
	c.WaitConverged(t)
	for _, n := range nodes {
		for i := range 3 {
			s, ok, err := n.Store.Get(ctx, fmt.Sprint("s", i))
			require.NoError(t, err)
			require.True(t, ok)
			v, _ := s.Value("visits")
			assert.Equal(t, "1", string(v), "%s: s%d", n.Name, i)

		}
	}
}

// TestStore_BudgetNeverRefusesPeers checks that records from peers are
// never refused for the budget: a node with a smaller budget than its peer
// holds every session the peer created (a refusal would leave the owners
// disagreeing forever), refuses only the sessions it would create itself,
// and serves writes to the sessions it holds.
func TestStore_BudgetNeverRefusesPeers(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Seed: 2, Config: func(name string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.MaxSessions = 10
		if name == "big" {
			cfg.MaxSessions = -1
		}
		return cfg
	}})
	big, small := c.Start("big"), c.Start("small")
	c.WaitReady(t)
	ctx := context.Background()
	for i := range 30 {
		require.NoError(t, errOf(big.Store.Save(ctx, fmt.Sprint("s", i), put("user", "u"))))
	}
	c.WaitConverged(t)
	st := small.Store.Stats()
	assert.Equal(t, 30, st.Sessions, "small holds what its peer created, over its own budget")
	assert.Zero(t, st.Rejected)
	assert.Zero(t, big.Store.Stats().MaxSessions, "negative: no bound")
	require.ErrorIs(t, errOf(small.Store.Save(ctx, "mine", put("user", "u"))), replication.ErrOverloaded)
	require.NoError(t, errOf(small.Store.Save(ctx, "s7", put("visits", "2"))))
	require.NoError(t, small.Store.Destroy(ctx, "s8"), "ending a session is never refused")
}

// TestStore_BudgetBytes checks the bound on bytes: a session that would
// take the node past MaxBytes is refused, a smaller one fits.
func TestStore_BudgetBytes(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Seed: 3, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.MaxBytes = 4 << 10
		return cfg
	}})
	a := c.Start("a")
	c.WaitReady(t)
	ctx := context.Background()
	big := string(make([]byte, 3<<10))
	require.NoError(t, errOf(a.Store.Save(ctx, "big", put("v", big))))
	require.ErrorIs(t, errOf(a.Store.Save(ctx, "big2", put("v", big))), replication.ErrOverloaded)
	require.NoError(t, errOf(a.Store.Save(ctx, "small", put("v", "x"))))
	st := a.Store.Stats()
	assert.Equal(t, int64(4<<10), st.MaxBytes)
	assert.LessOrEqual(t, st.Bytes, st.MaxBytes)
	assert.Equal(t, uint64(1), st.Overloaded)
}

// TestStore_BudgetBackups fills a three-node Backups(1) cluster: each node
// counts what it holds (two thirds of the sessions), so the cluster takes
// about half as many sessions again as one node's budget before new ones
// are refused, and no node holds much more than its budget.
func TestStore_BudgetBackups(t *testing.T) {
	const budget = 60
	c := testcluster.New(t, testcluster.Options{Seed: 4, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = replication.Backups(1)
		cfg.MaxSessions = budget
		return cfg
	}})
	nodes := []*testcluster.Node{c.Start("a"), c.Start("b"), c.Start("c")}
	c.WaitReady(t)
	c.WaitConverged(t)
	ctx := context.Background()
	accepted, refusedInARow := 0, 0
	for i := 0; refusedInARow < 30; i++ {
		_, err := nodes[i%3].Store.Save(ctx, fmt.Sprint("s", i), put("user", "u"))
		switch {
		case err == nil:
			accepted++
			refusedInARow = 0
		case errors.Is(err, replication.ErrOverloaded):
			refusedInARow++
		default:
			require.NoError(t, err)
		}
	}
	c.WaitConverged(t)
	held := 0
	for _, n := range nodes {
		st := n.Store.Stats()
		held += st.Sessions
		assert.LessOrEqual(t, st.Sessions, budget+budget/4, "%s holds about its budget", n.Name)
	}
	assert.Equal(t, 2*accepted, held, "two copies of each")
	assert.Greater(t, accepted, budget, "the cluster holds more than one node's budget")
	t.Logf("accepted %d sessions; nodes hold %d copies in all (budget %d each)", accepted, held, budget)
}
