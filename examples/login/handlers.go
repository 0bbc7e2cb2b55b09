package main

import (
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/throttle"
)

//go:embed index.html
var indexHTML []byte

// routes returns the application's handlers, wrapped in the session
// middleware (except /healthz, /metrics and /cluster, which need no
// session).
func (n *node) routes() http.Handler {
	app := http.NewServeMux()
	app.HandleFunc("GET /{$}", n.index)
	app.HandleFunc("POST /login", n.login)
	app.HandleFunc("GET /me", n.me)
	app.HandleFunc("POST /visit", n.visit)
	app.HandleFunc("POST /logout", n.logout)

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", n.healthz)
	root.Handle("GET /metrics", n.metricsHandler())
	root.Handle("GET /cluster", n.statusHandler())
	root.Handle("/", n.sessions.LoadAndSave(app))
	return root
}

func (n *node) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(indexHTML)
}

func (n *node) login(w http.ResponseWriter, r *http.Request) {
	user, password := r.PostFormValue("user"), r.PostFormValue("password")
	if user == "" || len(user) > 256 {
		n.reply(w, http.StatusUnauthorized, map[string]any{"error": "wrong user or password"})
		return
	}
	ctx := r.Context()
	// Every attempt counts, before the password is checked: counting only
	// the failures would let concurrent guesses all pass the check first.
	// The address first, so that one client spraying user names spends
	// its own limit, not the user limiter's key budget.
	if !n.allow(w, r, n.addrs, "ip:"+n.clientAddr(r)) || !n.allow(w, r, n.users, "user:"+user) {
		return
	}
	if subtle.ConstantTimeCompare([]byte(password), []byte("demo")) != 1 {
		n.reply(w, http.StatusUnauthorized, map[string]any{"error": "wrong user or password"})
		return
	}
	if n.users != nil {
		if err := n.users.Reset(ctx, "user:"+user); err != nil {
			n.log.Warn("login throttle: count not reset", "err", err) // it expires with its window
		}
	}
	// A new session ID at login: an ID planted before login is worthless.
	if err := n.sessions.RenewID(ctx); err != nil {
		n.fail(w, err)
		return
	}
	if err := n.sessions.Put(ctx, "user", user); err != nil {
		n.fail(w, err)
		return
	}
	if err := n.sessions.Put(ctx, "visits", 0); err != nil {
		n.fail(w, err)
		return
	}
	n.reply(w, http.StatusOK, map[string]any{"user": user})
}

// allow counts a login attempt for key with l (nil: no limit). When the
// attempt is over the limit it answers 429 with Retry-After and returns
// false. The limiters fail closed: when the store cannot count, the
// attempt is refused with 503 and Retry-After, so that a load balancer
// tries another node.
func (n *node) allow(w http.ResponseWriter, r *http.Request, l *throttle.Limiter, key string) bool {
	if l == nil {
		return true
	}
	ok, retryAfter, err := l.Allow(r.Context(), key)
	if ok {
		if err != nil {
			n.log.Warn("login throttle", "err", err)
		}
		return true
	}
	if errors.Is(err, replication.ErrOverloaded) {
		// The node is full: no new count, as no new session, until room
		// comes back; answer as the session manager does.
		retryAfter = n.sessions.OverloadRetryAfter
	}
	secs := max(1, int(math.Ceil(retryAfter.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	if err != nil && !errors.Is(err, throttle.ErrFull) {
		n.log.Warn("login throttle: cannot count, refusing", "err", err)
		n.reply(w, http.StatusServiceUnavailable, map[string]any{"error": "login attempts cannot be counted right now", "retry_after": secs})
		return false
	}
	n.reply(w, http.StatusTooManyRequests, map[string]any{"error": "too many login attempts", "retry_after": secs})
	return false
}

// clientAddr returns the address a login attempt comes from: the
// connection's, or with -trust-proxy the last X-Forwarded-For entry, which
// the proxy in front appended (the earlier ones are the client's word).
func (n *node) clientAddr(r *http.Request) string {
	if n.trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			list := strings.Split(xff[len(xff)-1], ",")
			if a := strings.TrimSpace(list[len(list)-1]); a != "" {
				return a
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (n *node) me(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	user := n.sessions.GetString(ctx, "user")
	if user == "" {
		n.reply(w, http.StatusUnauthorized, map[string]any{"error": "not logged in"})
		return
	}
	n.reply(w, http.StatusOK, map[string]any{"user": user, "visits": n.sessions.GetInt(ctx, "visits")})
}

func (n *node) visit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if n.sessions.GetString(ctx, "user") == "" {
		n.reply(w, http.StatusUnauthorized, map[string]any{"error": "not logged in"})
		return
	}
	// An atomic increment: parallel visits of one user through different
	// nodes each count once.
	visits, err := httpsession.Update(ctx, n.sessions, "visits", func(old int, _ bool) (int, error) { return old + 1, nil })
	switch {
	case errors.Is(err, replication.ErrSessionEnded):
		n.reply(w, http.StatusUnauthorized, map[string]any{"error": "not logged in"})
		return
	case err != nil:
		n.fail(w, err)
		return
	}
	// The user too, so that a client with many users in flight (wrk's
	// Lua script in examples/loadgen) can tell whose count this is.
	n.reply(w, http.StatusOK, map[string]any{"user": n.sessions.GetString(ctx, "user"), "visits": visits})
}

func (n *node) logout(w http.ResponseWriter, r *http.Request) {
	if err := n.sessions.Destroy(r.Context()); err != nil {
		n.fail(w, err)
		return
	}
	n.reply(w, http.StatusOK, map[string]any{"logged_out": true})
}

// healthz answers 200 once the node has joined the cluster (or found itself
// alone) and holds every session it owns, and while its store takes writes;
// 503 otherwise. The body says why ("problem": for example a clock too far
// ahead of the cluster's), and whether every session has its full number
// of copies.
func (n *node) healthz(w http.ResponseWriter, _ *http.Request) {
	settled := false
	select {
	case <-n.cluster.Settled():
		settled = true
	default:
	}
	st := n.store.Stats()
	var members []string
	for _, m := range n.cluster.Members() {
		if m.State == cluster.StateAlive {
			members = append(members, m.Name)
		}
	}
	sort.Strings(members)
	code := http.StatusOK
	problem := ""
	if err := n.store.Health(); err != nil {
		problem = err.Error() // e.g. the node's clock is too far ahead, or a member refuses it
	}
	if !settled || !st.Ready || problem != "" {
		code = http.StatusServiceUnavailable
	}
	n.reply(w, code, map[string]any{
		"joined":           settled,
		"ready":            st.Ready,
		"problem":          problem,
		"fully_replicated": n.store.FullyReplicated(),
		"under_replicated": st.UnderReplicated,
		"owner_losses":     st.OwnerLosses,
		"mode":             n.store.Mode().String(),
		"members":          members,
		"sessions":         st.Sessions,
		"session_bytes":    st.Bytes,
		"max_sessions":     st.MaxSessions,
		"max_bytes":        st.MaxBytes,
		"refused_sessions": st.Overloaded,
		"owned_partitions": st.OwnedPartitions,
		"ready_partitions": st.ReadyPartitions,
		"peers":            st.Peers,
		"degraded_peers":   st.DegradedPeers,
		"zones":            st.Zones,
		"single_zone":      st.SingleZone,
	})
}

func (n *node) fail(w http.ResponseWriter, err error) {
	n.reply(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
}

// reply writes v as JSON with the answering node's name added.
func (n *node) reply(w http.ResponseWriter, code int, v map[string]any) {
	v["node"] = n.name
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
