package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// phase is one step of the scenario with its counters. Workers update the
// counters concurrently.
type phase struct {
	name     string
	start    time.Time
	dur      time.Duration
	requests atomic.Int64
	failures atomic.Int64

	mu        sync.Mutex // guards byNode and latencies
	byNode    map[string]int
	latencies []time.Duration
}

func (d *demo) beginPhase(name string) *phase {
	ph := &phase{name: name, start: time.Now(), byNode: map[string]int{}}
	d.phases = append(d.phases, ph)
	return ph
}

func (ph *phase) end() { ph.dur = time.Since(ph.start) }

// record counts one answered or failed request.
func (ph *phase) record(node string, took time.Duration) {
	ph.requests.Add(1)
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if node != "" {
		ph.byNode[node]++
	}
	ph.latencies = append(ph.latencies, took)
}

// percentile returns the p-th percentile (0..100) of the latencies.
func (ph *phase) percentile(p float64) time.Duration {
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if len(ph.latencies) == 0 {
		return 0
	}
	l := slices.Clone(ph.latencies)
	slices.Sort(l)
	i := int(float64(len(l)-1) * p / 100)
	return l[i]
}

// distribution formats a per-node count map: "n1 600, n2 600".
func distribution(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if len(names[i]) != len(names[j]) {
			return len(names[i]) < len(names[j]) // n2 before n10
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// forEachUser runs fn for every logged-in user (or every user, for the
// login phase) on d.cfg.concurrency workers, and returns when all are
// done or ctx ends.
func (d *demo) forEachUser(ctx context.Context, all bool, fn func(ctx context.Context, u *user)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(d.cfg.concurrency, len(d.users)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(d.users) {
					return
				}
				if u := d.users[i]; all || u.loggedIn {
					fn(ctx, u)
				}
			}
		})
	}
	wg.Wait()
}

// answer is the JSON the login server answers with. Visits is a pointer
// because the field is optional in some answers.
type answer struct {
	User   string `json:"user"`
	Node   string `json:"node"`
	Visits *int   `json:"visits"`
	Error  string `json:"error"`
}

// result is one HTTP exchange.
type result struct {
	status    int
	ans       answer
	body      string // the start of the body, for messages
	setCookie []string
	err       error
}

// String describes the outcome for a failure message.
func (r result) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	return fmt.Sprintf("status %d %s", r.status, strings.TrimSpace(r.body))
}

// via describes where a request went, for messages.
func via(n *node) string {
	if n == nil {
		return "via the proxy"
	}
	return "directly on " + n.name
}

// send makes one request for u, through the proxy (n == nil) or directly to
// node n. A direct request carries the cookies the user's jar holds for the
// proxy (what a browser would send), and cookies set by the answer go back
// into the jar, as if the browser had been there.
func (d *demo) send(ctx context.Context, ph *phase, u *user, n *node, method, path string, form url.Values) result {
	base, client := d.proxySrv.URL, u.client
	if n != nil {
		base, client = n.url, u.direct
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return result{err: err}
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	if n != nil {
		for _, c := range u.jar.Cookies(d.proxyURL) {
			req.AddCookie(c)
		}
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		ph.record("", time.Since(start))
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	took := time.Since(start)
	r := result{status: resp.StatusCode, setCookie: resp.Header.Values("Set-Cookie"), err: err}
	if n != nil {
		if cs := resp.Cookies(); len(cs) > 0 {
			u.jar.SetCookies(d.proxyURL, cs)
		}
	}
	r.body = string(b)
	if len(r.body) > 200 {
		r.body = r.body[:200] + "..."
	}
	if strings.HasPrefix(strings.TrimSpace(r.body), "{") {
		_ = json.Unmarshal(b, &r.ans) // a body that is not our JSON shows in messages
	}
	ph.record(r.ans.Node, took)
	return r
}
