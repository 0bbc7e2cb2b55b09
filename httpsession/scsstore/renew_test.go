package scsstore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession/scsstore"
	"github.com/sessionmesh/sessionmesh/internal/testing/renewrace"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// raceApp is the application renewrace drives, written against scs alone.
func raceApp(sm *scs.SessionManager, gate *renewrace.Gate) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sm.Put(r.Context(), "user", r.FormValue("user"))
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("POST /slow", func(w http.ResponseWriter, r *http.Request) {
		gate.Hold(r.Context(), r.FormValue("ticket"))
		if r.FormValue("write") != "0" {
			sm.Put(r.Context(), "note", "written in flight")
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), r.FormValue("k"), r.FormValue("v"))
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user := sm.GetString(r.Context(), "user")
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, user)
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, sm.GetString(r.Context(), r.FormValue("k")))
	})
	return sm.LoadAndSave(mux)
}

// raceWeb starts three nodes serving raceApp, each with its own
// SessionManager configured by configure, and returns their addresses.
func raceWeb(t *testing.T, mode replication.Mode, gate *renewrace.Gate, configure func(sm *scs.SessionManager, st *scsstore.Store)) []string {
	c := testcluster.New(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = mode
		return cfg
	}})
	var urls []string
	for i := 0; i < 3; i++ {
		st := newStore(t, c.Start(fmt.Sprintf("n%d", i)).Store)
		sm := scs.New()
		sm.Store = st
		sm.ErrorFunc = scsstore.ErrorFunc(nil)
		st.KeepCookie = true
		if configure != nil {
			configure(sm, st)
		}
		srv := httptest.NewServer(raceApp(sm, gate))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	c.WaitConverged(t)
	return urls
}

// A request in flight while the user logs in again, or renews the token,
// on another node, does not log the user out: its commit, before or after
// the renewal, sets no cookie (KeepCookie), so whichever response the
// browser gets last it keeps the new token. The old token never answers
// as the session, and what the request wrote after the renewal never
// reaches it.
func TestSCS_RenewalIsNotLogout(t *testing.T) {
	configs := map[string]func(*scs.SessionManager, *scsstore.Store){
		"gob": nil,
		"gob, idle timeout": func(sm *scs.SessionManager, _ *scsstore.Store) {
			sm.IdleTimeout = time.Hour
		},
		"per-key codec": func(sm *scs.SessionManager, st *scsstore.Store) {
			codec := &scsstore.KeyCodec{}
			sm.Codec, st.Codec = codec, codec
		},
	}
	for mname, mode := range modes() {
		for cname, configure := range configs {
			t.Run(mname+", "+cname, func(t *testing.T) {
				gate := renewrace.NewGate()
				urls := raceWeb(t, mode, gate, configure)
				res := renewrace.Run(t, urls, gate, renewrace.Options{Cookie: "session", Rounds: 100, Concurrent: true, Stale: true})
				t.Logf("%+v", res)
				require.Equal(t, 100, res.Rounds)
				assert.Zero(t, res.LoggedOut, "users logged out")
				assert.Zero(t, res.OldIDAnswered, "old tokens that answered as the session")
				assert.Zero(t, res.WriteReachedNew, "writes with the old token in the renewed session")
				assert.Zero(t, res.CookieSet, "responses to the old token that set the cookie")
				assert.Zero(t, res.InFlightFailed)
			})
		}
	}
}

// Without scsstore.ErrorFunc (and so without KeepCookie) the response to
// a request in flight during the renewal, that commits after it, is scs's
// error page, but the user still stays logged in.
func TestSCS_RenewalWithTheDefaultErrorFuncIsNotLogout(t *testing.T) {
	gate := renewrace.NewGate()
	urls := raceWeb(t, replication.AllToAll, gate, func(sm *scs.SessionManager, st *scsstore.Store) {
		st.KeepCookie = false
		sm.ErrorFunc = func(w http.ResponseWriter, _ *http.Request, _ error) {
			http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		}
	})
	res := renewrace.Run(t, urls, gate, renewrace.Options{Cookie: "session", Rounds: 20})
	t.Logf("%+v", res)
	assert.Zero(t, res.LoggedOut)
	assert.Zero(t, res.CookieSet)
	assert.Equal(t, 16, res.InFlightFailed, "the requests that wrote got a 500")
}

func TestSCS_NewRefusesAsyncReplication(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.WriteConcern = replication.Async
		return cfg
	}})
	st := c.Start("n").Store
	c.WaitReady(t)
	_, err := scsstore.New(st)
	require.ErrorIs(t, err, scsstore.ErrAsync)
	direct := &scsstore.Store{Backend: st}
	require.ErrorIs(t, direct.Commit("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE", []byte("x"), time.Now().Add(time.Hour)), scsstore.ErrAsync)
}

// For replication.RenameGrace after Delete (which is how scs renews a
// token), Find answers with an empty session whose commits fail; after
// it, the token is unknown.
func TestStore_DeletedTokenIsFoundEmptyForTheGrace(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	c := testcluster.New(t, testcluster.Options{Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Clock = replication.WallClock(now)
		return cfg
	}})
	n := c.Start("n")
	c.WaitReady(t)
	for name, codec := range map[string]scs.Codec{"gob": scs.GobCodec{}, "per-key": &scsstore.KeyCodec{}} {
		t.Run(name, func(t *testing.T) {
			offset.Store(0)
			s := newStore(t, n.Store)
			s.Codec, s.Now = codec, now
			ctx := context.Background()
			tok := "tok-" + name
			b, err := codec.Encode(now().Add(time.Hour), map[string]interface{}{"user": "ann"})
			require.NoError(t, err)
			require.NoError(t, s.CommitCtx(ctx, tok, b, now().Add(time.Hour)))
			require.NoError(t, s.DeleteCtx(ctx, tok))

			b, found, err := s.FindCtx(ctx, tok)
			require.NoError(t, err)
			require.True(t, found, "a token renewed moments ago is found")
			_, values, err := codec.Decode(b)
			require.NoError(t, err)
			assert.Nil(t, values["user"], "as an empty session")
			values["user"] = "mallory"
			b, err = codec.Encode(now().Add(time.Hour), values)
			require.NoError(t, err)
			err = s.CommitCtx(ctx, tok, b, now().Add(time.Hour))
			require.ErrorIs(t, err, replication.ErrSessionRenewed, "whose commits fail")

			offset.Store(int64(replication.RenameGrace + time.Second))
			_, found, err = s.FindCtx(ctx, tok)
			require.NoError(t, err)
			assert.False(t, found, "after the grace, the token is unknown")
		})
	}
}
