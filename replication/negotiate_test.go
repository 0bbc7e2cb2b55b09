package replication_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// A node that joins a cluster whose members refuse it (another protocol
// version, label or secret) must not report healthy: a rollout of a bad
// build stops at its first node. The members it joined stay healthy: they
// serve their users, and the newcomer is the one that is wrong.
func TestNegotiate_NodeRefusedByTheClusterIsNotHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testcluster.New(t, testcluster.Options{Seed: 61})
		a, b := c.Start("a"), c.Start("b")
		c.WaitReady(t)
		c.Net.Refuse("n", "a", "another cluster label")
		elapsed := replication.SystemClock().Monotonic
		n := c.Start("n")

		var err error
		require.Eventually(t, func() bool { err = n.Store.Health(); return err != nil }, 5*time.Second, time.Millisecond,
			"the refused newcomer reports a problem")
		assert.Less(t, elapsed(), time.Second, "not healthy within a second of its first exchange")
		require.ErrorIs(t, err, replication.ErrPeerRefused)
		assert.ErrorContains(t, err, "a: ")
		assert.ErrorContains(t, err, "another cluster label", "Health says why")
		refused := map[string]string{}
		for _, p := range n.Store.Peers() {
			refused[p.Name] = p.Refusal
		}
		assert.Contains(t, refused["a"], "another cluster label")
		assert.Empty(t, refused["b"])
		for _, m := range []*testcluster.Node{a, b} {
			assert.NoError(t, m.Store.Health(), "%s: a newcomer's problem is not the cluster's", m.Name)
		}

		// Once the member accepts it (the operator fixed the label), it is
		// healthy again at its next exchange with that member.
		c.Net.Refuse("n", "a", "")
		require.Eventually(t, func() bool { return n.Store.Health() == nil }, 5*time.Second, 5*time.Millisecond)
		c.WaitConverged(t)
	})
}

// A member refused by a node that joined after it stays healthy, and shows
// the refusal in Peers.
func TestNegotiate_RefusalByANewcomerKeepsTheMemberHealthy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := testcluster.New(t, testcluster.Options{Seed: 62})
		a := c.Start("a")
		c.WaitReady(t)
		c.Net.Refuse("a", "n", "unsupported protocol version")
		c.Start("n")
		require.Eventually(t, func() bool {
			for _, p := range a.Store.Peers() {
				if p.Name == "n" && p.Refusal != "" {
					return true
				}
			}
			return false
		}, 5*time.Second, 5*time.Millisecond, "a notices that n refuses it")
		assert.NoError(t, a.Store.Health())
	})
}
