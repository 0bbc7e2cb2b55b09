package httpsession_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// principalApp is a login application that tags sessions with their user.
func principalApp(m *httpsession.Manager) http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusInternalServerError) }
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		user := r.FormValue("user")
		if err := m.RenewID(ctx); err != nil {
			fail(w, err)
			return
		}
		if err := m.SetPrincipal(ctx, user); err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		if err := m.RenewID(r.Context()); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user := m.Principal(r.Context())
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, user)
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Destroy(r.Context()); err != nil {
			fail(w, err)
		}
	})
	mux.HandleFunc("POST /logout-everywhere", func(w http.ResponseWriter, r *http.Request) {
		n, err := m.DestroyAll(r.Context(), m.Principal(r.Context()))
		if err != nil {
			fail(w, err)
			return
		}
		fmt.Fprint(w, n)
	})
	return m.LoadAndSave(mux)
}

// pweb is a cluster of nodes serving principalApp.
type pweb struct {
	c       *testcluster.Cluster
	ms      map[string]*httpsession.Manager
	servers map[string]*httptest.Server
	names   []string
}

func newPweb(t *testing.T, opts testcluster.Options, configure func(*httpsession.Manager)) *pweb {
	w := &pweb{c: testcluster.New(t, opts), ms: map[string]*httpsession.Manager{}, servers: map[string]*httptest.Server{}}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("n%d", i)
		m := httpsession.New(w.c.Start(name).Store)
		m.Cookie.Secure = false // httptest serves plain HTTP
		if configure != nil {
			configure(m)
		}
		srv := httptest.NewServer(principalApp(m))
		t.Cleanup(srv.Close)
		w.ms[name], w.servers[name] = m, srv
		w.names = append(w.names, name)
	}
	w.c.WaitConverged(t)
	return w
}

func (w *pweb) url(name, path string) string { return w.servers[name].URL + path }

func (w *pweb) kill(name string) {
	w.c.Kill(name)
	w.servers[name].Close()
	delete(w.ms, name)
	w.names = slices.DeleteFunc(w.names, func(n string) bool { return n == name })
}

// sessionID returns the session ID in the browser's cookie.
func (w *pweb) sessionID(t *testing.T, c *http.Client) string {
	u, err := url.Parse(w.servers[w.names[0]].URL)
	require.NoError(t, err)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "session" {
			return ck.Value
		}
	}
	return ""
}

// login logs a new browser in as user on node.
func (w *pweb) login(t *testing.T, node, user string) *http.Client {
	c := client(t)
	code, body, _ := do(t, c, "POST", w.url(node, "/login"), url.Values{"user": {user}})
	require.Equal(t, http.StatusOK, code, body)
	return c
}

// listed returns the IDs Sessions lists for user on node.
func (w *pweb) listed(t *testing.T, node, user string) []string {
	t.Helper()
	ss, err := w.ms[node].Sessions(context.Background(), user)
	require.NoError(t, err)
	var ids []string
	for _, s := range ss {
		ids = append(ids, s.ID)
		assert.False(t, s.Created.IsZero())
		assert.True(t, s.Expires.After(time.Now()))
	}
	slices.Sort(ids)
	return ids
}

// concurrentLogins logs n browsers in as user at the same moment, spread
// over the nodes, and returns them with their session IDs, sorted.
func (w *pweb) concurrentLogins(t *testing.T, user string, n int) ([]*http.Client, []string) {
	cs := make([]*http.Client, n)
	var wg sync.WaitGroup
	for i := range cs {
		cs[i] = client(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, cs[i], "POST", w.url(w.names[i%len(w.names)], "/login"), url.Values{"user": {user}})
		}()
	}
	wg.Wait()
	var ids []string
	for _, c := range cs {
		id := w.sessionID(t, c)
		require.Len(t, id, 43)
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return cs, ids
}

func allToAllAndBackups() map[string]testcluster.Options {
	cfg := func(mode replication.Mode) func(string) replication.Config {
		return func(string) replication.Config {
			c := replication.DefaultLocalConfig()
			c.AntiEntropyInterval = 50 * time.Millisecond
			c.Mode = mode
			return c
		}
	}
	return map[string]testcluster.Options{
		"all-to-all": {Seed: 1, Config: cfg(replication.AllToAll)},
		"backups(1)": {Seed: 1, Config: cfg(replication.Backups(1))},
	}
}

// Logins of one user on three nodes at the same moment all land in the
// index: its records merge attribute by attribute.
func TestPrincipal_ConcurrentLoginsOnEveryNodeAreAllListed(t *testing.T) {
	w := newPweb(t, testcluster.Options{Seed: 1}, nil)
	_, ann := w.concurrentLogins(t, "ann", 12)
	_, bob := w.concurrentLogins(t, "bob", 3)
	for _, n := range w.names {
		assert.Equal(t, ann, w.listed(t, n, "ann"), "on %s", n)
		assert.Equal(t, bob, w.listed(t, n, "bob"), "on %s", n)
		assert.Empty(t, w.listed(t, n, "carol"))
	}
}

func TestPrincipal_DestroyAllLogsOutEverySessionOnEveryNode(t *testing.T) {
	w := newPweb(t, testcluster.Options{Seed: 1}, nil)
	anns, _ := w.concurrentLogins(t, "ann", 9)
	bobs, _ := w.concurrentLogins(t, "bob", 2)
	code, body, _ := do(t, anns[0], "POST", w.url("n1", "/logout-everywhere"), nil)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, "9", body)
	for _, n := range w.names {
		for i, c := range anns {
			code, _, _ := do(t, c, "GET", w.url(n, "/me"), nil)
			assert.Equal(t, http.StatusUnauthorized, code, "ann's session %d still works on %s", i, n)
		}
		for _, c := range bobs {
			_, body, _ := do(t, c, "GET", w.url(n, "/me"), nil)
			assert.Equal(t, "bob", body, "other users stay logged in")
		}
		assert.Empty(t, w.listed(t, n, "ann"))
	}
}

func TestPrincipal_CapEvictsTheOldest(t *testing.T) {
	w := newPweb(t, testcluster.Options{Seed: 1}, func(m *httpsession.Manager) { m.MaxSessionsPerPrincipal = 3 })
	var cs []*http.Client
	for i := 0; i < 5; i++ {
		cs = append(cs, w.login(t, w.names[i%3], "ann"))
	}
	other := w.login(t, "n0", "bob")
	for _, n := range w.names {
		for i, c := range cs {
			code, _, _ := do(t, c, "GET", w.url(n, "/me"), nil)
			if i < 2 {
				assert.Equal(t, http.StatusUnauthorized, code, "login %d was evicted, also on %s", i, n)
			} else {
				assert.Equal(t, http.StatusOK, code, "login %d is among the newest 3, on %s", i, n)
			}
		}
		code, _, _ := do(t, other, "GET", w.url(n, "/me"), nil)
		assert.Equal(t, http.StatusOK, code)
		assert.Len(t, w.listed(t, n, "ann"), 3)
	}
}

func TestPrincipal_IndexSurvivesANodeKill(t *testing.T) {
	for name, opts := range allToAllAndBackups() {
		t.Run(name, func(t *testing.T) {
			w := newPweb(t, opts, nil)
			anns, ids := w.concurrentLogins(t, "ann", 9)
			w.kill("n0")
			for _, n := range w.names {
				assert.Equal(t, ids, w.listed(t, n, "ann"), "on %s after the kill", n)
			}
			n, err := w.ms["n2"].DestroyAll(context.Background(), "ann")
			require.NoError(t, err)
			assert.Equal(t, 9, n)
			for _, n := range w.names {
				for i, c := range anns {
					code, _, _ := do(t, c, "GET", w.url(n, "/me"), nil)
					assert.Equal(t, http.StatusUnauthorized, code, "session %d on %s", i, n)
				}
			}
			// After re-replication the next failure loses nothing either.
			w.c.WaitConverged(t)
			_, ids = w.concurrentLogins(t, "ann", 4)
			w.kill("n1")
			assert.Equal(t, ids, w.listed(t, "n2", "ann"))
		})
	}
}

// RenewID moves the session to a new ID: the index follows, and the
// listing drops the dead ID.
func TestPrincipal_RenewIDAndLogoutKeepTheIndexCurrent(t *testing.T) {
	defer httpsession.SetIndexGrace(0)()
	w := newPweb(t, testcluster.Options{Seed: 1}, nil)
	a := w.login(t, "n0", "ann")
	b := w.login(t, "n1", "ann")
	before := w.sessionID(t, a)
	do(t, a, "POST", w.url("n2", "/renew"), nil)
	after := w.sessionID(t, a)
	require.NotEqual(t, before, after)
	want := []string{after, w.sessionID(t, b)}
	slices.Sort(want)
	assert.Equal(t, want, w.listed(t, "n0", "ann"))

	do(t, b, "POST", w.url("n1", "/logout"), nil)
	assert.Equal(t, []string{after}, w.listed(t, "n2", "ann"))
	// The dead entries are gone from the index records themselves.
	assert.Equal(t, 1, indexEntries(t, w.c.Node("n0").Store))
}

// indexEntries counts the entries of every principal index record.
func indexEntries(t *testing.T, st *replication.Store) int {
	n := 0
	require.NoError(t, st.Scan(context.Background(), func(s replication.Session) bool {
		if httpsession.IsReservedID(s.ID()) {
			n += s.Len()
		}
		return true
	}))
	return n
}

// A user tagged with another principal moves to that principal's index.
func TestPrincipal_ChangingThePrincipal(t *testing.T) {
	w := newPweb(t, testcluster.Options{Seed: 1}, nil)
	c := w.login(t, "n0", "ann")
	id := w.sessionID(t, c)
	do(t, c, "POST", w.url("n1", "/login"), url.Values{"user": {"bob"}})
	id2 := w.sessionID(t, c)
	require.NotEqual(t, id, id2)
	assert.Empty(t, w.listed(t, "n2", "ann"))
	assert.Equal(t, []string{id2}, w.listed(t, "n2", "bob"))
}

// A day's logins of one user overflow an index record into the next.
func TestPrincipal_IndexOverflowsIntoMoreRecords(t *testing.T) {
	w := newPweb(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Limits.MaxAttributes = 8
		return cfg
	}}, nil)
	_, ids := w.concurrentLogins(t, "ann", 30)
	for _, n := range w.names {
		assert.Equal(t, ids, w.listed(t, n, "ann"))
	}
	records := 0
	require.NoError(t, w.c.Node("n0").Store.Scan(context.Background(), func(s replication.Session) bool {
		if httpsession.IsReservedID(s.ID()) {
			records++
		}
		return true
	}))
	assert.GreaterOrEqual(t, records, 30/8, "at most 8 entries per record")
}

func TestPrincipal_NeedsALifetime(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	st := c.Start("n").Store
	c.WaitReady(t)
	m := httpsession.New(st)
	m.Lifetime, m.IdleTimeout = 0, time.Hour
	var err error
	h := m.LoadAndSave(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		err = m.SetPrincipal(r.Context(), "ann")
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	assert.ErrorIs(t, err, httpsession.ErrNoLifetime)
}
