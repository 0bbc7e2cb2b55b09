package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/examples/internal/healthz"
)

// Six real servers in three zones, two per zone, each session on a primary
// and one backup: the SIGKILL of a whole zone (both of its servers at
// once, as a zone outage does) logs nobody out and loses no visit, because
// every session's two copies sit in two zones.
func TestZones_WholeZoneSIGKILLLosesNoSession(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	zone := func(i int) string { return fmt.Sprintf("zone-%c", 'a'+i/2) } // n1 n2: a, n3 n4: b, n5 n6: c
	urls, ps := clusterOf(t, ctx, buildLogin(t), clusterSpec{nodes: 6,
		args: func(i int) []string { return []string{"-backups", "1", "-zone", zone(i)} }})
	names := []string{"n1", "n2", "n3", "n4", "n5", "n6"}
	waitSettled(t, ctx, urls, names, func(h healthz.Health) string {
		if h.Zones != 3 || h.SingleZone != 0 {
			return fmt.Sprintf("zones %d, single-zone partitions %d", h.Zones, h.SingleZone)
		}
		return ""
	})

	const users, visits = 60, 2
	vs := make([]visitor, users)
	for u := range vs {
		vs[u] = newVisitor(t)
		resp, err := vs[u].c.PostForm(urls[u%6]+"/login", url.Values{"user": {fmt.Sprint("user", u)}, "password": {"demo"}})
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		for k := 1; k <= visits; k++ {
			n, err := vs[u].visit(urls[(u+k)%6])
			require.NoError(t, err)
			require.Equal(t, k, n)
		}
	}

	// Zone a goes down: both of its servers at once.
	var wg sync.WaitGroup
	for _, p := range ps[:2] {
		wg.Go(func() { assert.NoError(t, p.Kill()) })
	}
	wg.Wait()

	survivors := urls[2:]
	for u, v := range vs {
		for _, base := range survivors {
			n := meEventually(t, ctx, v, base)
			assert.Equal(t, visits, n, "user%d on %s: visits after the zone's loss", u, base)
		}
	}
	waitSettled(t, ctx, survivors, names[2:], func(h healthz.Health) string {
		if h.SingleZone != 0 {
			return fmt.Sprintf("single-zone partitions %d", h.SingleZone)
		}
		return ""
	})
	for u, v := range vs {
		n, err := v.visit(survivors[u%4])
		require.NoError(t, err)
		assert.Equal(t, visits+1, n, "user%d visits once more after re-replication", u)
	}
}

// meEventually reads the visitor's visits on the server at base, retrying
// answers other than 200 (a failover in progress) until ctx's deadline,
// and failing at once on a 401: a session that is gone.
func meEventually(t *testing.T, ctx context.Context, v visitor, base string) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/me", nil)
		require.NoError(t, err)
		resp, err := v.c.Do(req)
		if err == nil {
			status := resp.StatusCode
			var body struct{ Visits int }
			derr := json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			switch {
			case status == http.StatusUnauthorized:
				t.Fatalf("GET %s/me: 401: logged out", base)
			case status == http.StatusOK && derr == nil:
				return body.Visits
			}
			err = fmt.Errorf("status %d", status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s/me: no answer within 15 s: %v", base, err)
		}
		select { // poll again while the failover goes on
		case <-ctx.Done():
			t.Fatalf("GET %s/me: %v", base, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitSettled waits until every server at urls is settled (healthz.Settled
// for the live names) and extra finds nothing wrong with its health.
func waitSettled(t *testing.T, ctx context.Context, urls, live []string, extra func(healthz.Health) string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var why string
	ok := assert.Eventually(t, func() bool {
		for i, h := range healthz.GetAll(ctx, client, urls) {
			settled, reason := h.Settled(live)
			if !settled {
				why = fmt.Sprintf("%s: %s", urls[i], reason)
				return false
			}
			if reason := extra(h); reason != "" {
				why = fmt.Sprintf("%s: %s", urls[i], reason)
				return false
			}
		}
		return true
	}, 30*time.Second, 20*time.Millisecond)
	require.True(t, ok, "cluster not settled: %s", why)
}
