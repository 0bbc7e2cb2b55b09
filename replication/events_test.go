package replication_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// eventLog collects the session events of every node.
type eventLog struct {
	mu     sync.Mutex
	counts map[string]int // "type id" -> how many nodes reported it
}

func (l *eventLog) add(node string) func(replication.SessionEvent) {
	return func(ev replication.SessionEvent) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.counts[ev.Type.String()+" "+ev.Session.ID()]++
	}
}

func (l *eventLog) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for k, v := range l.counts {
		out[k] = v
	}
	return out
}

func TestEvents_EachSessionEventIsReportedOnceInTheCluster(t *testing.T) {
	for _, mode := range []replication.Mode{replication.AllToAll, replication.Backups(1)} {
		t.Run(mode.String(), func(t *testing.T) {
			clock := hlc.NewManualClock(replication.SystemClock().Now())
			log := &eventLog{counts: map[string]int{}}
			c := testcluster.New(t, testcluster.Options{Seed: 31, Config: func(name string) replication.Config {
				cfg := replication.DefaultLocalConfig()
				cfg.Mode = mode
				cfg.Clock = replication.WallClock(clock.Now)
				cfg.AntiEntropyInterval = 50 * time.Millisecond
				cfg.OnSessionEvent = log.add(name)
				return cfg
			}})
			for _, n := range nodeNames(4) {
				c.Start(n)
			}
			c.WaitConverged(t)
			ctx := context.Background()
			nodes := c.Nodes()
			want := map[string]int{}
			for i := 0; i < 40; i++ {
				id := fmt.Sprint("s", i)
				_, err := nodes[i%4].Store.Save(ctx, id, replication.Changes{Set: map[string][]byte{"k": []byte("v")}, Lifetime: time.Hour})
				require.NoError(t, err)
				want["created "+id] = 1
			}
			for i := 0; i < 10; i++ {
				id := fmt.Sprint("s", i)
				require.NoError(t, nodes[(i+1)%4].Store.Destroy(ctx, id))
				require.NoError(t, nodes[(i+2)%4].Store.Destroy(ctx, id), "destroying twice reports once")
				want["destroyed "+id] = 1
			}
			_, err := nodes[0].Store.Rename(ctx, "s10", "s10-new", replication.Changes{})
			require.NoError(t, err)
			want["created s10-new"], want["destroyed s10"] = 1, 1
			// More writes to live sessions report nothing.
			_, err = nodes[1].Store.Save(ctx, "s11", put("k", "again"))
			require.NoError(t, err)
			c.WaitConverged(t)

			clock.Advance(2 * time.Hour)
			for i := 10; i < 40; i++ {
				id := fmt.Sprint("s", i)
				if i == 10 {
					id = "s10-new"
				}
				want["expired "+id] = 1
			}
			require.Eventually(t, func() bool { return assert.ObjectsAreEqual(want, log.snapshot()) },
				10*time.Second, 10*time.Millisecond, "events: %v", log.snapshot())
		})
	}
}

// A logout whose write never reaches the session's primary, which gets
// it by anti-entropy instead, is still reported, once.
func TestEvents_DestroyThatReachesThePrimaryOnlyByRepairIsReported(t *testing.T) {
	log := &eventLog{counts: map[string]int{}}
	c := testcluster.New(t, testcluster.Options{Seed: 5, Config: func(name string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.AntiEntropyInterval = 50 * time.Millisecond
		cfg.ReadLease = 50 * time.Millisecond // the write to b fails: short leases keep the waits short
		cfg.OnSessionEvent = log.add(name)
		return cfg
	}})
	a := c.Start("a")
	c.Start("b")
	c.WaitConverged(t)
	ctx := context.Background()
	want := map[string]int{}
	for i := 0; i < 20; i++ {
		id := fmt.Sprint("s", i)
		_, err := a.Store.Save(ctx, id, put("k", "v"))
		require.NoError(t, err)
		want["created "+id] = 1
	}
	c.WaitConverged(t)

	c.Net.Drop("a", "b", 1) // b, the primary of about half of them, hears no destroy
	for i := 0; i < 20; i++ {
		id := fmt.Sprint("s", i)
		require.NoError(t, a.Store.Destroy(ctx, id))
		want["destroyed "+id] = 1
	}
	c.Net.Heal()
	c.WaitConverged(t)
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual(want, log.snapshot()) },
		10*time.Second, 10*time.Millisecond, "events: %v", log.snapshot())
}
