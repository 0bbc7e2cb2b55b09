package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/throttle"
)

// The login limits of the example's defaults.
const (
	userLimit = 5
	addrLimit = 20
	window    = 15 * time.Minute
)

// outcome is the answer to one login attempt.
type outcome struct {
	code       int
	retryAfter int    // the Retry-After header, in seconds
	msg        string // the body's "error"
}

// attempt posts a login for user with password to base, coming from addr
// (X-Forwarded-For: the nodes trust it in these tests).
func attempt(c *http.Client, base, user, password, addr string) (outcome, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(url.Values{"user": {user}, "password": {password}}.Encode()))
	if err != nil {
		return outcome{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", addr)
	resp, err := c.Do(req)
	if err != nil {
		return outcome{}, err
	}
	defer resp.Body.Close()
	var body struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	o := outcome{code: resp.StatusCode, msg: body.Error}
	if h := resp.Header.Get("Retry-After"); h != "" {
		o.retryAfter, _ = strconv.Atoi(h)
	}
	return o, nil
}

// wrongBurst sends n concurrent wrong-password logins of user, the i-th to
// urls[i%len(urls)] from addr(i), and returns how many were let through to
// the password check (401). Every other answer must be a 429 of the limit
// with a Retry-After within the window.
func wrongBurst(t *testing.T, urls []string, user string, n int, addr func(i int) string) int {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	var mu sync.Mutex
	checked := 0
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			o, err := attempt(c, urls[i%len(urls)], user, "wrong", addr(i))
			if !assert.NoError(t, err) {
				return
			}
			switch o.code {
			case http.StatusUnauthorized:
				mu.Lock()
				checked++
				mu.Unlock()
			case http.StatusTooManyRequests:
				assert.Equal(t, "too many login attempts", o.msg, "refused by the count, not for want of one")
				assert.True(t, o.retryAfter >= 1 && o.retryAfter <= int(window.Seconds()), "Retry-After %d", o.retryAfter)
			default:
				t.Errorf("attempt %d of %s: status %d (%s)", i, user, o.code, o.msg)
			}
		})
	}
	wg.Wait()
	return checked
}

// addrs returns distinct client addresses, one per attempt.
func addrs(prefix string) func(int) string {
	return func(i int) string { return prefix + "." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250) }
}

// waitWindowRoom waits until at least room is left in the current window,
// so that a test's counts stay in one window.
func waitWindowRoom(t *testing.T, room time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		now := time.Now()
		return now.Truncate(window).Add(window).Sub(now) >= room
	}, room+10*time.Second, 100*time.Millisecond)
}

// primaryOf returns the name of the primary owner of record id, as the
// node at base reports it on its status page.
func primaryOf(t *testing.T, base, id string) string {
	t.Helper()
	resp, err := http.Get(base + "/cluster?format=json")
	require.NoError(t, err)
	defer resp.Body.Close()
	var st struct {
		Partitions []struct{ Owners []string }
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	require.NotEmpty(t, st.Partitions)
	p := st.Partitions[xxhash.Sum64String(id)%uint64(len(st.Partitions))]
	require.NotEmpty(t, p.Owners)
	return p.Owners[0]
}

// TestThrottle_LoginLimitsAcrossProcesses runs three real login processes
// (Backups(1)) and sends them concurrent wrong-password logins round robin:
// of 64 for one user exactly 5 reach the password check and the rest get
// 429 with Retry-After; of 30 from one address for distinct users, exactly
// 20. A correct login resets the user's count. Then it SIGKILLs the primary
// owner of the user's count: the survivors go on refusing the user at
// once, and of 64 attempts for a new user they again let exactly 5
// through; restarted, the killed node refuses both users too.
func TestThrottle_LoginLimitsAcrossProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	urls, ps := cluster3Args(t, ctx, buildLogin(t), nil, []bool{true, true, true}, []string{"-trust-proxy"})
	waitWindowRoom(t, 90*time.Second)

	require.Equal(t, userLimit, wrongBurst(t, urls, "ann", 64, addrs("198.51")))
	require.Zero(t, wrongBurst(t, urls, "ann", 6, addrs("198.52")), "the limit holds on every node")
	require.Equal(t, addrLimit, countAddrBurst(t, urls), "per address")

	// A correct login resets the user's count.
	c := &http.Client{Timeout: 20 * time.Second}
	for i := range userLimit - 1 {
		o, err := attempt(c, urls[i%3], "dan", "wrong", "198.53.0."+strconv.Itoa(i))
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, o.code)
	}
	o, err := attempt(c, urls[1], "dan", "demo", "198.53.0.9")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, o.code, o.msg)
	require.Equal(t, userLimit, wrongBurst(t, urls, "dan", 12, addrs("198.54")), "after a correct login")

	// SIGKILL the primary owner of ann's count: the survivors refuse ann at
	// once and count a new user exactly.
	victim := primaryOf(t, urls[0], throttle.RecordID("login-user", window, "user:ann", time.Now()))
	var survivors []string
	for i, p := range ps {
		if nodeName(i) == victim {
			require.NoError(t, p.Kill())
		} else {
			survivors = append(survivors, urls[i])
		}
	}
	require.Len(t, survivors, 2, "victim %s", victim)
	require.Zero(t, wrongBurst(t, survivors, "ann", 64, addrs("198.55")), "after the kill of %s", victim)
	require.Equal(t, userLimit, wrongBurst(t, survivors, "bob", 64, addrs("198.56")), "a new user after the kill of %s", victim)
	t.Logf("killed %s, the primary owner of ann's count", victim)

	// Restarted, the node refuses them like the others: a restart resets
	// no count.
	for i, p := range ps {
		if nodeName(i) == victim {
			require.NoError(t, p.Restart())
			hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
			require.NoError(t, p.WaitHealthy(hctx))
			hcancel()
		}
	}
	require.Zero(t, wrongBurst(t, urls, "ann", 30, addrs("198.57")), "after %s restarted", victim)
	require.Zero(t, wrongBurst(t, urls, "bob", 30, addrs("198.58")), "after %s restarted", victim)
}

// countAddrBurst sends 30 concurrent wrong-password logins, for distinct
// users, from one address, round robin over urls, and returns how many
// reached the password check.
func countAddrBurst(t *testing.T, urls []string) int {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	var mu sync.Mutex
	checked := 0
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			o, err := attempt(c, urls[i%3], "spray-"+strconv.Itoa(i), "wrong", "203.0.113.9")
			if !assert.NoError(t, err) {
				return
			}
			switch o.code {
			case http.StatusUnauthorized:
				mu.Lock()
				checked++
				mu.Unlock()
			case http.StatusTooManyRequests:
				assert.Positive(t, o.retryAfter)
			default:
				t.Errorf("status %d (%s)", o.code, o.msg)
			}
		})
	}
	wg.Wait()
	return checked
}
