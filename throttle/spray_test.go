package throttle_test

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/throttle"
)

// sprayKeys returns how many distinct keys TestLimiter_SprayStaysWithinBound
// sprays: $SESSIONMESH_SPRAY_KEYS, else 200 000 (20 000 with -short).
// docs/benchmarks.md records a run with 1 000 000.
func sprayKeys(t *testing.T) int {
	if s := os.Getenv("SESSIONMESH_SPRAY_KEYS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "SESSIONMESH_SPRAY_KEYS")
		return n
	}
	if testing.Short() {
		return 20_000
	}
	return 200_000
}

// heapInUse returns the bytes of live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestLimiter_SprayStaysWithinBound sprays distinct keys (random user
// names, as an attacker would) through three nodes over loopback TCP: the
// records held stay within MaxKeys per node, the heap with them, and the
// sessions saved before, and a key counted before, work as before.
func TestLimiter_SprayStaysWithinBound(t *testing.T) {
	const maxKeys = 5_000
	keys := sprayKeys(t)
	c := testcluster.New(t, testcluster.Options{TCP: true})
	names := []string{"a", "b", "c"}
	var ls []*throttle.Limiter
	for _, name := range names {
		n := c.Start(name)
		l, err := throttle.New(n.Store, 5, time.Hour, throttle.Options{Name: "user", MaxKeys: maxKeys, Now: fixedNow()})
		require.NoError(t, err)
		ls = append(ls, l)
	}
	c.WaitReady(t)
	ctx := context.Background()
	const sessions = 100
	for i := range sessions {
		_, err := c.Node(names[i%3]).Store.Save(ctx, "s"+strconv.Itoa(i), replication.Changes{
			Set: map[string][]byte{"user": []byte("u" + strconv.Itoa(i))}, Lifetime: time.Hour,
		})
		require.NoError(t, err)
	}
	ok, _, err := ls[0].Allow(ctx, "user:ann")
	require.NoError(t, err)
	require.True(t, ok)
	before := heapInUse()

	start := time.Now()
	var next, allowed, full, cannot atomic.Int64
	var failed atomic.Pointer[error]
	var perNode [3]atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			l := ls[w%3]
			for {
				i := next.Add(1)
				if i > int64(keys) {
					return
				}
				ok, _, err := l.Allow(ctx, "user:spray-"+strconv.FormatInt(i, 36))
				switch {
				case err == nil && ok:
					allowed.Add(1)
					perNode[w%3].Add(1)
				case errors.Is(err, throttle.ErrFull) && !ok:
					full.Add(1)
				case err != nil && !ok:
					// Failed closed: a peer too slow to answer within
					// WriteTimeout (the race detector on a busy machine).
					cannot.Add(1)
				default:
					e := err
					if e == nil {
						e = errors.New("a new key refused without ErrFull")
					}
					failed.Store(&e)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if e := failed.Load(); e != nil {
		t.Fatal(*e)
	}
	after := heapInUse()
	t.Logf("per node: %d %d %d", perNode[0].Load(), perNode[1].Load(), perNode[2].Load())
	require.LessOrEqual(t, allowed.Load(), int64(len(names)*maxKeys), "new keys beyond the bound")
	require.Equal(t, int64(keys), allowed.Load()+full.Load()+cannot.Load())
	require.LessOrEqual(t, cannot.Load()*100, int64(keys), "more than 1%% of the calls could not count")
	for _, n := range c.Nodes() {
		held := n.Store.Stats().Sessions
		require.LessOrEqual(t, held, sessions+1+len(names)*maxKeys, "records held by %s", n.Name)
	}
	grown := int64(after) - int64(before)
	perRecord := grown / max(1, int64(len(names))*allowed.Load())
	t.Logf("%d keys sprayed in %v (%.0f/s): %d counted, %d refused with ErrFull, %d refused uncounted; heap %d -> %d MiB (%d B per record and node)",
		keys, elapsed.Round(time.Millisecond), float64(keys)/elapsed.Seconds(), allowed.Load(), full.Load(), cannot.Load(),
		before>>20, after>>20, perRecord)
	// Three stores hold at most 3×maxKeys records each: a few KiB per
	// record at the very most, whatever the number of keys sprayed.
	require.Less(t, grown, int64(len(names)*len(names)*maxKeys*4096), "heap grew by %d bytes", grown)

	for i := range sessions {
		for _, n := range c.Nodes() {
			s, found, err := n.Store.Get(ctx, "s"+strconv.Itoa(i))
			require.NoError(t, err)
			require.True(t, found, "session s%d on %s", i, n.Name)
			v, _ := s.Value("user")
			require.Equal(t, "u"+strconv.Itoa(i), string(v))
		}
		_, err := c.Node(names[(i+1)%3]).Store.Save(ctx, "s"+strconv.Itoa(i), replication.Changes{
			Set: map[string][]byte{"seen": []byte("1")},
		})
		require.NoError(t, err, "a write to session s%d after the spray", i)
	}
	for i, l := range ls {
		ok, _, err := l.Allow(ctx, "user:ann")
		require.NoError(t, err)
		require.True(t, ok, "a key counted before the spray, on %s", names[i])
	}
}
