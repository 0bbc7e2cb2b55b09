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

// raceApp is the application renewrace drives, on httpsession's API.
func raceApp(m *httpsession.Manager, gate *renewrace.Gate) http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) bool {
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		return err != nil
	}
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if !fail(w, m.RenewID(r.Context())) && !fail(w, m.Put(r.Context(), "user", r.FormValue("user"))) {
			fmt.Fprint(w, "ok")
		}
	})
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		if !fail(w, m.RenewID(r.Context())) {
			fmt.Fprint(w, "ok")
		}
	})
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		gate.Hold(r.Context(), r.FormValue("ticket"))
		if r.FormValue("write") == "0" || !fail(w, m.Put(r.Context(), "note", "written in flight")) {
			fmt.Fprint(w, "ok")
		}
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		if !fail(w, m.Put(r.Context(), r.FormValue("k"), r.FormValue("v"))) {
			fmt.Fprint(w, "ok")
		}
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user := m.GetString(r.Context(), "user")
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, user)
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, m.GetString(r.Context(), r.FormValue("k")))
	})
	return m.LoadAndSave(mux)
}

// A request in flight while the user logs in again, or renews the ID, on
// another node, does not log the user out; nor does one sent with the old
// ID after the renewal. The old ID never answers as the session, and what
// they write never reaches it.
func TestManager_RenewalIsNotLogout(t *testing.T) {
	for name, mode := range map[string]replication.Mode{"all-to-all": replication.AllToAll, "backups(1)": replication.Backups(1)} {
		t.Run(name, func(t *testing.T) {
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
				srv := httptest.NewServer(raceApp(m, gate))
				t.Cleanup(srv.Close)
				urls = append(urls, srv.URL)
			}
			c.WaitConverged(t)
			res := renewrace.Run(t, urls, gate, renewrace.Options{Cookie: "session", Rounds: 100, Concurrent: true, Stale: true})
			t.Logf("%+v", res)
			require.Equal(t, 100, res.Rounds)
			assert.Zero(t, res.LoggedOut, "users logged out")
			assert.Zero(t, res.OldIDAnswered, "old IDs that answered as the session")
			assert.Zero(t, res.WriteReachedNew, "writes with the old ID in the renewed session")
			assert.Zero(t, res.CookieSet, "responses to the old ID that set the cookie")
			assert.Zero(t, res.InFlightFailed)
		})
	}
}

// A request with the old ID after the renewal: its Update fails as
// renewed and sets no cookie. After RenameGrace, a client still sending
// the old ID never got the new one, and gets a new session.
func TestManager_OldIDAfterRenewal(t *testing.T) {
	var offset atomic.Int64
	w := newWebWith(t, 3, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Clock = replication.WallClock(func() time.Time { return time.Now().Add(time.Duration(offset.Load())) })
		return cfg
	}})
	c := client(t)
	do(t, c, "POST", w.servers[0].URL+"/put", url.Values{"k": {"cart"}, "v": {"2 books"}})
	u, _ := url.Parse(w.servers[0].URL)
	old := c.Jar.Cookies(u)[0].Value
	do(t, c, "POST", w.servers[1].URL+"/login", url.Values{"user": {"ann"}})
	stale := client(t)
	stale.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: old, Path: "/"}})

	code, body, h := do(t, stale, "POST", w.servers[2].URL+"/incr", nil)
	assert.Equal(t, http.StatusInternalServerError, code)
	assert.Contains(t, body, replication.ErrSessionRenewed.Error())
	assert.Empty(t, h.Values("Set-Cookie"))
	_, _, h = do(t, stale, "POST", w.servers[2].URL+"/put", url.Values{"k": {"cart"}, "v": {"stolen"}})
	assert.Empty(t, h.Values("Set-Cookie"))
	_, cart, _ := do(t, c, "GET", w.servers[0].URL+"/get?k=cart", nil)
	assert.Equal(t, "2 books", cart, "the old ID never writes the renewed session")

	offset.Store(int64(replication.RenameGrace + time.Second))
	_, _, h = do(t, stale, "POST", w.servers[2].URL+"/put", url.Values{"k": {"cart"}, "v": {"1 pear"}})
	require.Len(t, h.Values("Set-Cookie"), 1, "after the grace, a new session")
	assert.NotEqual(t, old, stale.Jar.Cookies(u)[0].Value)
	_, cart, _ = do(t, stale, "GET", w.servers[0].URL+"/get?k=cart", nil)
	assert.Equal(t, "1 pear", cart)
	_, cart, _ = do(t, c, "GET", w.servers[0].URL+"/get?k=cart", nil)
	assert.Equal(t, "2 books", cart)
}
