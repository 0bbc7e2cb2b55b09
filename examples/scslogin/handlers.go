package main

import (
	_ "embed"
	"encoding/json"
	"net/http"
)

//go:embed index.html
var indexHTML []byte

// routes returns the application's handlers, wrapped in the scs middleware
// (except /healthz, which needs no session). They mirror examples/login's
// handlers line for line.
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.index)
	mux.HandleFunc("POST /login", a.login)
	mux.HandleFunc("GET /me", a.me)
	mux.HandleFunc("POST /visit", a.visit)
	mux.HandleFunc("POST /logout", a.logout)

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", a.healthz)
	root.Handle("/", a.sessions.LoadAndSave(mux))
	return root
}

func (a *app) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(indexHTML)
}

func (a *app) login(w http.ResponseWriter, r *http.Request) {
	user, password := r.PostFormValue("user"), r.PostFormValue("password")
	if user == "" || len(user) > 256 || password != "demo" {
		a.reply(w, http.StatusUnauthorized, map[string]any{"error": "wrong user or password"})
		return
	}
	ctx := r.Context()
	// A new session token at login: a token planted before login is worthless.
	if err := a.sessions.RenewToken(ctx); err != nil {
		a.fail(w, err)
		return
	}
	a.sessions.Put(ctx, "user", user)
	a.sessions.Put(ctx, "visits", 0)
	a.reply(w, http.StatusOK, map[string]any{"user": user})
}

func (a *app) me(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := a.sessions.GetString(ctx, "user")
	if user == "" {
		a.reply(w, http.StatusUnauthorized, map[string]any{"error": "not logged in"})
		return
	}
	a.reply(w, http.StatusOK, map[string]any{"user": user, "visits": a.sessions.GetInt(ctx, "visits")})
}

func (a *app) visit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := a.sessions.GetString(ctx, "user")
	if user == "" {
		a.reply(w, http.StatusUnauthorized, map[string]any{"error": "not logged in"})
		return
	}
	visits := a.sessions.GetInt(ctx, "visits") + 1
	a.sessions.Put(ctx, "visits", visits)
	a.reply(w, http.StatusOK, map[string]any{"user": user, "visits": visits})
}

func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	if err := a.sessions.Destroy(r.Context()); err != nil {
		a.fail(w, err)
		return
	}
	a.reply(w, http.StatusOK, map[string]any{"logged_out": true})
}

// healthz answers 200 when the session store answers (a PING for Redis,
// the bucket's stream leader for NATS), 503 otherwise.
func (a *app) healthz(w http.ResponseWriter, r *http.Request) {
	if a.pool != nil {
		conn, err := a.pool.GetContext(r.Context())
		if err == nil {
			_, err = conn.Do("PING")
			_ = conn.Close()
		}
		if err != nil {
			a.reply(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "error": err.Error()})
			return
		}
	}
	if a.nats != nil {
		if err := a.nats.ping(r.Context()); err != nil {
			a.reply(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "error": err.Error()})
			return
		}
	}
	a.reply(w, http.StatusOK, map[string]any{"ready": true})
}

func (a *app) fail(w http.ResponseWriter, err error) {
	a.reply(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
}

// reply writes v as JSON with the answering node's name added.
func (a *app) reply(w http.ResponseWriter, code int, v map[string]any) {
	v["node"] = a.name
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
