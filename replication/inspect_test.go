package replication_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/replication"
)

func TestStore_ScanSeesEverySessionFromAnyNode(t *testing.T) {
	c := modeCluster(t, 11, replication.Backups(1), nodeNames(5)...)
	writeSessions(t, c, 200)
	ctx := context.Background()
	require.NoError(t, c.Node("n00").Store.Destroy(ctx, "s7"))
	for _, n := range c.Nodes() {
		seen := map[string]bool{}
		require.NoError(t, n.Store.Scan(ctx, func(s replication.Session) bool {
			assert.False(t, seen[s.ID()], "%s seen twice", s.ID())
			seen[s.ID()] = true
			return true
		}))
		assert.Len(t, seen, 199, "node %s", n.Name)
		assert.False(t, seen["s7"], "destroyed sessions are not listed")
	}
	stopped := 0
	require.NoError(t, c.Node("n01").Store.Scan(ctx, func(replication.Session) bool { stopped++; return stopped < 10 }))
	assert.Equal(t, 10, stopped)
}

func TestStore_PartitionsDescribeOwnership(t *testing.T) {
	c := modeCluster(t, 12, replication.Backups(1), nodeNames(4)...)
	writeSessions(t, c, 100)
	c.WaitConverged(t)
	owners := map[int][]string{}
	sessions := 0
	for _, n := range c.Nodes() {
		ps := n.Store.Partitions()
		require.Len(t, ps, replication.Partitions)
		for _, p := range ps {
			require.Len(t, p.Owners, 2)
			if prev, ok := owners[p.Partition]; ok {
				assert.Equal(t, prev, p.Owners, "nodes agree on the owners of partition %d", p.Partition)
			}
			owners[p.Partition] = p.Owners
			assert.Equal(t, p.Owned, p.Owners[0] == n.Name || p.Owners[1] == n.Name)
			assert.Equal(t, p.Owned, p.Complete)
			sessions += p.Sessions
		}
	}
	assert.Equal(t, 200, sessions)
}

func TestStore_ExpiresAtExtendsTheDeadline(t *testing.T) {
	c := startCluster(t, "a", "b")
	ctx := context.Background()
	a, b := c.Node("a").Store, c.Node("b").Store
	require.NoError(t, errOf(a.Save(ctx, "s", replication.Changes{Set: map[string][]byte{"k": []byte("v")}, Lifetime: time.Minute})))
	later := replication.SystemClock().Now().Add(time.Hour).Truncate(time.Millisecond)
	require.NoError(t, errOf(a.Save(ctx, "s", replication.Changes{Set: map[string][]byte{"k": []byte("w")}, ExpiresAt: later})))
	for _, s := range []*replication.Store{a, b} {
		sess, ok, err := s.Get(ctx, "s")
		require.NoError(t, err)
		require.True(t, ok)
		assert.True(t, later.Equal(sess.Expires()), "got %v", sess.Expires())
	}
	assert.Equal(t, uint64(2), a.Stats().WriteLatency.Count)
}

func TestStore_PeersReportWhatTheyHold(t *testing.T) {
	c := modeCluster(t, 13, replication.Backups(1), nodeNames(3)...)
	writeSessions(t, c, 90)
	c.WaitConverged(t)
	require.Eventually(t, func() bool {
		total := c.Node("n00").Store.Stats().Sessions
		for _, p := range c.Node("n00").Store.Peers() {
			total += p.Sessions
		}
		return total == 180
	}, 10*time.Second, 10*time.Millisecond)
	peers := c.Node("n00").Store.Peers()
	require.Len(t, peers, 2)
	assert.Equal(t, "n01", peers[0].Name)
	for _, p := range peers {
		assert.False(t, p.Degraded)
		assert.Positive(t, p.CompletePartitions)
		assert.False(t, p.LastStatus.IsZero())
	}
}
