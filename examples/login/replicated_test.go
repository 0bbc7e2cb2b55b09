package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// healthz is what the tests read of /healthz.
type healthz struct {
	FullyReplicated bool     `json:"fully_replicated"`
	Members         []string `json:"members"`
}

func readHealthz(c *http.Client, base string) (healthz, error) {
	var h healthz
	resp, err := c.Get(base + "/healthz")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// TestLogin_FullyReplicatedAfterSIGKILL SIGKILLs one of five login
// processes (-backups 1) while the others' /healthz is polled: each
// survivor reports "fully_replicated": false within 50 ms of the kill, and
// true again only once the dead node has left its members and the
// survivors have restored every copy; no user is logged out.
func TestLogin_FullyReplicatedAfterSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	const n = 5
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	urls, ps := clusterN(t, ctx, buildLogin(t), n, []string{"-backups", "1"}, nil, slices.Repeat([]bool{true}, n))
	users := make([]visitor, 20)
	for i := range users {
		users[i] = newVisitor(t)
		resp, err := login(users[i].c, urls[i%n], fmt.Sprint("user", i))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	require.Eventually(t, func() bool {
		for _, u := range urls {
			if h, err := readHealthz(client, u); err != nil || !h.FullyReplicated || len(h.Members) != n {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond, "fully replicated before the kill")

	survivors := urls[:n-1]
	falseAfter := make([]time.Duration, len(survivors))
	var wg sync.WaitGroup
	var killed time.Time
	start := make(chan struct{}) // closed right before the kill
	for i, u := range survivors {
		wg.Go(func() {
			<-start
			for time.Since(killed) < 5*time.Second {
				if h, err := readHealthz(client, u); err == nil && !h.FullyReplicated {
					falseAfter[i] = time.Since(killed)
					return
				}
			}
		})
	}
	killed = time.Now()
	close(start)
	require.NoError(t, ps[n-1].Kill())
	wg.Wait()
	t.Logf("fully_replicated false after %v", falseAfter)
	for i, d := range falseAfter {
		assert.NotZero(t, d, "%s never reported the loss", survivors[i])
		assert.Less(t, d, 50*time.Millisecond, survivors[i])
	}

	// True again only without the dead node.
	require.Eventually(t, func() bool {
		for _, u := range survivors {
			h, err := readHealthz(client, u)
			if err != nil || !h.FullyReplicated {
				return false
			}
			if !assert.NotContains(t, h.Members, nodeName(n-1), "%s fully replicated with the dead node a member", u) {
				return true
			}
		}
		return true
	}, 30*time.Second, time.Millisecond)
	t.Logf("fully_replicated again %v after the kill", time.Since(killed))
	for i, v := range users {
		assert.Equal(t, 0, v.visits(t, survivors[i%len(survivors)]), "user%d is still logged in", i)
	}
}
