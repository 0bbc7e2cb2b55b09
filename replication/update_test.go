package replication_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/replication"
)

// increment adds one to a decimal counter.
func increment(old []byte, exists bool) ([]byte, error) {
	n := 0
	if exists {
		var err error
		if n, err = strconv.Atoi(string(old)); err != nil {
			return nil, err
		}
	}
	return []byte(strconv.Itoa(n + 1)), nil
}

// counter reads the counter of session id on every node and requires them
// to agree.
func counter(t *testing.T, nodes []*replication.Store, id string) int {
	t.Helper()
	var want string
	for i, s := range nodes {
		sess, ok, err := s.Get(context.Background(), id)
		require.NoError(t, err)
		require.True(t, ok)
		v, _ := sess.Value("visits")
		if i == 0 {
			want = string(v)
		}
		require.Equal(t, want, string(v), "nodes disagree on the counter")
	}
	n, err := strconv.Atoi(want)
	require.NoError(t, err)
	return n
}

func TestUpdate_ConcurrentIncrementsAreNeverLost(t *testing.T) {
	for _, tc := range []struct {
		mode  replication.Mode
		nodes int
	}{{replication.AllToAll, 3}, {replication.Backups(1), 5}} {
		t.Run(fmt.Sprintf("%s-%d", tc.mode, tc.nodes), func(t *testing.T) {
			c := modeCluster(t, 51, tc.mode, nodeNames(tc.nodes)...)
			ctx := context.Background()
			ns := c.Nodes()
			require.NoError(t, errOf(ns[0].Store.Save(ctx, "s", put("user", "ann"))))
			stores := make([]*replication.Store, len(ns))
			for i, n := range ns {
				stores[i] = n.Store
			}
			const rounds, parallel = 3, 64
			// acked counts the acknowledged increments; failed the ones
			// that lost to an update coordinated elsewhere, which a lease
			// that lapsed on a starved machine can cause (a failover of
			// the coordinator): such an update may or may not have been
			// applied (rule 17), and nothing else may fail.
			var acked, failed atomic.Int64
			for round := 1; round <= rounds; round++ {
				// In the first round every caller reads the counter before
				// any writes it, so the updates certainly race.
				race := newBarrier(parallel, 5*time.Second)
				var wg sync.WaitGroup
				for i := 0; i < parallel; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						fn := increment
						if round == 1 {
							var once sync.Once
							fn = func(old []byte, exists bool) ([]byte, error) {
								once.Do(race.arrive)
								return increment(old, exists)
							}
						}
						_, _, err := stores[i%len(stores)].Update(ctx, "s", "visits", fn)
						switch {
						case err == nil:
							acked.Add(1)
						case errors.Is(err, replication.ErrConflict):
							failed.Add(1)
						default:
							t.Errorf("update: %v", err)
						}
					}()
				}
				wg.Wait()
				c.WaitConverged(t)
				n := int64(counter(t, stores, "s"))
				assert.GreaterOrEqual(t, n, acked.Load(), "round %d: an acknowledged increment was lost", round)
				assert.LessOrEqual(t, n, acked.Load()+failed.Load(), "round %d: counted more than was sent", round)
			}
			assert.Less(t, failed.Load(), int64(rounds*parallel/10), "failovers are rare, not the rule")
			var conflicts uint64
			for _, s := range stores {
				conflicts += s.Stats().UpdateConflicts
			}
			assert.Positive(t, conflicts, "the updates did race")
		})
	}
}

// barrier lets n callers of arrive through together, or each after
// timeout if fewer arrive.
type barrier struct {
	mu      sync.Mutex
	waiting int
	all     chan struct{}
	timeout time.Duration
}

func newBarrier(n int, timeout time.Duration) *barrier {
	return &barrier{waiting: n, all: make(chan struct{}), timeout: timeout}
}

func (b *barrier) arrive() {
	b.mu.Lock()
	b.waiting--
	if b.waiting == 0 {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
	case <-time.After(b.timeout):
	}
}

// TestUpdate_CoordinatorKilledMidRun kills the primary of the session's
// partition while increments run: every acknowledged increment survives,
// and no increment is applied twice.
func TestUpdate_CoordinatorKilledMidRun(t *testing.T) {
	c := modeCluster(t, 52, replication.Backups(1), nodeNames(5)...)
	ctx := context.Background()
	require.NoError(t, errOf(c.Node("n00").Store.Save(ctx, "s", put("user", "ann"))))
	var primary string // of the only partition holding a session
	for _, n := range c.Nodes() {
		for _, p := range n.Store.Partitions() {
			if p.Sessions > 0 {
				primary = p.Owners[0]
			}
		}
	}
	require.NotEmpty(t, primary)
	var writers []*replication.Store
	for _, n := range c.Nodes() {
		if n.Name != primary {
			writers = append(writers, n.Store)
		}
	}
	var acked, attempted atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				attempted.Add(1)
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, _, err := writers[w%len(writers)].Update(cctx, "s", "visits", increment)
				cancel()
				if err == nil {
					acked.Add(1)
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return acked.Load() > 100 }, 10*time.Second, time.Millisecond)
	c.Kill(primary)
	require.Eventually(t, func() bool { return acked.Load() > 300 }, 20*time.Second, time.Millisecond)
	close(stop)
	wg.Wait()
	c.WaitConverged(t)
	got := counter(t, writers, "s")
	assert.GreaterOrEqual(t, int64(got), acked.Load(), "an acknowledged increment was lost")
	assert.LessOrEqual(t, int64(got), attempted.Load(), "an increment was applied twice")
	t.Logf("acknowledged %d, attempted %d, counter %d", acked.Load(), attempted.Load(), got)
}

func TestUpdate_Errors(t *testing.T) {
	c := startCluster(t, "a", "b")
	ctx := context.Background()
	a := c.Node("a").Store
	_, _, err := a.Update(ctx, "missing", "k", increment)
	require.ErrorIs(t, err, replication.ErrSessionEnded)

	require.NoError(t, errOf(a.Save(ctx, "s", put("k", "not a number"))))
	_, _, err = a.Update(ctx, "s", "k", increment)
	var numErr *strconv.NumError
	require.True(t, errors.As(err, &numErr), "fn's error is returned: %v", err)

	v, ver, err := c.Node("b").Store.Update(ctx, "s", "n", increment)
	require.NoError(t, err)
	assert.Equal(t, "1", string(v))
	sess, _, err := a.GetAtLeast(ctx, "s", ver)
	require.NoError(t, err)
	got, _ := sess.Value("n")
	assert.Equal(t, "1", string(got))

	require.NoError(t, a.Destroy(ctx, "s"))
	_, _, err = a.Update(ctx, "s", "n", increment)
	require.ErrorIs(t, err, replication.ErrSessionEnded)
}
