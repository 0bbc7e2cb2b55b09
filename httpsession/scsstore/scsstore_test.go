package scsstore_test

import (
	"context"
	"encoding/gob"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/httpsession/scsstore"
	"github.com/sessionmesh/sessionmesh/internal/testing/leaktest"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

func TestMain(m *testing.M) {
	if os.Getenv(nextBuildEnv) != "" {
		nextBuild() // a child process: see TestSCS_TypeChangeFailsOnlyTheChangedKey
		return
	}
	// scs.New starts a cleanup goroutine for its default in-memory store
	// even when the store is replaced, and it never ends: its stop channel
	// is created inside the goroutine, so StopCleanup races with it. The
	// examples run memberlist, hence leaktest's grace period.
	leaktest.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/alexedwards/scs/v2/memstore.(*MemStore).startCleanup"))
}

type profile struct {
	Name  string
	Roles []string
}

func init() { gob.Register(profile{}) }

// app is a login application written against scs alone.
func app(sm *scs.SessionManager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if err := sm.RenewToken(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sm.Put(ctx, "user", r.FormValue("user"))
		sm.Put(ctx, "visits", 42)
		sm.Put(ctx, "profile", profile{Name: r.FormValue("user"), Roles: []string{"admin"}})
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		user := sm.GetString(ctx, "user")
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		p, _ := sm.Get(ctx, "profile").(profile)
		fmt.Fprintf(w, "%s %d %s", user, sm.GetInt(ctx, "visits"), strings.Join(p.Roles, ","))
	})
	mux.HandleFunc("POST /visit", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		sm.Put(ctx, "visits", sm.GetInt(ctx, "visits")+1)
		fmt.Fprint(w, sm.GetInt(ctx, "visits"))
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), r.FormValue("k"), r.FormValue("v"))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "bye")
	})
	return sm.LoadAndSave(mux)
}

// web is a cluster whose nodes each serve app over real HTTP, each with
// its own scs.SessionManager, as separate server processes would.
type web struct {
	c       *testcluster.Cluster
	servers map[string]*httptest.Server
	backs   map[string]*counting
	sms     map[string]*scs.SessionManager
	names   []string
}

func newWeb(t *testing.T, mode replication.Mode, configure func(*scs.SessionManager)) *web {
	w := &web{
		c: testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
			cfg := replication.DefaultLocalConfig()
			cfg.AntiEntropyInterval = 50 * time.Millisecond
			cfg.Mode = mode
			return cfg
		}}),
		servers: map[string]*httptest.Server{},
		backs:   map[string]*counting{},
		sms:     map[string]*scs.SessionManager{},
	}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("n%d", i)
		n := w.c.Start(name)
		b := &counting{Backend: n.Store}
		sm := scs.New()
		sm.Store = newStore(t, b)
		sm.ErrorFunc = scsstore.ErrorFunc(nil)
		if configure != nil {
			configure(sm)
		}
		srv := httptest.NewServer(app(sm))
		t.Cleanup(srv.Close)
		w.servers[name], w.backs[name], w.sms[name] = srv, b, sm
		w.names = append(w.names, name)
	}
	w.c.WaitConverged(t)
	return w
}

// url returns the address of node name's server.
func (w *web) url(name, path string) string { return w.servers[name].URL + path }

// kill crashes node name: its store and its web server.
func (w *web) kill(name string) {
	w.c.Kill(name)
	w.servers[name].Close()
	w.names = slices.DeleteFunc(w.names, func(n string) bool { return n == name })
}

// newStore returns a Store on b.
func newStore(t *testing.T, b scsstore.Backend) *scsstore.Store {
	s, err := scsstore.New(b)
	require.NoError(t, err)
	return s
}

// counting counts the writes an adapter makes.
type counting struct {
	scsstore.Backend
	saves atomic.Int64
}

func (c *counting) Save(ctx context.Context, id string, ch replication.Changes) (replication.Version, error) {
	c.saves.Add(1)
	return c.Backend.Save(ctx, id, ch)
}

// browser is a client with a cookie jar. Cookies are not isolated by port,
// so it sends its cookie to every node, as behind a load balancer.
func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar}
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// token returns the session cookie the browser holds for w's servers.
func token(t *testing.T, c *http.Client, w *web) string {
	u, err := url.Parse(w.servers["n0"].URL)
	require.NoError(t, err)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "session" {
			return ck.Value
		}
	}
	return ""
}

func modes() map[string]replication.Mode {
	return map[string]replication.Mode{"all-to-all": replication.AllToAll, "backups(1)": replication.Backups(1)}
}

// Users log in through scs's own middleware on one node, are logged in on
// every other, keep their values' types, and lose nothing when a node dies.
func TestSCS_SessionsFollowUsersAcrossNodesAndSurviveAKill(t *testing.T) {
	for name, mode := range modes() {
		t.Run(name, func(t *testing.T) {
			w := newWeb(t, mode, nil)
			users := make([]*http.Client, 6)
			for i := range users {
				users[i] = browser(t)
				code, _ := do(t, users[i], "POST", w.url(w.names[i%3], "/login"), url.Values{"user": {fmt.Sprint("user", i)}})
				require.Equal(t, http.StatusOK, code)
			}
			for i, c := range users {
				for _, n := range w.names {
					code, body := do(t, c, "GET", w.url(n, "/me"), nil)
					require.Equal(t, http.StatusOK, code, "user %d on %s", i, n)
					require.Equal(t, fmt.Sprintf("user%d 42 admin", i), body, "an int stays an int for GetInt")
				}
			}
			// Each write is read by the next request, on the next node.
			for i := 0; i < 6; i++ {
				_, got := do(t, users[0], "POST", w.url(w.names[i%3], "/visit"), nil)
				require.Equal(t, fmt.Sprint(43+i), got)
			}

			w.kill("n0")
			for i, c := range users {
				for _, n := range w.names {
					code, body := do(t, c, "GET", w.url(n, "/me"), nil)
					require.Equal(t, http.StatusOK, code, "user %d on %s after the kill", i, n)
					want := fmt.Sprintf("user%d 42 admin", i)
					if i == 0 {
						want = "user0 48 admin"
					}
					require.Equal(t, want, body)
				}
			}
			_, got := do(t, users[1], "POST", w.url("n1", "/visit"), nil)
			require.Equal(t, "43", got)
			_, body := do(t, users[1], "GET", w.url("n2", "/me"), nil)
			require.Equal(t, "user1 43 admin", body)
		})
	}
}

func TestSCS_RenewTokenEndsTheOldTokenEverywhere(t *testing.T) {
	w := newWeb(t, replication.AllToAll, nil)
	c := browser(t)
	do(t, c, "POST", w.url("n0", "/put"), url.Values{"k": {"cart"}, "v": {"2 books"}})
	before := token(t, c, w)
	require.NotEmpty(t, before)
	do(t, c, "POST", w.url("n1", "/login"), url.Values{"user": {"ann"}})
	after := token(t, c, w)
	require.NotEqual(t, before, after)

	for _, n := range w.names {
		st := w.c.Node(n).Store
		_, ok, err := st.Get(context.Background(), before)
		require.NoError(t, err)
		assert.False(t, ok, "the old token is dead on %s", n)
		code, body := do(t, c, "GET", w.url(n, "/me"), nil)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "ann 42 admin", body)
	}
}

func TestSCS_DestroyLogsOutEverywhere(t *testing.T) {
	w := newWeb(t, replication.AllToAll, nil)
	c := browser(t)
	do(t, c, "POST", w.url("n0", "/login"), url.Values{"user": {"ann"}})
	tok := token(t, c, w)
	code, _ := do(t, c, "POST", w.url("n1", "/logout"), nil)
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, token(t, c, w), "the cookie is cleared")

	replay := browser(t)
	u, _ := url.Parse(w.servers["n0"].URL)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: tok, Path: "/"}})
	for _, n := range w.names {
		code, _ := do(t, replay, "GET", w.url(n, "/me"), nil)
		assert.Equal(t, http.StatusUnauthorized, code, "the token is dead on %s", n)
	}
	// A late commit of the destroyed session (a request that loaded it
	// before the logout) does not bring it back.
	st := newStore(t, w.c.Node("n2").Store)
	require.ErrorIs(t, st.Commit(tok, []byte("late"), time.Now().Add(time.Hour)), replication.ErrSessionEnded)
	_, found, err := st.Find(tok)
	require.NoError(t, err)
	assert.False(t, found)
}

// With an IdleTimeout scs commits on every request; only commits that
// change a value, or move the expiry by a step, reach the cluster.
func TestSCS_IdleCommitsAreCoalesced(t *testing.T) {
	w := newWeb(t, replication.AllToAll, func(sm *scs.SessionManager) { sm.IdleTimeout = time.Hour })
	c := browser(t)
	do(t, c, "POST", w.url("n0", "/login"), url.Values{"user": {"ann"}})
	saves := func() (n int64) {
		for _, b := range w.backs {
			n += b.saves.Load()
		}
		return n
	}
	before := saves()
	for i := 0; i < 30; i++ {
		code, body := do(t, c, "GET", w.url(w.names[i%3], "/me"), nil)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "ann 42 admin", body)
	}
	assert.Equal(t, before, saves(), "reads write nothing")
	_, got := do(t, c, "POST", w.url("n1", "/visit"), nil)
	assert.Equal(t, "43", got)
	assert.Equal(t, before+1, saves(), "a change is one write")
	_, body := do(t, c, "GET", w.url("n2", "/me"), nil)
	assert.Equal(t, "ann 43 admin", body)
}

// scs's Iterate lists the sessions of the whole cluster, read from their
// owners, and never sessionmesh's own records.
func TestSCS_IterateListsTheClusterSessionsOnly(t *testing.T) {
	w := newWeb(t, replication.Backups(0), nil)
	want := map[string]string{}
	for i := 0; i < 12; i++ {
		c := browser(t)
		user := fmt.Sprint("user", i)
		do(t, c, "POST", w.url(w.names[i%3], "/login"), url.Values{"user": {user}})
		want[token(t, c, w)] = user
	}
	// An httpsession login on the same store: a session of another kind
	// and a principal index record.
	m := httpsession.New(w.c.Node("n0").Store)
	h := m.LoadAndSave(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		require.NoError(t, m.SetPrincipal(r.Context(), "ann"))
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/", nil))
	sessions, err := m.Sessions(context.Background(), "ann")
	require.NoError(t, err)
	require.Len(t, sessions, 1)

	for _, n := range w.names {
		got := map[string]string{}
		sm := w.sms[n]
		err := sm.Iterate(context.Background(), func(ctx context.Context) error {
			got[sm.Token(ctx)] = sm.GetString(ctx, "user")
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, want, got, "on %s", n)
		var owned int
		for _, p := range w.c.Node(n).Store.Partitions() {
			if p.Owned {
				owned++
			}
		}
		assert.Less(t, owned, replication.Partitions, "the scan read partitions from other nodes")
	}
}

// Concurrent requests of one user on different nodes: scs writes whole
// sessions, so the last commit wins, but every node agrees on it.
func TestSCS_ConcurrentCommitsConverge(t *testing.T) {
	w := newWeb(t, replication.AllToAll, nil)
	c := browser(t)
	do(t, c, "POST", w.url("n0", "/login"), url.Values{"user": {"ann"}})
	var wg sync.WaitGroup
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, c, "POST", w.url(w.names[i%3], "/put"), url.Values{"k": {"color"}, "v": {fmt.Sprint(i)}})
		}()
	}
	wg.Wait()
	w.c.WaitConverged(t)
	tok := token(t, c, w)
	var first []byte
	for _, n := range w.names {
		b, found, err := newStore(t, w.c.Node(n).Store).Find(tok)
		require.NoError(t, err)
		require.True(t, found)
		if first == nil {
			first = b
		}
		assert.Equal(t, first, b, "every node holds the same blob")
	}
}

// TestErrorFunc_Overloaded checks that a session refused by a full node
// is answered 503 with Retry-After, not scs's 500.
func TestErrorFunc_Overloaded(t *testing.T) {
	w := httptest.NewRecorder()
	scsstore.ErrorFunc(nil)(w, httptest.NewRequest("GET", "/", nil), fmt.Errorf("commit: %w", replication.ErrOverloaded))
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "10", w.Header().Get("Retry-After"))
}
