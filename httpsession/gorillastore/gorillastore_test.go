package gorillastore_test

import (
	"context"
	"encoding/gob"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession/gorillastore"
	"github.com/sessionmesh/sessionmesh/internal/testing/leaktest"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// The examples run memberlist, hence leaktest's grace period.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

var hashKey = []byte("0123456789abcdef0123456789abcdef")

type profile struct {
	Name  string
	Roles []string
}

func init() { gob.Register(profile{}) }

const cookieName = "sid"

// app is a login application written against gorilla/sessions alone; it
// saves the session on every request, as many gorilla applications do.
func app(store *gorillastore.Store) http.Handler {
	mux := http.NewServeMux()
	session := func(w http.ResponseWriter, r *http.Request) *sessions.Session {
		s, err := store.Get(r, cookieName)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return nil
		}
		return s
	}
	save := func(w http.ResponseWriter, r *http.Request, s *sessions.Session) bool {
		if err := s.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return false
		}
		return true
	}
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := session(w, r)
		if s == nil {
			return
		}
		store.RenewID(r, s)
		s.Values["user"] = r.FormValue("user")
		s.Values["visits"] = 42
		s.Values["profile"] = profile{Name: r.FormValue("user"), Roles: []string{"admin"}}
		s.Values[7] = "a non-string key"
		s.AddFlash("welcome")
		if save(w, r, s) {
			fmt.Fprint(w, "ok")
		}
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		s := session(w, r)
		if s == nil || !save(w, r, s) {
			return
		}
		user, _ := s.Values["user"].(string)
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		p, _ := s.Values["profile"].(profile)
		fmt.Fprintf(w, "%s %d %s %v", user, s.Values["visits"], strings.Join(p.Roles, ","), s.Values[7])
	})
	mux.HandleFunc("POST /visit", func(w http.ResponseWriter, r *http.Request) {
		s := session(w, r)
		if s == nil {
			return
		}
		v, _ := s.Values["visits"].(int)
		s.Values["visits"] = v + 1
		if save(w, r, s) {
			fmt.Fprint(w, v+1)
		}
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		s := session(w, r)
		if s == nil {
			return
		}
		if v := r.FormValue("v"); v != "" {
			s.Values[r.FormValue("k")] = v
		} else {
			delete(s.Values, r.FormValue("k"))
		}
		save(w, r, s)
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		if s := session(w, r); s != nil {
			fmt.Fprint(w, s.Values[r.FormValue("k")])
		}
	})
	mux.HandleFunc("GET /flash", func(w http.ResponseWriter, r *http.Request) {
		s := session(w, r)
		if s == nil {
			return
		}
		flashes := s.Flashes()
		if save(w, r, s) {
			fmt.Fprint(w, flashes)
		}
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		s := session(w, r)
		if s == nil {
			return
		}
		s.Options.MaxAge = -1
		if save(w, r, s) {
			fmt.Fprint(w, "bye")
		}
	})
	return mux
}

// web is a cluster whose nodes each serve app over real HTTP, each with
// its own Store, as separate server processes would.
type web struct {
	c       *testcluster.Cluster
	servers map[string]*httptest.Server
	backs   map[string]*recording
	names   []string
}

func newWeb(t *testing.T, mode replication.Mode) *web {
	w := &web{
		c: testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
			cfg := replication.DefaultLocalConfig()
			cfg.AntiEntropyInterval = 50 * time.Millisecond
			cfg.Mode = mode
			return cfg
		}}),
		servers: map[string]*httptest.Server{},
		backs:   map[string]*recording{},
	}
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("n%d", i)
		b := &recording{Backend: w.c.Start(name).Store}
		store, err := gorillastore.New(b, hashKey)
		require.NoError(t, err)
		store.Options.Secure = false // httptest serves plain HTTP
		srv := httptest.NewServer(app(store))
		t.Cleanup(srv.Close)
		w.servers[name], w.backs[name] = srv, b
		w.names = append(w.names, name)
	}
	w.c.WaitConverged(t)
	return w
}

func (w *web) url(name, path string) string { return w.servers[name].URL + path }

// kill crashes node name: its store and its web server.
func (w *web) kill(name string) {
	w.c.Kill(name)
	w.servers[name].Close()
	w.names = slices.DeleteFunc(w.names, func(n string) bool { return n == name })
}

// writes returns every write the adapters made since the last call.
func (w *web) writes() []replication.Changes {
	var out []replication.Changes
	for _, b := range w.backs {
		b.mu.Lock()
		out = append(out, b.writes...)
		b.writes = nil
		b.mu.Unlock()
	}
	return out
}

// recording records the writes an adapter makes.
type recording struct {
	gorillastore.Backend
	mu     sync.Mutex
	writes []replication.Changes // guards: writes made
}

func (b *recording) Save(ctx context.Context, id string, c replication.Changes) (replication.Version, error) {
	b.mu.Lock()
	b.writes = append(b.writes, c)
	b.mu.Unlock()
	return b.Backend.Save(ctx, id, c)
}

func (b *recording) Rename(ctx context.Context, oldID, newID string, c replication.Changes) (replication.Version, error) {
	b.mu.Lock()
	b.writes = append(b.writes, c)
	b.mu.Unlock()
	return b.Backend.Rename(ctx, oldID, newID, c)
}

func browser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar}
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

// cookie returns the browser's session cookie value for w's servers.
func cookie(t *testing.T, c *http.Client, w *web) string {
	u, err := url.Parse(w.servers["n0"].URL)
	require.NoError(t, err)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == cookieName {
			return ck.Value
		}
	}
	return ""
}

// replay returns a browser that holds only the given cookie value.
func replay(t *testing.T, w *web, value string) *http.Client {
	c := browser(t)
	u, _ := url.Parse(w.servers["n0"].URL)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: cookieName, Value: value, Path: "/"}})
	return c
}

func modes() map[string]replication.Mode {
	return map[string]replication.Mode{"all-to-all": replication.AllToAll, "backups(1)": replication.Backups(1)}
}

// Users log in with gorilla's own API on one node, are logged in on every
// other with their values' types, and lose nothing when a node dies.
func TestGorilla_SessionsFollowUsersAcrossNodesAndSurviveAKill(t *testing.T) {
	for name, mode := range modes() {
		t.Run(name, func(t *testing.T) {
			w := newWeb(t, mode)
			users := make([]*http.Client, 6)
			for i := range users {
				users[i] = browser(t)
				code, _, _ := do(t, users[i], "POST", w.url(w.names[i%3], "/login"), url.Values{"user": {fmt.Sprint("user", i)}})
				require.Equal(t, http.StatusOK, code)
			}
			for i, c := range users {
				for _, n := range w.names {
					code, body, _ := do(t, c, "GET", w.url(n, "/me"), nil)
					require.Equal(t, http.StatusOK, code, "user %d on %s", i, n)
					require.Equal(t, fmt.Sprintf("user%d 42 admin a non-string key", i), body)
				}
			}
			_, flashes, _ := do(t, users[0], "GET", w.url("n2", "/flash"), nil)
			assert.Equal(t, "[welcome]", flashes)
			_, flashes, _ = do(t, users[0], "GET", w.url("n1", "/flash"), nil)
			assert.Equal(t, "[]", flashes, "a flash is read once, cluster-wide")
			for i := 0; i < 6; i++ {
				_, got, _ := do(t, users[0], "POST", w.url(w.names[i%3], "/visit"), nil)
				require.Equal(t, fmt.Sprint(43+i), got)
			}

			w.kill("n0")
			for i, c := range users {
				want := fmt.Sprintf("user%d 42 admin a non-string key", i)
				if i == 0 {
					want = "user0 48 admin a non-string key"
				}
				for _, n := range w.names {
					code, body, _ := do(t, c, "GET", w.url(n, "/me"), nil)
					require.Equal(t, http.StatusOK, code, "user %d on %s after the kill", i, n)
					require.Equal(t, want, body)
				}
			}
			_, got, _ := do(t, users[1], "POST", w.url("n1", "/visit"), nil)
			require.Equal(t, "43", got)
			_, body, _ := do(t, users[1], "GET", w.url("n2", "/me"), nil)
			require.Equal(t, "user1 43 admin a non-string key", body)
		})
	}
}

func TestGorilla_OnlyChangedValuesAreWritten(t *testing.T) {
	w := newWeb(t, replication.AllToAll)
	c := browser(t)
	do(t, c, "POST", w.url("n0", "/login"), url.Values{"user": {"ann"}})
	login := w.writes()
	require.Len(t, login, 1)
	assert.Len(t, login[0].Set, 5, "user, visits, profile, the flashes, and the non-string keys")

	for i := 0; i < 10; i++ {
		code, _, h := do(t, c, "GET", w.url(w.names[i%3], "/me"), nil)
		require.Equal(t, http.StatusOK, code)
		assert.Empty(t, h.Get("Set-Cookie"), "the cookie is as fresh as the stored deadline")
	}
	assert.Empty(t, w.writes(), "a Save that changes nothing writes nothing")

	do(t, c, "POST", w.url("n1", "/put"), url.Values{"k": {"color"}, "v": {"blue"}})
	got := w.writes()
	require.Len(t, got, 1)
	assert.Equal(t, []string{"v.color"}, keys(got[0].Set))
	assert.Empty(t, got[0].Delete)

	do(t, c, "POST", w.url("n2", "/put"), url.Values{"k": {"color"}})
	got = w.writes()
	require.Len(t, got, 1)
	assert.Empty(t, got[0].Set)
	assert.Equal(t, []string{"v.color"}, got[0].Delete)
	_, v, _ := do(t, c, "GET", w.url("n0", "/get?k=color"), nil)
	assert.Equal(t, "<nil>", v)
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Two tabs change different keys at the same moment on different nodes:
// both changes survive, where a whole-session store keeps one.
func TestGorilla_ConcurrentRequestsKeepEachOthersChanges(t *testing.T) {
	w := newWeb(t, replication.AllToAll)
	c := browser(t)
	do(t, c, "POST", w.url("n0", "/login"), url.Values{"user": {"ann"}})
	var wg sync.WaitGroup
	for i := 0; i < 24; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, c, "POST", w.url(w.names[i%3], "/put"), url.Values{"k": {fmt.Sprint("k", i)}, "v": {fmt.Sprint(i)}})
		}()
	}
	wg.Wait()
	for i := 0; i < 24; i++ {
		_, v, _ := do(t, c, "GET", w.url(w.names[(i+1)%3], fmt.Sprintf("/get?k=k%d", i)), nil)
		assert.Equal(t, fmt.Sprint(i), v)
	}
}

func TestGorilla_LogoutEndsTheSessionEverywhere(t *testing.T) {
	w := newWeb(t, replication.AllToAll)
	c := browser(t)
	do(t, c, "POST", w.url("n0", "/login"), url.Values{"user": {"ann"}})
	old := cookie(t, c, w)
	_, _, h := do(t, c, "POST", w.url("n1", "/logout"), nil)
	assert.Contains(t, h.Get("Set-Cookie"), "Max-Age=0", "the cookie is cleared")
	assert.Empty(t, cookie(t, c, w))
	for _, n := range w.names {
		code, _, _ := do(t, replay(t, w, old), "GET", w.url(n, "/me"), nil)
		assert.Equal(t, http.StatusUnauthorized, code, "the old cookie is dead on %s", n)
	}
}

func TestGorilla_RenewIDEndsTheOldIDEverywhere(t *testing.T) {
	w := newWeb(t, replication.AllToAll)
	c := browser(t)
	do(t, c, "POST", w.url("n0", "/put"), url.Values{"k": {"cart"}, "v": {"2 books"}})
	before := cookie(t, c, w)
	require.NotEmpty(t, before)
	do(t, c, "POST", w.url("n1", "/login"), url.Values{"user": {"ann"}})
	after := cookie(t, c, w)
	var oldID, newID string
	codecs := securecookie.CodecsFromPairs(hashKey)
	require.NoError(t, securecookie.DecodeMulti(cookieName, before, &oldID, codecs...))
	require.NoError(t, securecookie.DecodeMulti(cookieName, after, &newID, codecs...))
	require.NotEqual(t, oldID, newID, "login moved the session to a new ID")
	for _, n := range w.names {
		_, cart, _ := do(t, c, "GET", w.url(n, "/get?k=cart"), nil)
		assert.Equal(t, "2 books", cart, "the session kept its values")
		_, ok, err := w.c.Node(n).Store.Get(context.Background(), oldID)
		require.NoError(t, err)
		assert.False(t, ok, "the old ID is dead on %s", n)
		_, cart, _ = do(t, replay(t, w, before), "GET", w.url(n, "/get?k=cart"), nil)
		assert.Equal(t, "<nil>", cart)
	}
}

func TestGorilla_CookiesAreSignedWithSafeDefaults(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	st := c.Start("n").Store
	c.WaitReady(t)
	store, err := gorillastore.New(st, hashKey)
	require.NoError(t, err)
	srv := httptest.NewTLSServer(app(store)) // defaults: Secure on
	defer srv.Close()
	cl := srv.Client()
	_, _, h := do(t, cl, "POST", srv.URL+"/login", url.Values{"user": {"ann"}})
	cookies := (&http.Response{Header: h}).Cookies()
	require.Len(t, cookies, 1)
	ck := cookies[0]
	assert.True(t, ck.HttpOnly)
	assert.True(t, ck.Secure)
	assert.Equal(t, http.SameSiteLaxMode, ck.SameSite)
	assert.Equal(t, "/", ck.Path)
	assert.Equal(t, gorillastore.DefaultMaxAge, ck.MaxAge)
	var id string
	require.NoError(t, securecookie.DecodeMulti(cookieName, ck.Value, &id, securecookie.CodecsFromPairs(hashKey)...))
	assert.Len(t, id, 43, "the cookie carries a signed 256-bit ID, not the values")
	assert.NotContains(t, ck.Value, id)

	// Anything else than a cookie this store signed is a fresh session,
	// not an error page.
	forged, err := securecookie.EncodeMulti(cookieName, id, securecookie.CodecsFromPairs([]byte("another key, another cluster...."))...)
	require.NoError(t, err)
	for _, value := range []string{"garbage", ck.Value[:len(ck.Value)-3] + "abc", forged, strings.Repeat("x", 5000)} {
		req, err := http.NewRequest("GET", srv.URL+"/me", nil)
		require.NoError(t, err)
		req.AddCookie(&http.Cookie{Name: cookieName, Value: value})
		resp, err := cl.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "cookie %.20q", value)
	}

	// A visitor whose session holds nothing gets no cookie and no state.
	sessionsBefore := st.Stats().Sessions
	_, _, h = do(t, cl, "GET", srv.URL+"/me", nil)
	assert.Empty(t, h.Values("Set-Cookie"))
	assert.Equal(t, sessionsBefore, st.Stats().Sessions)
}

func TestGorilla_NewValidatesKeys(t *testing.T) {
	for _, keys := range [][][]byte{nil, {{}}, {hashKey, []byte("short")}} {
		_, err := gorillastore.New(nil, keys...)
		assert.ErrorIs(t, err, gorillastore.ErrInvalidKeys)
	}
	_, err := gorillastore.New(nil, hashKey, nil, hashKey, make([]byte, 32))
	assert.NoError(t, err)
}

// A session saved with another *http.Request than the one it was loaded
// with (the state of the load is lost) still writes only what changed.
func TestGorilla_SaveWithAnotherRequest(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	b := &recording{Backend: c.Start("n").Store}
	c.WaitReady(t)
	store, err := gorillastore.New(b, hashKey)
	require.NoError(t, err)

	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	s, err := store.Get(r, cookieName)
	require.NoError(t, err)
	s.Values["a"], s.Values["b"] = 1, 2
	require.NoError(t, s.Save(r, rec))

	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(rec.Result().Cookies()[0])
	s, err = store.Get(r, cookieName)
	require.NoError(t, err)
	assert.Equal(t, 2, s.Values["b"])
	s.Values["b"] = 3
	b.writes = nil
	require.NoError(t, store.Save(httptest.NewRequest("GET", "/", nil), httptest.NewRecorder(), s))
	require.Len(t, b.writes, 1)
	assert.Equal(t, []string{"v.b"}, keys(b.writes[0].Set))
}

// A stored value that does not decode is reported, and kept by a Save
// that does not set its key.
func TestGorilla_UndecodableValuesAreReportedAndKept(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	st := c.Start("n").Store
	c.WaitReady(t)
	store, err := gorillastore.New(st, hashKey)
	require.NoError(t, err)

	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	s, err := store.Get(r, cookieName)
	require.NoError(t, err)
	s.Values["good"] = 1
	require.NoError(t, s.Save(r, rec))
	id := s.ID
	_, err = st.Save(context.Background(), id, replication.Changes{Set: map[string][]byte{"v.bad": []byte("not gob")}})
	require.NoError(t, err)

	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(rec.Result().Cookies()[0])
	s, err = store.Get(r, cookieName)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"bad"`)
	assert.Equal(t, id, s.ID)
	assert.Equal(t, 1, s.Values["good"])
	s.Values["good"] = 2
	require.NoError(t, s.Save(r, httptest.NewRecorder()))
	stored, ok, err := st.Get(context.Background(), id)
	require.NoError(t, err)
	require.True(t, ok)
	bad, ok := stored.Value("v.bad")
	assert.True(t, ok)
	assert.Equal(t, "not gob", string(bad))
}
