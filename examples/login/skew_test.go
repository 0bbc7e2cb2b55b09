package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clockFiles writes one clock offset file per node (see testClockEnv) and
// returns their paths.
func clockFiles(t *testing.T, offsets ...time.Duration) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for i, off := range offsets {
		p := filepath.Join(dir, nodeName(i)+".clock")
		require.NoError(t, os.WriteFile(p, []byte(off.String()), 0o600))
		paths = append(paths, p)
	}
	return paths
}

// status posts or gets path on base with v's cookies and returns the
// status code.
func (v visitor) status(t *testing.T, method, base, path string, form url.Values) int {
	t.Helper()
	var resp *http.Response
	var err error
	if method == http.MethodPost {
		resp, err = v.c.PostForm(base+path, form)
	} else {
		resp, err = v.c.Get(base + path)
	}
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// Three real servers whose clocks are 5 s behind, right and 5 s ahead,
// one of which steps by 3 s while users log in, visit (all at once) and log
// out on every node in turn: no request fails, no visit is lost, every logout is
// final. (An update used to carry a deadline on its caller's wall clock:
// here a third to two fifths of the visits failed.)
func TestSkew_ServersWithSkewedClocksServeEveryRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	files := clockFiles(t, -5*time.Second, 0, 5*time.Second)
	urls, _ := cluster3Args(t, ctx, buildLogin(t), func(i int) []string { return []string{testClockEnv + "=" + files[i]} },
		[]bool{true, true, true}, []string{"-throttle-addr", "0"}) // every user logs in from 127.0.0.1

	const users, visits = 32, 20
	vs := make([]visitor, users)
	for u := range vs {
		vs[u] = newVisitor(t)
		require.Equal(t, http.StatusOK, vs[u].status(t, http.MethodPost, urls[u%3], "/login",
			url.Values{"user": {"u" + string(rune('a'+u))}, "password": {"demo"}}), "login of user %d", u)
	}
	// Every user visits at once, each on every node in turn; halfway
	// through, n3's clock steps 3 s ahead.
	var wg sync.WaitGroup
	var halfway sync.WaitGroup
	halfway.Add(users)
	for u := range vs {
		wg.Go(func() {
			for i := 0; i < visits; i++ {
				if i == visits/2 {
					halfway.Done()
				}
				n, err := vs[u].visit(urls[(u+i)%3])
				assert.NoError(t, err, "visit %d of user %d", i+1, u)
				assert.Equal(t, i+1, n, "visit %d of user %d", i+1, u)
			}
		})
	}
	halfway.Wait()
	require.NoError(t, os.WriteFile(files[2], []byte("8s"), 0o600))
	wg.Wait()
	for u := range vs {
		for _, base := range urls {
			assert.Equal(t, visits, vs[u].visits(t, base), "user %d on %s", u, base)
		}
		require.Equal(t, http.StatusOK, vs[u].status(t, http.MethodPost, urls[(u+1)%3], "/logout", nil))
		for _, base := range urls {
			assert.NotEqual(t, http.StatusOK, vs[u].status(t, http.MethodGet, base, "/me", nil), "user %d still logged in on %s", u, base)
		}
	}
}

// A server whose clock is two minutes ahead, beyond what its peers accept,
// says within seconds that it is not ready and why, refuses writes with
// 503 instead of acknowledging what its peers would refuse, and the other
// servers keep serving every session.
func TestSkew_ServerFarAheadIsNotReadyAndSaysWhy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	files := clockFiles(t, 0, 0, 2*time.Minute)
	urls, _ := cluster3Env(t, ctx, buildLogin(t), func(i int) []string { return []string{testClockEnv + "=" + files[i]} },
		[]bool{true, true, false})

	var problem string
	require.Eventually(t, func() bool {
		resp, err := http.Get(urls[2] + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var body struct{ Problem string }
		if json.NewDecoder(resp.Body).Decode(&body) != nil {
			return false
		}
		problem = body.Problem
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(problem, "clock")
	}, 10*time.Second, 50*time.Millisecond, "n3 never said its clock was off")
	t.Logf("n3 /healthz: %s", problem)

	ann := newVisitor(t)
	assert.Equal(t, http.StatusServiceUnavailable, ann.status(t, http.MethodPost, urls[2], "/login",
		url.Values{"user": {"ann"}, "password": {"demo"}}), "a login on n3 is refused, not acknowledged and lost")
	require.Equal(t, http.StatusOK, ann.status(t, http.MethodPost, urls[0], "/login", url.Values{"user": {"ann"}, "password": {"demo"}}))
	for i := 1; i <= 6; i++ {
		n, err := ann.visit(urls[i%2])
		require.NoError(t, err)
		require.Equal(t, i, n)
	}
	_, err := ann.visit(urls[2])
	assert.Error(t, err, "a visit on n3 is refused")
	for _, base := range urls[:2] {
		assert.Equal(t, 6, ann.visits(t, base), "on %s", base)
	}
	require.Equal(t, http.StatusOK, ann.status(t, http.MethodPost, urls[1], "/logout", nil))
	for _, base := range urls {
		assert.NotEqual(t, http.StatusOK, ann.status(t, http.MethodGet, base, "/me", nil), "ann still logged in on %s", base)
	}
}
