package throttle_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/internal/sessionid"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/throttle"
)

// start starts a cluster of the named nodes with ownership mode, waits
// until they are settled, and returns it with one limiter per node, in the
// order of names, all with opts (Now fixed at the start, so that the test
// stays in one window). Ready is not enough: the joins fence the nodes
// that started first, and a node that is ready but still merging with the
// others (resync) passes updates to the next owner, so a burst that starts
// then can meet two coordinators, and updates fail with ErrConflict.
func start(t *testing.T, mode replication.Mode, limit int, window time.Duration, opts throttle.Options, names ...string) (*testcluster.Cluster, []*throttle.Limiter) {
	t.Helper()
	c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.AntiEntropyInterval = 50 * time.Millisecond
		cfg.Mode = mode
		return cfg
	}})
	var ls []*throttle.Limiter
	for _, name := range names {
		n := c.Start(name)
		l, err := throttle.New(n.Store, limit, window, opts)
		require.NoError(t, err)
		ls = append(ls, l)
	}
	waitSettled(t, c, len(names))
	return c, ls
}

// fixedNow returns a clock stopped at the current time.
func fixedNow() func() time.Time {
	now := time.Now()
	return func() time.Time { return now }
}

// burst makes n concurrent calls of Allow for key, the i-th on ls[i%len(ls)],
// and returns how many were allowed. Every refusal must come with a
// retryAfter within the window, and no call may fail.
func burst(t *testing.T, ls []*throttle.Limiter, key string, n int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			l := ls[i%len(ls)]
			ok, retryAfter, err := l.Allow(ctx, key)
			if !assert.NoError(t, err) {
				return
			}
			if ok {
				allowed.Add(1)
				assert.Zero(t, retryAfter)
			} else {
				assert.Positive(t, retryAfter)
				assert.LessOrEqual(t, retryAfter, l.Window())
			}
		})
	}
	wg.Wait()
	return int(allowed.Load())
}

// waitSettled waits until the live nodes of c, n of them, see each other
// and answer from their own copies.
func waitSettled(t *testing.T, c *testcluster.Cluster, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		nodes := c.Nodes()
		for _, node := range nodes {
			st := node.Store.Stats()
			if st.Peers != n-1 || !st.Authoritative || !st.Ready {
				return false
			}
		}
		return len(nodes) == n
	}, 10*time.Second, 5*time.Millisecond)
}

// primaryOf returns the name of the primary owner of id, as node s sees it.
func primaryOf(s *replication.Store, id string) string {
	pi := int(xxhash.Sum64String(id) % uint64(len(s.Partitions())))
	return s.Partitions()[pi].Owners[0]
}

// TestLimiter_ConcurrentCallsAcrossNodesAllowExactlyLimit makes 64
// concurrent calls for one key through three nodes, round robin: exactly
// the limit is allowed, in both ownership modes.
func TestLimiter_ConcurrentCallsAcrossNodesAllowExactlyLimit(t *testing.T) {
	for _, mode := range []replication.Mode{replication.AllToAll, replication.Backups(1)} {
		t.Run(mode.String(), func(t *testing.T) {
			_, ls := start(t, mode, 5, time.Hour, throttle.Options{Name: "user", Now: fixedNow()}, "a", "b", "c")
			require.Equal(t, 5, burst(t, ls, "user:ann", 64))
			require.Equal(t, 0, burst(t, ls, "user:ann", 16), "the limit holds on every node")
			require.Equal(t, 5, burst(t, ls, "user:bob", 64), "keys count apart")
		})
	}
}

// TestLimiter_CountSurvivesKillOfPrimary counts part of the limit, kills
// the primary owner of the key's record, and makes 64 concurrent calls
// through the two survivors: exactly the rest of the limit is allowed.
// Restarted, the node refuses the key like the others.
func TestLimiter_CountSurvivesKillOfPrimary(t *testing.T) {
	names := []string{"a", "b", "c"}
	for _, mode := range []replication.Mode{replication.AllToAll, replication.Backups(1)} {
		t.Run(mode.String(), func(t *testing.T) {
			now := fixedNow()
			c, ls := start(t, mode, 5, time.Hour, throttle.Options{Name: "user", Now: now}, names...)
			require.Equal(t, 3, burst(t, ls, "user:ann", 3))
			victim := primaryOf(c.Node("a").Store, throttle.RecordID("user", time.Hour, "user:ann", now()))
			c.Kill(victim)
			var rest []*throttle.Limiter
			for i, name := range names {
				if name != victim {
					rest = append(rest, ls[i])
				}
			}
			// The survivors' views change after the kill: the store's
			// failover rule makes updates that race with that change fail
			// (ErrConflict), and a failed update may still count. So the
			// burst waits until they agree; the real-process test in
			// examples/login sends its burst right after the SIGKILL.
			waitSettled(t, c, len(rest))
			require.Equal(t, 2, burst(t, rest, "user:ann", 64), "after the kill of %s", victim)

			// The victim comes back: its count is the cluster's, not zero.
			n := c.Start(victim)
			c.WaitReady(t)
			back, err := throttle.New(n.Store, 5, time.Hour, throttle.Options{Name: "user", Now: now})
			require.NoError(t, err)
			require.Equal(t, 0, burst(t, append(rest, back), "user:ann", 30), "after %s restarted", victim)
		})
	}
}

// TestLimiter_ResetClearsCountOnEveryNode fills the limit, resets it on
// one node and finds the full limit available again through the others.
func TestLimiter_ResetClearsCountOnEveryNode(t *testing.T) {
	_, ls := start(t, replication.AllToAll, 5, time.Hour, throttle.Options{Name: "user", Now: fixedNow()}, "a", "b", "c")
	ctx := context.Background()
	require.NoError(t, ls[0].Reset(ctx, "user:never-counted"))
	require.Equal(t, 5, burst(t, ls, "user:ann", 20))
	require.NoError(t, ls[1].Reset(ctx, "user:ann"))
	require.NoError(t, ls[1].Reset(ctx, "user:ann"), "a second reset has nothing to do")
	require.Equal(t, 5, burst(t, ls[1:], "user:ann", 20))
}

// TestLimiter_CountsExpireWithTheirWindow refuses a key until its window
// ends, then allows it again, and the window's record leaves the store.
func TestLimiter_CountsExpireWithTheirWindow(t *testing.T) {
	c, ls := start(t, replication.AllToAll, 1, 300*time.Millisecond, throttle.Options{Name: "short"}, "a", "b")
	ctx := context.Background()
	var retryAfter time.Duration
	var deadline time.Time // no later than the window's end
	require.Eventually(t, func() bool {
		// Two calls in one window: the first allowed, the second not.
		ok1, _, err1 := ls[0].Allow(ctx, "k")
		t0 := time.Now()
		ok2, ra, err2 := ls[1].Allow(ctx, "k")
		retryAfter, deadline = ra, t0.Add(ra)
		return err1 == nil && err2 == nil && ok1 && !ok2 && ra > 50*time.Millisecond
	}, 10*time.Second, time.Millisecond)
	require.LessOrEqual(t, retryAfter, 300*time.Millisecond)
	require.Eventually(t, func() bool {
		ok, _, err := ls[1].Allow(ctx, "k")
		return err == nil && ok
	}, 10*time.Second, 5*time.Millisecond)
	require.False(t, time.Now().Before(deadline), "allowed before the window ended")
	require.Eventually(t, func() bool {
		for _, n := range c.Nodes() {
			if n.Store.Stats().Sessions > 1 { // at most the current window's
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "expired windows are swept")
}

// TestLimiter_MaxKeysFailsClosedForNewKeysOnly fills a node's key budget:
// new keys are refused with ErrFull, even by a limiter that fails open,
// while keys already counted go on as before.
func TestLimiter_MaxKeysFailsClosedForNewKeysOnly(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		_, ls := start(t, replication.AllToAll, 2, time.Hour, throttle.Options{Name: "user", MaxKeys: 10, FailOpen: failOpen, Now: fixedNow()}, "a", "b")
		ctx := context.Background()
		for i := range 10 {
			ok, _, err := ls[0].Allow(ctx, "user:"+string(rune('a'+i)))
			require.NoError(t, err)
			require.True(t, ok)
		}
		ok, retryAfter, err := ls[0].Allow(ctx, "user:new")
		require.ErrorIs(t, err, throttle.ErrFull)
		require.False(t, ok)
		require.Positive(t, retryAfter)
		ok, _, err = ls[0].Allow(ctx, "user:a")
		require.NoError(t, err)
		require.True(t, ok, "a key counted before the bound is still counted")
		ok, _, err = ls[0].Allow(ctx, "user:a")
		require.NoError(t, err)
		require.False(t, ok, "and still limited")
		ok, _, err = ls[1].Allow(ctx, "user:new")
		require.NoError(t, err, "the bound is per node")
		require.True(t, ok)
	}
}

// TestLimiter_FailOpenOrClosedWhenStoreCannotCount checks both failure
// modes on a closed store and on an owner that stopped answering.
func TestLimiter_FailOpenOrClosedWhenStoreCannotCount(t *testing.T) {
	t.Run("closed store", func(t *testing.T) {
		c, ls := start(t, replication.AllToAll, 5, time.Hour, throttle.Options{Name: "closed", ErrorRetryAfter: 3 * time.Second}, "a")
		open, err := throttle.New(c.Node("a").Store, 5, time.Hour, throttle.Options{Name: "open", FailOpen: true})
		require.NoError(t, err)
		c.Kill("a")
		ok, retryAfter, err := ls[0].Allow(context.Background(), "k")
		require.ErrorIs(t, err, replication.ErrClosed)
		require.False(t, ok)
		require.Equal(t, 3*time.Second, retryAfter)
		ok, retryAfter, err = open.Allow(context.Background(), "k")
		require.ErrorIs(t, err, replication.ErrClosed)
		require.True(t, ok)
		require.Zero(t, retryAfter)
		require.ErrorIs(t, ls[0].Reset(context.Background(), "k"), replication.ErrClosed)
	})
	t.Run("silent owner", func(t *testing.T) {
		now := fixedNow()
		c, ls := start(t, replication.Backups(0), 5, time.Hour, throttle.Options{Name: "silent", Now: now}, "a", "b")
		open, err := throttle.New(c.Node("a").Store, 5, time.Hour, throttle.Options{Name: "silent", FailOpen: true, Now: now})
		require.NoError(t, err)
		key := ""
		for i := 0; key == ""; i++ {
			k := "user:" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
			if primaryOf(c.Node("a").Store, throttle.RecordID("silent", time.Hour, k, now())) == "b" {
				key = k
			}
		}
		c.Net.Drop("a", "b", 1)
		c.Net.Drop("b", "a", 1)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		ok, _, err := ls[0].Allow(ctx, key)
		require.Error(t, err)
		require.True(t, errors.Is(err, replication.ErrUnreachable) || errors.Is(err, context.DeadlineExceeded), "%v", err)
		require.False(t, ok)
		ok, _, err = open.Allow(ctx, key)
		require.Error(t, err)
		require.True(t, ok)
	})
}

// TestRecordID_ReservedAndBounded checks that records live in the reserved
// namespace, fit the store's ID limit whatever the key, and never collide
// across limiters, windows or hashed keys.
func TestRecordID_ReservedAndBounded(t *testing.T) {
	now := time.Now()
	long := strings.Repeat("k", 10_000)
	ids := map[string]bool{}
	for _, id := range []string{
		throttle.RecordID("user", time.Hour, "user:ann", now),
		throttle.RecordID("addr", time.Hour, "user:ann", now),
		throttle.RecordID("user", time.Hour, "user:ann", now.Add(time.Hour)),
		throttle.RecordID("user", time.Hour, long, now),
		throttle.RecordID("user", time.Hour, long+"x", now),
		throttle.RecordID("user", time.Hour, "#"+long, now),
	} {
		assert.True(t, strings.HasPrefix(id, sessionid.ReservedPrefix+"t/"), id)
		assert.True(t, sessionid.Reserved(id))
		assert.False(t, sessionid.Valid(id), "a throttle record is never a valid session ID")
		assert.LessOrEqual(t, len(id), 256)
		assert.False(t, ids[id], "collision: %s", id)
		ids[id] = true
	}
	assert.Equal(t, throttle.RecordID("user", time.Hour, "user:ann", now), throttle.RecordID("user", time.Hour, "user:ann", now))
}

// TestLimiter_CookieNamingRecordIsNoSession sends a request whose session
// cookie names a limiter's record: httpsession starts a new session
// instead, and the count is untouched.
func TestLimiter_CookieNamingRecordIsNoSession(t *testing.T) {
	now := fixedNow()
	c, ls := start(t, replication.AllToAll, 5, time.Hour, throttle.Options{Name: "user", Now: now}, "a")
	ctx := context.Background()
	ok, _, err := ls[0].Allow(ctx, "user:ann")
	require.NoError(t, err)
	require.True(t, ok)
	store := c.Node("a").Store
	m := httpsession.New(store)
	h := m.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, m.Put(r.Context(), countAttrName, 999))
	}))
	id := throttle.RecordID("user", time.Hour, "user:ann", now())
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	name := m.Cookie.Name
	if name == "" {
		name = "session"
	}
	req.AddCookie(&http.Cookie{Name: name, Value: id})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.NotContains(t, rec.Header().Get("Set-Cookie"), id)
	s, found, err := store.Get(ctx, id)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, 1, s.Len(), "only the count")
	for range 4 {
		ok, _, err = ls[0].Allow(ctx, "user:ann")
		require.NoError(t, err)
		require.True(t, ok)
	}
	ok, _, err = ls[0].Allow(ctx, "user:ann")
	require.NoError(t, err)
	require.False(t, ok, "the count went on from where it was")
}

// countAttrName is the attribute the limiter keeps its count in.
const countAttrName = "n"
