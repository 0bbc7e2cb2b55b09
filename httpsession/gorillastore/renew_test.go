package gorillastore_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/sessions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession/gorillastore"
	"github.com/sessionmesh/sessionmesh/internal/testing/renewrace"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// raceApp is the application renewrace drives, written against
// gorilla/sessions alone; like many gorilla applications, it saves the
// session on every request.
func raceApp(store *gorillastore.Store, gate *renewrace.Gate) http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern string, fn func(w http.ResponseWriter, r *http.Request, s *sessions.Session) string) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, cookieName)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			body := fn(w, r, s)
			if err := s.Save(r, w); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			if body == "not logged in" {
				http.Error(w, body, http.StatusUnauthorized)
				return
			}
			fmt.Fprint(w, body)
		})
	}
	handle("POST /login", func(_ http.ResponseWriter, r *http.Request, s *sessions.Session) string {
		store.RenewID(r, s)
		s.Values["user"] = r.FormValue("user")
		return "ok"
	})
	handle("POST /renew", func(_ http.ResponseWriter, r *http.Request, s *sessions.Session) string {
		store.RenewID(r, s)
		return "ok"
	})
	handle("POST /slow", func(_ http.ResponseWriter, r *http.Request, s *sessions.Session) string {
		gate.Hold(r.Context(), r.FormValue("ticket"))
		if r.FormValue("write") != "0" {
			s.Values["note"] = "written in flight"
		}
		return "ok"
	})
	handle("POST /put", func(_ http.ResponseWriter, r *http.Request, s *sessions.Session) string {
		s.Values[r.FormValue("k")] = r.FormValue("v")
		return "ok"
	})
	handle("GET /me", func(_ http.ResponseWriter, _ *http.Request, s *sessions.Session) string {
		if user, _ := s.Values["user"].(string); user != "" {
			return user
		}
		return "not logged in"
	})
	handle("GET /get", func(_ http.ResponseWriter, r *http.Request, s *sessions.Session) string {
		v, _ := s.Values[r.FormValue("k")].(string)
		return v
	})
	return mux
}

// A request in flight while the user logs in again, or renews the ID, on
// another node, does not log the user out; nor does one sent with the old
// ID after the renewal. The old ID never answers as the session, and what
// they write never reaches it.
func TestGorilla_RenewalIsNotLogout(t *testing.T) {
	for name, mode := range modes() {
		t.Run(name, func(t *testing.T) {
			c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
				cfg := replication.DefaultLocalConfig()
				cfg.Mode = mode
				return cfg
			}})
			gate := renewrace.NewGate()
			var urls []string
			for i := 0; i < 3; i++ {
				store, err := gorillastore.New(c.Start(fmt.Sprintf("n%d", i)).Store, hashKey)
				require.NoError(t, err)
				store.Options.Secure = false
				store.Logger = slog.New(slog.DiscardHandler)
				srv := httptest.NewServer(raceApp(store, gate))
				t.Cleanup(srv.Close)
				urls = append(urls, srv.URL)
			}
			c.WaitConverged(t)
			res := renewrace.Run(t, urls, gate, renewrace.Options{Cookie: cookieName, Rounds: 100, Stale: true, Concurrent: true})
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

func TestGorilla_NewRefusesAsyncReplication(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.WriteConcern = replication.Async
		return cfg
	}})
	st := c.Start("n").Store
	c.WaitReady(t)
	_, err := gorillastore.New(st, hashKey)
	require.ErrorIs(t, err, gorillastore.ErrAsync)
}

// With DropUndecodable, a stored value that does not decode is logged and
// left out, Get returns no error, and a Save that does not set its key
// keeps it in the store.
func TestGorilla_DropUndecodableLogsInsteadOfFailing(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{})
	st := c.Start("n").Store
	c.WaitReady(t)
	store, err := gorillastore.New(st, hashKey)
	require.NoError(t, err)
	var logs strings.Builder
	store.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	store.DropUndecodable = true

	rec := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/", nil)
	s, err := store.Get(r, cookieName)
	require.NoError(t, err)
	s.Values["good"] = 1
	require.NoError(t, s.Save(r, rec))
	_, err = st.Save(context.Background(), s.ID, replication.Changes{Set: map[string][]byte{"v.bad": []byte("a type of another build")}})
	require.NoError(t, err)

	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(rec.Result().Cookies()[0])
	s, err = store.Get(r, cookieName)
	require.NoError(t, err)
	assert.Equal(t, map[interface{}]interface{}{"good": 1}, s.Values)
	assert.Contains(t, logs.String(), "level=WARN")
	assert.Contains(t, logs.String(), `\"bad\"`)
	s.Values["good"] = 2
	require.NoError(t, s.Save(r, httptest.NewRecorder()))
	stored, ok, err := st.Get(context.Background(), s.ID)
	require.NoError(t, err)
	require.True(t, ok)
	bad, ok := stored.Value("v.bad")
	assert.True(t, ok, "the value stays for the nodes that can read it")
	assert.Equal(t, "a type of another build", string(bad))
}
