package httpsession_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/internal/testing/leaktest"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// app is a small login application on one node.
func app(m *httpsession.Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if err := m.RenewID(ctx); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if err := m.Put(ctx, "user", r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user := m.GetString(r.Context(), "user")
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, user)
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Put(r.Context(), r.FormValue("k"), r.FormValue("v")); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, m.GetString(r.Context(), r.FormValue("k")))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := m.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, "bye")
	})
	mux.HandleFunc("POST /incr", func(w http.ResponseWriter, r *http.Request) {
		n, err := httpsession.Update(r.Context(), m, "counter", func(old int, _ bool) (int, error) { return old + 1, nil })
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprint(w, n, " ", m.GetInt(r.Context(), "counter"))
	})
	mux.HandleFunc("GET /nothing", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "nothing changed")
	})
	return m.LoadAndSave(mux)
}

// web is a cluster of nodes, each serving app over real HTTP.
type web struct {
	c       *testcluster.Cluster
	servers []*httptest.Server
}

func newWeb(t *testing.T, nodes int) *web {
	return newWebWith(t, nodes, testcluster.Options{Seed: 1})
}

func newWebWith(t *testing.T, nodes int, opts testcluster.Options) *web {
	w := &web{c: testcluster.New(t, opts)}
	for i := 0; i < nodes; i++ {
		n := w.c.Start(fmt.Sprintf("n%d", i))
		m := httpsession.New(n.Store)
		m.Cookie.Secure = false // httptest serves plain HTTP
		srv := httptest.NewServer(app(m))
		t.Cleanup(srv.Close)
		w.servers = append(w.servers, srv)
	}
	w.c.WaitReady(t)
	return w
}

// client is one browser: a cookie jar. Cookies are not isolated by port, so
// it sends its cookie to every node, as a browser behind a load balancer
// would.
func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func do(t *testing.T, c *http.Client, method, u string, form url.Values) (int, string, http.Header) {
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
	return resp.StatusCode, string(b), resp.Header
}

func TestManager_SessionFollowsTheUserAcrossNodes(t *testing.T) {
	w := newWeb(t, 3)
	c := client(t)
	code, _, _ := do(t, c, "POST", w.servers[0].URL+"/login", url.Values{"user": {"ann"}})
	require.Equal(t, 200, code)
	for round := 0; round < 3; round++ {
		for i, srv := range w.servers {
			code, body, _ := do(t, c, "GET", srv.URL+"/me", nil)
			require.Equal(t, 200, code, "node %d", i)
			require.Equal(t, "ann", body)
		}
	}
	// A value written on one node is read on the next request on another.
	for i := 0; i < 9; i++ {
		v := fmt.Sprint(i)
		do(t, c, "POST", w.servers[i%3].URL+"/put", url.Values{"k": {"n"}, "v": {v}})
		_, got, _ := do(t, c, "GET", w.servers[(i+1)%3].URL+"/get?k=n", nil)
		require.Equal(t, v, got)
	}
}

func TestManager_CookieHasSafeDefaults(t *testing.T) {
	w := newWeb(t, 1)
	n := w.c.Nodes()[0]
	srv := httptest.NewServer(app(httpsession.New(n.Store))) // defaults: Secure on
	defer srv.Close()
	_, _, h := do(t, client(t), "POST", srv.URL+"/login", url.Values{"user": {"ann"}})
	cookies := (&http.Response{Header: h}).Cookies()
	require.Len(t, cookies, 1)
	ck := cookies[0]
	assert.Equal(t, "session", ck.Name)
	assert.True(t, ck.HttpOnly)
	assert.True(t, ck.Secure)
	assert.Equal(t, http.SameSiteLaxMode, ck.SameSite)
	assert.Equal(t, "/", ck.Path)
	assert.Len(t, ck.Value, 43, "256 bits, base64url")
	assert.WithinDuration(t, time.Now().Add(24*time.Hour), ck.Expires, time.Minute)
}

func TestManager_BadCookiesGetANewEmptySession(t *testing.T) {
	w := newWeb(t, 1)
	for _, value := range []string{
		"garbage",
		strings.Repeat("A", 43),       // well-formed, unknown
		strings.Repeat("A", 42) + "!", // wrong alphabet
		strings.Repeat("x", 5000),     // huge
		"../../etc/passwd",
		"\x00\x01",
	} {
		req, err := http.NewRequest("GET", w.servers[0].URL+"/me", nil)
		require.NoError(t, err)
		req.Header.Set("Cookie", "session="+url.QueryEscape(value))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "cookie %q: a fresh session, not an error", value)
	}
	assert.Zero(t, w.c.Nodes()[0].Store.Stats().Sessions, "reads create no sessions")
}

func TestManager_RequestsThatChangeNothingWriteNothing(t *testing.T) {
	w := newWeb(t, 2)
	st := w.c.Nodes()[0].Store
	anon := client(t)
	for i := 0; i < 50; i++ {
		_, _, h := do(t, anon, "GET", w.servers[0].URL+"/nothing", nil)
		assert.Empty(t, h.Values("Set-Cookie"))
	}
	assert.Zero(t, st.Stats().Sessions, "no session for visitors who store nothing")

	c := client(t)
	do(t, c, "POST", w.servers[0].URL+"/login", url.Values{"user": {"ann"}})
	writes := st.Stats().Writes
	for i := 0; i < 20; i++ {
		_, body, h := do(t, c, "GET", w.servers[i%2].URL+"/me", nil)
		require.Equal(t, "ann", body)
		assert.Empty(t, h.Values("Set-Cookie"))
	}
	assert.Equal(t, writes, st.Stats().Writes)
}

func TestManager_RenewIDEndsTheOldIDEverywhere(t *testing.T) {
	w := newWeb(t, 3)
	c := client(t)
	do(t, c, "POST", w.servers[0].URL+"/put", url.Values{"k": {"cart"}, "v": {"2 books"}})
	u, _ := url.Parse(w.servers[0].URL)
	before := c.Jar.Cookies(u)[0].Value

	do(t, c, "POST", w.servers[1].URL+"/login", url.Values{"user": {"ann"}})
	after := c.Jar.Cookies(u)[0].Value
	require.NotEqual(t, before, after, "login gives a new ID")

	for _, srv := range w.servers {
		_, cart, _ := do(t, c, "GET", srv.URL+"/get?k=cart", nil)
		assert.Equal(t, "2 books", cart, "the session kept its data")
		old := client(t)
		old.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: before, Path: "/"}})
		code, _, _ := do(t, old, "GET", srv.URL+"/me", nil)
		assert.Equal(t, http.StatusUnauthorized, code, "the pre-login ID is dead on %s", srv.URL)
		_, cart, _ = do(t, old, "GET", srv.URL+"/get?k=cart", nil)
		assert.Empty(t, cart)
	}
}

func TestManager_LogoutEndsTheSessionEverywhere(t *testing.T) {
	w := newWeb(t, 3)
	c := client(t)
	do(t, c, "POST", w.servers[0].URL+"/login", url.Values{"user": {"ann"}})
	u, _ := url.Parse(w.servers[0].URL)
	id := c.Jar.Cookies(u)[0].Value
	_, _, h := do(t, c, "POST", w.servers[1].URL+"/logout", nil)
	assert.Contains(t, h.Get("Set-Cookie"), "Max-Age=0", "the cookie is cleared")
	replay := client(t)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: id, Path: "/"}})
	for _, srv := range w.servers {
		code, _, _ := do(t, replay, "GET", srv.URL+"/me", nil)
		assert.Equal(t, http.StatusUnauthorized, code)
	}
}

func TestManager_ConcurrentRequestsKeepEachOthersChanges(t *testing.T) {
	w := newWeb(t, 3)
	c := client(t)
	do(t, c, "POST", w.servers[0].URL+"/login", url.Values{"user": {"ann"}})
	var wg sync.WaitGroup
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, c, "POST", w.servers[i%3].URL+"/put", url.Values{"k": {fmt.Sprint("k", i)}, "v": {fmt.Sprint(i)}})
		}()
	}
	wg.Wait()
	for i := 0; i < 30; i++ {
		_, v, _ := do(t, c, "GET", w.servers[(i+1)%3].URL+fmt.Sprintf("/get?k=k%d", i), nil)
		assert.Equal(t, fmt.Sprint(i), v)
	}
}

func TestManager_ValuesKeepTheirTypes(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	st := c.Start("n").Store
	c.WaitReady(t)
	m := httpsession.New(st)
	type profile struct {
		Name  string
		Roles []string
	}
	when := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	h := m.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if r.Method == "POST" {
			require.NoError(t, m.Put(ctx, "int", 42))
			require.NoError(t, m.Put(ctx, "big", int64(1)<<40))
			require.NoError(t, m.Put(ctx, "bool", true))
			require.NoError(t, m.Put(ctx, "float", 2.5))
			require.NoError(t, m.Put(ctx, "time", when))
			require.NoError(t, m.Put(ctx, "bytes", []byte{1, 2}))
			require.NoError(t, m.Put(ctx, "profile", profile{"ann", []string{"admin"}}))
			require.Error(t, m.Put(ctx, "chan", make(chan int)), "an unencodable value fails at Put")
			return
		}
		assert.Equal(t, 42, m.GetInt(ctx, "int"))
		assert.Equal(t, int64(1)<<40, m.GetInt64(ctx, "big"))
		assert.True(t, m.GetBool(ctx, "bool"))
		assert.Equal(t, 2.5, m.GetFloat(ctx, "float"))
		assert.True(t, when.Equal(m.GetTime(ctx, "time")))
		assert.Equal(t, []byte{1, 2}, m.GetBytes(ctx, "bytes"))
		p, ok := httpsession.Get[profile](ctx, m, "profile")
		assert.True(t, ok)
		assert.Equal(t, profile{"ann", []string{"admin"}}, p)
		_, ok = httpsession.Get[profile](ctx, m, "int")
		assert.False(t, ok, "a value of another type is not returned")
		assert.False(t, m.Exists(ctx, "chan"))
		assert.Equal(t, []string{"big", "bool", "bytes", "float", "int", "profile", "time"}, m.Keys(ctx))
	}))
	srv := httptest.NewTLSServer(h)
	defer srv.Close()
	cl := srv.Client()
	jar, _ := cookiejar.New(nil)
	cl.Jar = jar
	resp, err := cl.Post(srv.URL, "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	resp, err = cl.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
}

func TestManager_SessionIsSavedBeforeTheFirstByte(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	st := c.Start("n").Store
	c.WaitReady(t)
	m := httpsession.New(st)
	saved := make(chan bool, 1)
	h := m.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, m.Put(r.Context(), "k", "v"))
		w.(http.Flusher).Flush()
		saved <- st.Stats().Sessions == 1
		fmt.Fprint(w, "done")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	assert.True(t, <-saved, "the session is in the store before the response starts")
	assert.NotEmpty(t, rec.Result().Cookies())
}

func TestManager_StoreErrorsGoToErrorFunc(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	st := c.Start("n").Store
	c.WaitReady(t)
	m := httpsession.New(st)
	var got error
	m.ErrorFunc = func(w http.ResponseWriter, r *http.Request, err error) {
		got = err
		http.Error(w, "sorry", http.StatusServiceUnavailable)
	}
	h := m.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = m.Put(r.Context(), "k", "v")
		fmt.Fprint(w, "handler output")
	}))
	require.NoError(t, st.Close())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.ErrorIs(t, got, replication.ErrClosed)
	assert.NotContains(t, rec.Body.String(), "handler output")
}

func TestManager_WithoutMiddleware(t *testing.T) {
	m := httpsession.New(nil)
	ctx := context.Background()
	assert.ErrorIs(t, m.Put(ctx, "k", "v"), httpsession.ErrNoSession)
	assert.ErrorIs(t, m.RenewID(ctx), httpsession.ErrNoSession)
	assert.ErrorIs(t, m.Destroy(ctx), httpsession.ErrNoSession)
	assert.Equal(t, "", m.GetString(ctx, "k"))
}

// With asynchronous replication lagging behind, a browser still reads its
// own writes on whichever node its next request lands: the cookie carries
// the version of the last write.
func TestManager_ReadYourWritesWithAsyncReplication(t *testing.T) {
	w := newWebWith(t, 3, testcluster.Options{Seed: 2, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.WriteConcern = replication.Async
		cfg.MaxReadWait = 2 * time.Second
		return cfg
	}})
	for _, a := range w.c.Nodes() {
		for _, b := range w.c.Nodes() {
			if a != b {
				w.c.Net.Delay(a.Name, b.Name, 30*time.Millisecond)
			}
		}
	}
	c := client(t)
	code, _, _ := do(t, c, "POST", w.servers[0].URL+"/login", url.Values{"user": {"ann"}})
	require.Equal(t, 200, code)
	for i := 0; i < 15; i++ {
		v := fmt.Sprint(i)
		_, _, h := do(t, c, "POST", w.servers[i%3].URL+"/put", url.Values{"k": {"n"}, "v": {v}})
		assert.Contains(t, h.Get("Set-Cookie"), ".", "the cookie carries a version hint")
		_, got, _ := do(t, c, "GET", w.servers[(i+1)%3].URL+"/get?k=n", nil)
		require.Equal(t, v, got, "request %d read a stale session", i)
	}
	var behind, stale uint64
	for _, n := range w.c.Nodes() {
		behind += n.Store.Stats().BehindReads
		stale += n.Store.Stats().StaleReads
	}
	assert.Positive(t, behind, "some reads found replication behind and waited")
	assert.Zero(t, stale)
}

// Parallel requests of one browser that increment one counter through
// different nodes count every increment.
func TestManager_UpdateCountsEveryConcurrentIncrement(t *testing.T) {
	w := newWeb(t, 3)
	c := client(t)
	code, body, h := do(t, c, "POST", w.servers[0].URL+"/incr", nil)
	require.Equal(t, 200, code)
	assert.Equal(t, "1 1", body, "Update creates the session; the request reads its own update")
	assert.NotEmpty(t, h.Get("Set-Cookie"))
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body, _ := do(t, c, "POST", w.servers[i%3].URL+"/incr", nil)
			assert.Equal(t, 200, code, body)
		}()
	}
	wg.Wait()
	_, body, _ = do(t, c, "POST", w.servers[1].URL+"/incr", nil)
	assert.Equal(t, "66 66", body)
}
