package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// healthReport is what the tests read of /healthz.
type healthReport struct {
	FullyReplicated bool     `json:"fully_replicated"`
	Members         []string `json:"members"`
}

func readHealthz(c *http.Client, base string) (healthReport, error) {
	var h healthReport
	resp, err := c.Get(base + "/healthz")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// readOwners returns the names of every owner of a partition in the view
// of the server at base, from its status page's JSON report.
func readOwners(c *http.Client, base string) ([]string, error) {
	resp, err := c.Get(base + "/cluster?format=json")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var rep struct{ Partitions []struct{ Owners []string } }
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return nil, err
	}
	var owners []string
	for _, p := range rep.Partitions {
		for _, o := range p.Owners {
			if !slices.Contains(owners, o) {
				owners = append(owners, o)
			}
		}
	}
	return owners, nil
}

// TestLogin_FullyReplicatedAfterSIGKILL SIGKILLs one of five login
// processes (-backups 1) while the others' /healthz is polled: each
// survivor reports "fully_replicated": false to every request made from
// 50 ms after the kill took effect on (the answers' own delay on a busy
// machine aside), and true again only once the dead node owns nothing in
// its view and the survivors have restored every copy; no user is logged
// out.
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
	// The kill takes effect when the kernel has ended the process, which
	// a busy machine may delay after the signal: the bound counts from
	// the reaping (Kill returns then), by which time its sockets are
	// closed. Polling starts before the signal.
	var reaped atomic.Int64 // UnixNano, 0 until then
	falseAfter := make([]time.Duration, len(survivors))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, u := range survivors {
		wg.Go(func() {
			<-start
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
				asked := time.Now()
				h, err := readHealthz(client, u)
				r := reaped.Load()
				switch {
				case err != nil:
				case !h.FullyReplicated:
					falseAfter[i] = time.Since(time.Unix(0, max(r, asked.UnixNano())))
					return
				case r != 0 && asked.UnixNano() > r+int64(50*time.Millisecond):
					// Asked after the bound (a busy machine may delay
					// the answer, never the node's state).
					t.Errorf("%s: fully replicated %v after the kill took effect", u, asked.Sub(time.Unix(0, r)))
					return
				}
			}
		})
	}
	close(start)
	signalled := time.Now()
	require.NoError(t, ps[n-1].Kill())
	reaped.Store(time.Now().UnixNano())
	killed := time.Unix(0, reaped.Load())
	wg.Wait()
	t.Logf("process reaped %v after SIGKILL; fully_replicated false in answers received %v after that", killed.Sub(signalled), falseAfter)
	for i, d := range falseAfter {
		assert.NotZero(t, d, "%s never reported the loss", survivors[i])
	}

	// True again only once the dead node owns nothing. (A node that said
	// "fully replicated" never counts the dead node as an owner again:
	// its refused connections take its partitions away, or the
	// membership drops it, and it does not come back.)
	require.Eventually(t, func() bool {
		for _, u := range survivors {
			h, err := readHealthz(client, u)
			if err != nil || !h.FullyReplicated {
				return false
			}
			owners, err := readOwners(client, u)
			if !assert.NoError(t, err) || !assert.NotContains(t, owners, nodeName(n-1), "%s fully replicated with the dead node an owner", u) {
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
