package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// visitor is one browser: one cookie jar, which 127.0.0.1 shares across
// ports as a load balancer's host would.
type visitor struct{ c *http.Client }

func newVisitor(t *testing.T) visitor {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return visitor{&http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// visit posts /visit and returns the count it answered, or an error.
func (v visitor) visit(base string) (int, error) {
	resp, err := v.c.PostForm(base+"/visit", nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct{ Visits int }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	return body.Visits, nil
}

// visits reads the count of the visitor's session on the node at base.
func (v visitor) visits(t *testing.T, base string) int {
	resp, err := v.c.Get(base + "/me")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var body struct{ Visits int }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	return body.Visits
}

// TestVisits_ParallelVisitsOfOneUserAcrossProcessesAllCount sends bursts of
// 64 parallel POST /visit of one user to three real login processes
// (Backups(1)): every acknowledged visit counts exactly once. Then it
// SIGKILLs a node while visits go on: every acknowledged visit survives,
// and none is counted twice.
func TestVisits_ParallelVisitsOfOneUserAcrossProcessesAllCount(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	urls, ps := cluster3(t, ctx, buildLogin(t))
	ann := newVisitor(t)
	resp, err := ann.c.PostForm(urls[0]+"/login", url.Values{"user": {"ann"}, "password": {"demo"}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	const burst = 64
	for round := 1; round <= 3; round++ {
		var wg sync.WaitGroup
		for i := 0; i < burst; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := ann.visit(urls[i%3])
				assert.NoError(t, err)
			}()
		}
		wg.Wait()
		for _, u := range urls {
			assert.Equal(t, round*burst, ann.visits(t, u), "after round %d, on %s", round, u)
		}
	}

	// Visits go on from 16 goroutines while n3 is killed.
	base := 3 * burst
	var acked, attempted atomic.Int64
	var dead atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				u := urls[i%3]
				if i%3 == 2 && dead.Load() {
					u = urls[i%2] // the load balancer stops sending to the dead node
				}
				attempted.Add(1)
				if _, err := ann.visit(u); err == nil {
					acked.Add(1)
				}
			}
		}()
	}
	waitForCount := func(n int64) {
		require.Eventually(t, func() bool { return acked.Load() >= n }, 30*time.Second, time.Millisecond)
	}
	waitForCount(100)
	dead.Store(true)
	require.NoError(t, ps[2].Kill())
	waitForCount(acked.Load() + 200)
	close(stop)
	wg.Wait()
	for _, u := range urls[:2] {
		got := int64(ann.visits(t, u) - base)
		assert.GreaterOrEqual(t, got, acked.Load(), "an acknowledged visit was lost (on %s)", u)
		assert.LessOrEqual(t, got, attempted.Load(), "a visit was counted twice (on %s)", u)
	}
	t.Logf("during the kill: %d visits acknowledged of %d sent", acked.Load(), attempted.Load())
}
