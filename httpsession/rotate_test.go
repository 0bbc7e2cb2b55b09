package httpsession_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/internal/testing/renewrace"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// rotateApp is raceApp with a login that tags the session with its user,
// which makes it one that RotateEvery rotates.
func rotateApp(m *httpsession.Manager, gate *renewrace.Gate) http.Handler {
	inner := raceApp(m, gate)
	login := m.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		user := r.FormValue("user")
		for _, err := range []error{m.RenewID(ctx), m.SetPrincipal(ctx, user), m.Put(ctx, "user", user)} {
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		fmt.Fprint(w, "ok")
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/login" {
			login.ServeHTTP(w, r)
			return
		}
		inner.ServeHTTP(w, r)
	})
}

// rotateWeb starts three nodes serving rotateApp, whose Managers rotate
// every hour on a clock offset from the real one by *offset.
func rotateWeb(t *testing.T, mode replication.Mode, offset *atomic.Int64, grace time.Duration) ([]string, *renewrace.Gate) {
	c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = mode
		return cfg
	}})
	gate := renewrace.NewGate()
	var urls []string
	for i := 0; i < 3; i++ {
		m := httpsession.New(c.Start(fmt.Sprintf("n%d", i)).Store)
		m.Cookie.Secure = false
		m.RotateEvery, m.RotateGrace = time.Hour, grace
		httpsession.SetClock(m, func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
		srv := httptest.NewServer(rotateApp(m, gate))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	c.WaitConverged(t)
	return urls, gate
}

// sessionCookie returns the value of the session cookie h sets, or "".
func sessionCookie(h http.Header) string {
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == "session" {
			return c.Value
		}
	}
	return ""
}

// withCookie returns a client whose jar holds id as the session cookie.
func withCookie(t *testing.T, base string, id string) *http.Client {
	c := client(t)
	u, err := url.Parse(base)
	require.NoError(t, err)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: id, Path: "/"}})
	return c
}

// An authenticated session older than RotateEvery gets a new ID on its
// next request, on any node; the old ID keeps reading and writing the
// session, and brings its holder the new ID, for RotateGrace, then stops.
// Sessions without a principal are not rotated, and the ID a login
// renewed never answers, rotation or not.
func TestManager_RotateEveryRotatesAuthenticatedSessions(t *testing.T) {
	var offset atomic.Int64
	urls, _ := rotateWeb(t, replication.Backups(1), &offset, 30*time.Second)
	browser, anon := client(t), client(t)
	u, _ := url.Parse(urls[0])
	id := func(c *http.Client) string { return c.Jar.Cookies(u)[0].Value }

	do(t, anon, "POST", urls[0]+"/put", url.Values{"k": {"cart"}, "v": {"1 pear"}})
	planted := id(anon)
	code, _, _ := do(t, browser, "POST", urls[0]+"/login", url.Values{"user": {"ann"}})
	require.Equal(t, http.StatusOK, code)
	id0 := id(browser)
	_, _, h := do(t, browser, "GET", urls[1]+"/me", nil)
	assert.Empty(t, sessionCookie(h), "not due yet")

	offset.Store(int64(time.Hour + time.Second))
	_, _, h = do(t, anon, "GET", urls[1]+"/get?k=cart", nil)
	assert.Empty(t, sessionCookie(h), "a session without a principal is not rotated")
	code, body, h := do(t, browser, "GET", urls[2]+"/me", nil)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ann", body)
	id1 := sessionCookie(h)
	require.NotEmpty(t, id1, "rotated")
	require.NotEqual(t, id0, id1)
	_, _, h = do(t, browser, "GET", urls[0]+"/me", nil)
	assert.Empty(t, sessionCookie(h), "a new ID counts from its rotation")

	old := withCookie(t, urls[0], id0)
	for i, srv := range urls {
		code, body, h := do(t, old, "GET", srv+"/me", nil)
		assert.Equal(t, http.StatusOK, code, "node %d", i)
		assert.Equal(t, "ann", body, "the old ID reads the session for the grace")
		assert.Equal(t, id1, sessionCookie(h), "and brings the new ID")
		old = withCookie(t, urls[0], id0)
	}
	do(t, old, "POST", urls[1]+"/put", url.Values{"k": {"cart"}, "v": {"2 books"}})
	_, cart, _ := do(t, browser, "GET", urls[2]+"/get?k=cart", nil)
	assert.Equal(t, "2 books", cart, "writes with the old ID reach the session")

	offset.Add(int64(30*time.Second + time.Millisecond))
	for _, srv := range urls {
		code, _, h := do(t, withCookie(t, urls[0], id0), "GET", srv+"/me", nil)
		assert.Equal(t, http.StatusUnauthorized, code, "after the grace, the old ID no longer answers")
		assert.Empty(t, sessionCookie(h))
	}
	_, _, h = do(t, withCookie(t, urls[0], id0), "POST", urls[2]+"/put", url.Values{"k": {"cart"}, "v": {"stolen"}})
	assert.Empty(t, sessionCookie(h), "and a write with it is dropped, as after a renewal")
	_, cart, _ = do(t, browser, "GET", urls[0]+"/get?k=cart", nil)
	assert.Equal(t, "2 books", cart)

	// A login renews the ID at once, with no grace: neither the ID before
	// it nor one planted before it ever reads the session.
	do(t, anon, "POST", urls[1]+"/login", url.Values{"user": {"bob"}})
	do(t, browser, "POST", urls[1]+"/login", url.Values{"user": {"ann"}})
	for _, srv := range urls {
		for _, stale := range []string{id1, planted} {
			code, _, h := do(t, withCookie(t, urls[0], stale), "GET", srv+"/me", nil)
			assert.Equal(t, http.StatusUnauthorized, code)
			assert.Empty(t, sessionCookie(h))
		}
	}
	code, body, _ = do(t, browser, "GET", urls[2]+"/me", nil)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "ann", body)
}

// rotateResult counts what went wrong over the rounds of a rotation race.
type rotateResult struct {
	LoggedOut      int // the browser was not logged in as its user on every node
	OldID          int // the browser ended with the ID the rotation replaced
	LostInFlight   int // the held request's write, saved after the rotation, was lost
	LostStale      int // the write of a request sent with the old ID after the rotation was lost
	InFlightFailed int // the held request did not answer 200
}

// A request in flight while another request of the same browser rotates
// the session's ID, on another node, and one sent with the old ID before
// the browser had the new one, neither log the user out nor lose their
// writes: the browser ends with the new ID whichever response it gets
// last. Half of the held requests are released after the rotation's
// response, half as the rotating request starts (they may rotate too).
func TestManager_RotationIsNotLogout(t *testing.T) {
	const rounds = 100
	for name, mode := range map[string]replication.Mode{"all-to-all": replication.AllToAll, "backups(1)": replication.Backups(1)} {
		t.Run(name, func(t *testing.T) {
			var offset atomic.Int64
			urls, gate := rotateWeb(t, mode, &offset, 0)
			var res rotateResult
			logged := 0
			report := func(count *int, format string, args ...any) {
				*count++
				if logged < 10 {
					logged++
					t.Logf(format, args...)
				}
			}
			for round := 0; round < rounds; round++ {
				rotateRound(t, urls, gate, &offset, round, &res, report)
			}
			t.Logf("%d rounds: %+v", rounds, res)
			assert.Zero(t, res.LoggedOut, "users logged out")
			assert.Zero(t, res.OldID, "browsers left with the replaced ID")
			assert.Zero(t, res.LostInFlight, "in-flight writes lost")
			assert.Zero(t, res.LostStale, "writes with the old ID lost")
			assert.Zero(t, res.InFlightFailed)
		})
	}
}

func rotateRound(t *testing.T, urls []string, gate *renewrace.Gate, offset *atomic.Int64, n int, res *rotateResult, report func(*int, string, ...any)) {
	browser := client(t)
	browser.Timeout = 30 * time.Second
	base, _ := url.Parse(urls[0])
	current := func() string {
		for _, c := range browser.Jar.Cookies(base) {
			if c.Name == "session" {
				return c.Value
			}
		}
		return ""
	}
	user := fmt.Sprintf("user%d", n)
	code, _, _ := do(t, browser, "POST", urls[0]+"/login", url.Values{"user": {user}})
	require.Equal(t, http.StatusOK, code)
	old := current()

	ticket := fmt.Sprintf("rotate/%d", n)
	held := gate.Held(ticket)
	write := "1"
	if n%5 == 4 {
		write = "0"
	}
	type answer struct {
		code int
		err  error
	}
	inFlight := make(chan answer, 1)
	go func() {
		resp, err := browser.PostForm(urls[1]+"/slow", url.Values{"ticket": {ticket}, "write": {write}})
		if err != nil {
			inFlight <- answer{err: err}
			return
		}
		_ = resp.Body.Close()
		inFlight <- answer{code: resp.StatusCode}
	}()
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatalf("round %d: /slow was never held", n)
	}
	offset.Add(int64(time.Hour + time.Second)) // the ID is now due for rotation

	ordered := n%2 == 0
	if !ordered {
		gate.Release(ticket)
	}
	code, body, _ := do(t, browser, "GET", urls[2]+"/me", nil)
	if code != http.StatusOK || body != user {
		report(&res.LoggedOut, "round %d: the rotating request got %d %q", n, code, body)
	}
	if ordered {
		gate.Release(ticket)
	}
	var a answer
	select {
	case a = <-inFlight:
	case <-time.After(30 * time.Second):
		t.Fatalf("round %d: the held request did not answer", n)
	}
	if a.err != nil || a.code != http.StatusOK {
		report(&res.InFlightFailed, "round %d: the held request got %d %v", n, a.code, a.err)
	}

	// Sent with the old ID before the browser had the new one, answered
	// after: the browser applies its cookies last.
	stale := withCookie(t, urls[0], old)
	_, _, h := do(t, stale, "POST", urls[n%3]+"/put", url.Values{"k": {"stale"}, "v": {"from the old ID"}})
	if c := sessionCookie(h); c != "" {
		browser.Jar.SetCookies(base, []*http.Cookie{{Name: "session", Value: c, Path: "/"}})
	}

	if current() == old {
		report(&res.OldID, "round %d: the browser holds the replaced ID", n)
	}
	for _, u := range urls {
		code, body, _ := do(t, browser, "GET", u+"/me", nil)
		if code != http.StatusOK || body != user {
			report(&res.LoggedOut, "round %d: %s/me answers %d %q", n, u, code, body)
			return
		}
		if _, v, _ := do(t, browser, "GET", u+"/get?k=stale", nil); v == "" {
			report(&res.LostStale, "round %d: no stale write on %s", n, u)
			return
		}
		if ordered && write == "1" {
			if _, v, _ := do(t, browser, "GET", u+"/get?k=note", nil); v == "" {
				report(&res.LostInFlight, "round %d: no in-flight write on %s", n, u)
				return
			}
		}
	}
}
