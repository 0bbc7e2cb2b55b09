package replication_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/meshtest"
	"github.com/sessionmesh/sessionmesh/replication"
)

// TestFullyReplicated_FalseAtOnceWhenAnOwnerDies kills one of five real
// nodes (TCP, memberlist) in Backups(1) mode and checks that every
// survivor stops reporting itself fully replicated within 50 ms, long
// before the membership notices, and does not report it again until the
// dead node owns nothing in its view and its copies are restored.
func TestFullyReplicated_FalseAtOnceWhenAnOwnerDies(t *testing.T) {
	nodes := meshtest.Start(t, 5, meshtest.Options{Store: func(_ string, cfg *replication.Config) {
		cfg.Mode = replication.Backups(1)
	}})
	ctx := context.Background()
	for i := range 100 {
		require.NoError(t, errOf(nodes[i%5].Store.Save(ctx, fmt.Sprint("s", i), put("user", "u"))))
	}
	survivors := nodes[:4]
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if !n.Store.FullyReplicated() {
				return false
			}
		}
		return true
	}, 20*time.Second, time.Millisecond, "fully replicated before the kill")

	sinceKill := replication.SystemClock().Monotonic
	nodes[4].Kill()
	falseAfter := make([]time.Duration, len(survivors))
	require.Eventually(t, func() bool {
		done := true
		for i, n := range survivors {
			asked := sinceKill()
			if falseAfter[i] == 0 {
				if !n.Store.FullyReplicated() {
					falseAfter[i] = sinceKill()
				} else {
					// A busy machine may delay this goroutine, never
					// the store's state: only what is read after the
					// bound counts.
					assert.Less(t, asked, 50*time.Millisecond, "%s fully replicated after the kill", n.Name)
				}
			}
			done = done && falseAfter[i] != 0
		}
		return done
	}, 5*time.Second, 100*time.Microsecond)
	t.Logf("not fully replicated after %v", falseAfter)

	// False until the dead node owns nothing in the view and
	// re-replication is done: never true while a survivor still counts it
	// as an owner. (Its refused connections take its partitions away
	// before the membership drops it.)
	dead := nodes[4].Name
	require.Eventually(t, func() bool {
		all := true
		for _, n := range survivors {
			if n.Store.FullyReplicated() {
				for _, p := range n.Store.Partitions() {
					if !assert.NotContains(t, p.Owners, dead, "%s reports fully replicated with the dead node an owner", n.Name) {
						return true
					}
				}
			} else {
				all = false
			}
		}
		return all
	}, 20*time.Second, time.Millisecond)
	t.Logf("fully replicated again %v after the kill", sinceKill())
	for i := range 100 {
		_, ok, err := survivors[i%4].Store.Get(ctx, fmt.Sprint("s", i))
		require.NoError(t, err)
		require.True(t, ok, "s%d", i)
	}
}
