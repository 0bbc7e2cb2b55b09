package replication_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// TestSnapshotCost measures what snapshots cost a node holding 100,000
// sessions of 1 KiB: the time to write one and to load it, its size on
// disk, and the latency of requests (a Get and a Save of a random session)
// before and while a snapshot is written. It logs the figures
// (docs/operations.md quotes them) and checks only that the snapshot
// loads whole. It runs only when SESSIONMESH_SNAPSHOT_COST is set:
//
//	SESSIONMESH_SNAPSHOT_COST=1 go test -run '^TestSnapshotCost$' -v ./replication
func TestSnapshotCost(t *testing.T) {
	if os.Getenv("SESSIONMESH_SNAPSHOT_COST") == "" || testing.Short() {
		t.Skip("a measurement: set SESSIONMESH_SNAPSHOT_COST=1 to run it")
	}
	const sessions = 100_000
	dir := t.TempDir()
	c := testcluster.New(t, testcluster.Options{Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.SnapshotDir = dir
		cfg.SnapshotInterval = time.Hour // written by the test only
		cfg.SnapshotKey = []byte(strings.Repeat("k", 32))
		return cfg
	}})
	s := c.Start("a").Store
	c.WaitReady(t)
	ctx := context.Background()
	cart := strings.Repeat("c", 1000)
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = fmt.Sprintf("session-%038d", i) // 46 bytes, like a real ID
		_, err := s.Save(ctx, ids[i], put("user", fmt.Sprintf("user-%d", i), "cart", cart))
		require.NoError(t, err)
	}

	var writes []time.Duration
	for i := range 3 {
		_, err := s.Save(ctx, ids[i], put("visits", fmt.Sprint(i))) // so that the write is not skipped
		require.NoError(t, err)
		require.NoError(t, s.WriteSnapshot())
		last, _ := s.Snapshots()
		writes = append(writes, last.Took)
	}
	last, _ := s.Snapshots()
	fi, err := os.Stat(filepath.Join(dir, "sessions.snap"))
	require.NoError(t, err)
	t.Logf("write: %d records, %.1f MiB on disk (%.0f bytes per session), took %v", last.Records, float64(fi.Size())/(1<<20), float64(fi.Size())/sessions, writes)

	// Requests before and during a write.
	measure := func(during func()) (p50, p99, worst time.Duration, n int) {
		var mu sync.Mutex
		var lat []time.Duration
		var stop atomic.Bool
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(g), 1))
				var mine []time.Duration
				for !stop.Load() {
					id := ids[r.IntN(sessions)]
					elapsed := replication.SystemClock().Monotonic
					_, _, err := s.Get(ctx, id)
					if err == nil {
						_, err = s.Save(ctx, id, put("visits", "1"))
					}
					if err != nil {
						t.Error(err)
						return
					}
					mine = append(mine, elapsed())
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		during()
		stop.Store(true)
		wg.Wait()
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		return pct(0.50), pct(0.99), lat[len(lat)-1], len(lat)
	}
	var tookDuring time.Duration
	for round := range 3 {
		p50, p99, worst, n := measure(func() { time.Sleep(time.Second) })
		t.Logf("round %d, requests without a snapshot (1 s):  %6d, p50 %v, p99 %v, max %v", round, n, p50, p99, worst)
		p50, p99, worst, n = measure(func() {
			elapsed := replication.SystemClock().Monotonic
			require.NoError(t, s.WriteSnapshot())
			tookDuring = elapsed()
		})
		t.Logf("round %d, requests while a snapshot is written (%v): %6d, p50 %v, p99 %v, max %v", round, tookDuring.Round(time.Millisecond), n, p50, p99, worst)
	}

	c.Kill("a")
	s = c.Start("a").Store
	_, loaded := s.Snapshots()
	t.Logf("load: %d records in %v", loaded.Records, loaded.Took)
	require.Equal(t, sessions, loaded.Records)
	c.WaitReady(t)
	require.Equal(t, sessions, s.Stats().Sessions)
}
