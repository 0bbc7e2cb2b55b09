package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/replication/status"
)

// TestLogin_BudgetFlood floods three real login processes (all-to-all,
// -max-sessions 300) with logins of new users from 24 goroutines while the
// 30 users who logged in before keep visiting: the nodes stay within their
// budget, every excess login gets 503 with the configured Retry-After and
// no cookie, and every user from before the flood stays logged in, each of
// their visits counted exactly once, on every node.
func TestLogin_BudgetFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const budget, users, flooders, attempts = 300, 30, 24, 1200
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	urls, _ := clusterN(t, ctx, buildLogin(t), 3, []string{"-max-sessions", strconv.Itoa(budget), "-overload-retry-after", "3s"},
		nil, []bool{true, true, true})

	before := make([]visitor, users)
	for i := range before {
		before[i] = newVisitor(t)
		resp, err := login(before[i].c, urls[i%3], fmt.Sprint("user", i))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}

	// The users from before visit all through the flood, each one visit
	// at a time, on every node in turn.
	stop := make(chan struct{})
	var visitors sync.WaitGroup
	visits := make([]int, users)
	for i := range before {
		visitors.Add(1)
		go func() {
			defer visitors.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				n, err := before[i].visit(urls[(i+k)%3])
				if !assert.NoError(t, err, "user%d, visit %d during the flood", i, k+1) {
					return
				}
				if !assert.Equal(t, visits[i]+1, n, "user%d: each visit counts once", i) {
					return
				}
				visits[i] = n
			}
		}()
	}

	var ok, refused, next atomic.Int64
	var flood sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second} // no jar: every login is a new user
	for w := range flooders {
		flood.Add(1)
		go func() {
			defer flood.Done()
			for {
				i := next.Add(1)
				if i > attempts {
					return
				}
				resp, err := login(client, urls[(int(i)+w)%3], fmt.Sprint("flood", i))
				if !assert.NoError(t, err) {
					return
				}
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusServiceUnavailable:
					refused.Add(1)
					assert.Equal(t, "3", resp.Header.Get("Retry-After"))
					assert.Empty(t, resp.Cookies(), "a refused login gets no session")
				default:
					t.Errorf("login: status %d", resp.StatusCode)
				}
			}
		}()
	}
	flood.Wait()
	close(stop)
	visitors.Wait()
	t.Logf("flood: %d logins accepted, %d refused with 503; %d sessions from before", ok.Load(), refused.Load(), users)

	room := int64(budget - users)
	assert.LessOrEqual(t, ok.Load(), room+2*flooders, "at most the creations in flight on the other nodes pass the budget")
	assert.GreaterOrEqual(t, ok.Load(), room-flooders, "the budget is used")
	assert.Equal(t, int64(attempts), ok.Load()+refused.Load())
	var overloaded uint64
	for _, u := range urls {
		r := clusterReport(t, u)
		assert.Equal(t, budget, r.MaxSessions, u)
		assert.LessOrEqual(t, r.Sessions, budget+2*flooders, "%s holds what its budget allows", u)
		overloaded += r.Overloaded
	}
	assert.Equal(t, uint64(refused.Load()), overloaded, "every refusal is counted")
	var h struct {
		Sessions        int    `json:"sessions"`
		MaxSessions     int    `json:"max_sessions"`
		RefusedSessions uint64 `json:"refused_sessions"`
	}
	hresp, err := http.Get(urls[0] + "/healthz")
	require.NoError(t, err)
	require.NoError(t, json.NewDecoder(hresp.Body).Decode(&h))
	hresp.Body.Close()
	assert.Equal(t, http.StatusOK, hresp.StatusCode, "a full node is still healthy: it serves its sessions")
	assert.Equal(t, budget, h.MaxSessions, "/healthz shows the budget")
	assert.Positive(t, h.RefusedSessions)

	for i, v := range before {
		for _, u := range urls {
			assert.Equal(t, visits[i], v.visits(t, u), "user%d on %s", i, u)
		}
		assert.Positive(t, visits[i], "user%d visited during the flood", i)
	}
	resp, err := login(client, urls[0], "late")
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "still full")
}

// login posts /login for user with c and returns the response, its body
// read and closed.
func login(c *http.Client, base, user string) (*http.Response, error) {
	resp, err := c.PostForm(base+"/login", url.Values{"user": {user}, "password": {"demo"}})
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

// clusterReport reads the status report of the node at base.
func clusterReport(t *testing.T, base string) status.Report {
	t.Helper()
	resp, err := http.Get(base + "/cluster?format=json")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var r status.Report
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	return r
}

// TestLogin_BudgetFloodMemory measures the memory of three login
// processes (all-to-all) while 32 goroutines log new users in for 20
// seconds, without a budget, with a byte budget, and with the default
// budget under a GOMEMLIMIT, for docs/benchmarks.md. It runs
// only with SESSIONMESH_BUDGET_BENCH=1.
func TestLogin_BudgetFloodMemory(t *testing.T) {
	if os.Getenv("SESSIONMESH_BUDGET_BENCH") == "" {
		t.Skip("a measurement: set SESSIONMESH_BUDGET_BENCH=1")
	}
	const flooders, duration = 32, 20 * time.Second
	for _, tc := range []struct{ name, maxBytes, memLimit string }{
		{"no budget", "-1", ""},
		{"budget 8 MiB", strconv.Itoa(8 << 20), ""},
		{"GOMEMLIMIT 64 MiB, default budget", "0", "64MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var env func(int) []string
			if tc.memLimit != "" {
				env = func(int) []string { return []string{"GOMEMLIMIT=" + tc.memLimit} }
			}
			urls, _ := clusterN(t, ctx, buildLogin(t), 3, []string{"-max-bytes", tc.maxBytes}, env, []bool{true, true, true})
			start := scrapeMem(t, urls[0])
			var ok, refused atomic.Int64
			deadline := time.Now().Add(duration)
			client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: flooders}}
			var wg sync.WaitGroup
			for w := range flooders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; time.Now().Before(deadline); i++ {
						resp, err := login(client, urls[(i+w)%3], "u")
						if err != nil {
							continue
						}
						if resp.StatusCode == http.StatusOK {
							ok.Add(1)
						} else {
							refused.Add(1)
						}
					}
				}()
			}
			var peak memSample
			tick := time.NewTicker(500 * time.Millisecond)
			for time.Now().Before(deadline) {
				for _, u := range urls {
					m := scrapeMem(t, u)
					peak.rss, peak.heap = max(peak.rss, m.rss), max(peak.heap, m.heap)
				}
				<-tick.C
			}
			tick.Stop()
			wg.Wait()
			end := clusterReport(t, urls[0])
			t.Logf("%s: %d logins accepted, %d refused in %v; n1 holds %d sessions, %.1f MiB estimated (budget %.1f MiB); "+
				"RSS per node at start %.1f MiB, peak %.1f MiB; heap in use peak %.1f MiB",
				tc.name, ok.Load(), refused.Load(), duration, end.Sessions, mib(end.Bytes), mib(end.MaxBytes),
				mib(start.rss), mib(peak.rss), mib(peak.heap))
		})
	}
}

// memSample is a node's memory as its /metrics reports it.
type memSample struct{ rss, heap int64 }

func scrapeMem(t *testing.T, base string) memSample {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	var m memSample
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, found := strings.Cut(sc.Text(), " ")
		if !found {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case "process_resident_memory_bytes":
			m.rss = int64(v)
		case "go_memstats_heap_inuse_bytes":
			m.heap = int64(v)
		}
	}
	return m
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
