package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
)

// snapshotInterval is the -snapshot-interval of the fleet-restart test.
const snapshotInterval = 500 * time.Millisecond

// user is one logged-in browser whose cookie the test holds itself, so
// that it can present it again after a logout.
type user struct {
	name   string
	cookie *http.Cookie
	visits int
}

var plainClient = &http.Client{Timeout: 10 * time.Second}

// do posts (or gets, without form) path on base with the user's cookie and
// returns the status and the decoded body.
func (u *user) do(method, base, path string, form url.Values) (int, map[string]any, error) {
	req, err := http.NewRequest(method, base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if u.cookie != nil {
		req.AddCookie(u.cookie)
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	for _, c := range resp.Cookies() {
		if c.Value != "" && c.MaxAge >= 0 {
			u.cookie = c
		}
	}
	return resp.StatusCode, body, nil
}

// startSnapshotNodes starts three login processes with a snapshot
// directory each and waits until they are healthy. It returns their URLs
// and processes.
func startSnapshotNodes(t *testing.T, ctx context.Context, bin string) ([]string, []*procs.Process) {
	t.Helper()
	addrs, err := procs.FreeAddrs("127.0.0.1", 6, procs.TCPAndUDP)
	require.NoError(t, err)
	httpAddrs, gossip := addrs[:3], addrs[3:]
	var key [32]byte
	_, _ = rand.Read(key[:])
	logs, snaps := t.TempDir(), t.TempDir()
	g := procs.NewGroup(ctx, logs)
	t.Cleanup(func() {
		_ = g.Close()
		if t.Failed() {
			for i := range 3 {
				b, _ := os.ReadFile(filepath.Join(logs, nodeName(i)+".log"))
				t.Logf("log of %s:\n%s", nodeName(i), b)
			}
		}
	})
	var urls []string
	var ps []*procs.Process
	for i := range 3 {
		p, err := g.Start(procs.Spec{
			Name: nodeName(i),
			Path: bin,
			Args: []string{"-name", nodeName(i), "-http", httpAddrs[i], "-gossip", gossip[i],
				"-seeds", strings.Join(gossip, ","), "-backups", "1", "-throttle-addr", "0", // every user logs in from 127.0.0.1
				"-snapshot-dir", filepath.Join(snaps, nodeName(i)), "-snapshot-interval", snapshotInterval.String()},
			Env:       []string{secretEnv + "=" + hex.EncodeToString(key[:])},
			HealthURL: "http://" + httpAddrs[i] + "/healthz",
		})
		require.NoError(t, err)
		urls, ps = append(urls, "http://"+httpAddrs[i]), append(ps, p)
	}
	waitHealthy(t, ctx, ps)
	return urls, ps
}

func waitHealthy(t *testing.T, ctx context.Context, ps []*procs.Process) {
	t.Helper()
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, p := range ps {
		require.NoError(t, p.WaitHealthy(hctx), p.Name())
	}
}

// allAtOnce runs f on every process at once and returns how long each
// took.
func allAtOnce(ps []*procs.Process, f func(*procs.Process) error) ([]time.Duration, []error) {
	took, errs := make([]time.Duration, len(ps)), make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() {
			start := time.Now()
			errs[i] = f(p)
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	return took, errs
}

// checkSurvivors asserts that every user in live is logged in with its
// visits on every node, and that every user in out stays logged out.
func checkSurvivors(t *testing.T, urls []string, live, out []*user) {
	t.Helper()
	for _, base := range urls {
		for _, u := range live {
			code, body, err := u.do(http.MethodGet, base, "/me", nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code, "%s is logged out on %s", u.name, base)
			require.Equal(t, u.name, body["user"])
			require.EqualValues(t, u.visits, body["visits"], "%s on %s", u.name, base)
		}
		for _, u := range out {
			code, _, err := u.do(http.MethodGet, base, "/me", nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusUnauthorized, code, "%s logged out, but is back on %s", u.name, base)
		}
	}
}

// TestFleetRestart_EverySessionAndLogoutSurvivesAStopOfEveryNode stops
// all three login processes at once with SIGTERM: each exits within 3 s,
// and after a restart of all three every session is back with its
// visits and every logout (made on another node than the login) is still
// final. Then it visits again, waits more than one snapshot interval and
// SIGKILLs all three: after a restart those sessions are back too.
func TestFleetRestart_EverySessionAndLogoutSurvivesAStopOfEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	urls, ps := startSnapshotNodes(t, ctx, buildLogin(t))

	var live, out []*user
	for i := range 30 {
		u := &user{name: fmt.Sprintf("user%02d", i)}
		code, _, err := u.do(http.MethodPost, urls[i%3], "/login", url.Values{"user": {u.name}, "password": {"demo"}})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		for v := range 1 + i%3 {
			code, _, err := u.do(http.MethodPost, urls[(i+v)%3], "/visit", url.Values{})
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code)
			u.visits++
		}
		if i%5 == 0 {
			kept := u.cookie
			code, _, err := u.do(http.MethodPost, urls[(i+1)%3], "/logout", url.Values{})
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, code)
			u.cookie = kept // present the old cookie again later
			out = append(out, u)
			continue
		}
		live = append(live, u)
	}

	took, errs := allAtOnce(ps, func(p *procs.Process) error {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return p.Stop(sctx)
	})
	for i, p := range ps {
		require.NoError(t, errs[i], p.Name())
		require.NoError(t, p.ExitError(), "%s exited with an error", p.Name())
		require.Less(t, took[i], 3*time.Second, "%s took %s to exit on SIGTERM", p.Name(), took[i])
		t.Logf("%s exited %s after SIGTERM", p.Name(), took[i].Round(time.Millisecond))
	}
	_, errs = allAtOnce(ps, (*procs.Process).Restart)
	for _, err := range errs {
		require.NoError(t, err)
	}
	waitHealthy(t, ctx, ps)
	checkSurvivors(t, urls, live, out)

	// SIGKILL: what was written more than one snapshot interval before
	// survives.
	for i, u := range live {
		code, _, err := u.do(http.MethodPost, urls[i%3], "/visit", url.Values{})
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, code)
		u.visits++
	}
	// A node starts a snapshot every interval (skipped when nothing
	// changed since the last one began), so what was written more than an
	// interval and the short time a write takes ago is on disk. The
	// elapsed time is the premise of the property, not a guess at a
	// condition: the check after the restart is what proves it.
	time.Sleep(3 * snapshotInterval / 2)
	_, errs = allAtOnce(ps, (*procs.Process).Kill)
	for _, err := range errs {
		require.NoError(t, err)
	}
	_, errs = allAtOnce(ps, (*procs.Process).Restart)
	for _, err := range errs {
		require.NoError(t, err)
	}
	waitHealthy(t, ctx, ps)
	checkSurvivors(t, urls, live, out)
}
