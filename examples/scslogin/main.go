// Command scslogin is the login example of sessionmesh rebuilt on
// alexedwards/scs v2, the session library most Go applications use, for
// side-by-side benchmarks (examples/loadgen -compare): the same HTTP
// contract, byte for byte the same JSON, the same token renewal at login,
// and the same idle timeout and lifetime, with the sessions kept where an
// scs user keeps them instead of in sessionmesh:
//
//	-store redis   scs's redisstore (github.com/alexedwards/scs/redisstore on
//	               github.com/gomodule/redigo) on a Redis server: what a
//	               user picks to share sessions between several servers
//	-store memory  scs's memstore in this process: a single server, no
//	               sharing (with several copies behind a load balancer, users
//	               would be logged out at random)
//	-store nats    an scs.Store on a NATS JetStream KeyValue bucket (memory
//	               storage, -nats-replicas copies) of a NATS server embedded
//	               in this process and clustered with the other servers'
//	               (-nats-cluster, -nats-routes); reads ask the stream leader,
//	               so a request sees its user's previous write (natsstore.go)
//	-store cookie  no store: the session is in the cookie, encrypted and
//	               signed by gorilla/securecookie with keys derived from
//	               -cookie-secret, the same on every server; logging out only
//	               drops the browser's copy (cookie.go)
//
// Run three behind any round-robin load balancer, with a Redis server on
// 127.0.0.1:6379:
//
//	go run ./examples/scslogin -name s1 -http 127.0.0.1:8081 -store redis -redis 127.0.0.1:6379
//	go run ./examples/scslogin -name s2 -http 127.0.0.1:8082 -store redis -redis 127.0.0.1:6379
//	go run ./examples/scslogin -name s3 -http 127.0.0.1:8083 -store redis -redis 127.0.0.1:6379
//
// Three with the sessions in an embedded NATS cluster (each server also
// lists its own route; it ignores it):
//
//	routes=127.0.0.1:6221,127.0.0.1:6222,127.0.0.1:6223
//	go run ./examples/scslogin -name s1 -http 127.0.0.1:8081 -store nats -nats-cluster 127.0.0.1:6221 -nats-routes $routes
//	(s2, s3 alike)
//
// Endpoints (as examples/login):
//
//	GET  /         a page to log in, see who you are and which node answered, visit, log out
//	GET  /healthz  200 when the session store answers, else 503
//	POST /login    form fields user and password (any user, password "demo"): 200, or 401
//	GET  /me       200 {"user":...,"node":...,"visits":...} when logged in, else 401
//	POST /visit    increments visits: 200 {"user":...,"visits":N,"node":...}, or 401
//	POST /logout   destroys the session
//
// With an idle timeout (the default, like examples/login's) scs writes the
// session back to its store on every request, reads included, to move its
// expiry; -idle-timeout 0 turns that off. SIGTERM and SIGINT stop the
// server gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"strings"

	"github.com/alexedwards/scs/redisstore"
	"github.com/alexedwards/scs/v2"
	"github.com/gomodule/redigo/redis"

	"github.com/sessionmesh/sessionmesh/examples/internal/pprofserve"
)

type options struct {
	name, httpAddr, store, redisAddr, logLevel, pprofAddr string
	redisPool                                             int
	cookieSecure                                          bool
	idleTimeout, lifetime                                 time.Duration
	nats                                                  natsOptions
	cookieSecret                                          string
}

func main() {
	var o options
	host, _ := os.Hostname()
	flag.StringVar(&o.name, "name", host, "node name, reported in every reply")
	flag.StringVar(&o.httpAddr, "http", "127.0.0.1:8080", "HTTP listen address")
	flag.StringVar(&o.store, "store", "memory", `session store: "memory" (scs memstore, this process only), "redis" (scs redisstore), "nats" (embedded NATS JetStream cluster) or "cookie" (the session in the cookie)`)
	flag.StringVar(&o.redisAddr, "redis", "127.0.0.1:6379", "Redis address, for -store redis")
	flag.IntVar(&o.redisPool, "redis-pool", 128, "idle Redis connections kept for reuse (redigo Pool.MaxIdle); set it to at least the concurrency")
	flag.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	flag.BoolVar(&o.cookieSecure, "cookie-secure", false, "mark the session cookie Secure (serve over HTTPS then)")
	flag.DurationVar(&o.idleTimeout, "idle-timeout", 30*time.Minute, "end sessions unused for this long (0: never)")
	flag.DurationVar(&o.lifetime, "lifetime", 24*time.Hour, "end sessions this long after login")
	flag.StringVar(&o.pprofAddr, "pprof", "", "serve net/http/pprof on this address (default: off)")
	var routes string
	flag.StringVar(&o.nats.clusterAddr, "nats-cluster", "127.0.0.1:6222", "for -store nats: where the embedded NATS server listens for its cluster's routes")
	flag.StringVar(&routes, "nats-routes", "", "for -store nats: comma-separated cluster addresses of every server of the NATS cluster")
	flag.IntVar(&o.nats.replicas, "nats-replicas", 3, "for -store nats: replicas of the session bucket (at most the servers)")
	flag.StringVar(&o.nats.bucket, "nats-bucket", "sessions", "for -store nats: name of the KeyValue bucket")
	flag.Int64Var(&o.nats.maxMemory, "nats-max-memory", 1<<30, "for -store nats: JetStream memory limit in bytes")
	flag.StringVar(&o.cookieSecret, "cookie-secret", os.Getenv(cookieSecretEnv), "for -store cookie: hex secret, at least 32 bytes, the same on every server (default $"+cookieSecretEnv+")")
	flag.Parse()
	for _, r := range strings.Split(routes, ",") {
		if r = strings.TrimSpace(r); r != "" {
			o.nats.routes = append(o.nats.routes, r)
		}
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "scslogin: -log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("scslogin: " + err.Error())
		os.Exit(1)
	}
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	a, err := newApp(ctx, o, log)
	if err != nil {
		return err
	}
	defer a.close()
	if o.pprofAddr != "" {
		ps, err := pprofserve.ListenAndServe(o.pprofAddr)
		if err != nil {
			return err
		}
		defer ps.Close()
		log.Info("serving pprof", "addr", "http://"+ps.Addr()+"/debug/pprof/")
	}
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return fmt.Errorf("listen http: %w", err)
	}
	handler := a.routes()
	if a.cookies != nil {
		handler = a.cookies.routes()
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving", "node", a.name, "store", o.store, "http", "http://"+ln.Addr().String()+"/")
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(hctx); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = srv.Close()
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// app is the login application on an scs session manager.
type app struct {
	name     string
	sessions *scs.SessionManager
	log      *slog.Logger
	pool     *redis.Pool // for -store redis
	nats     *natsStore  // for -store nats
	cookies  *cookieApp  // for -store cookie: serves instead of sessions
}

// natsReadyTimeout bounds how long -store nats waits for its cluster.
const natsReadyTimeout = 60 * time.Second

func newApp(ctx context.Context, o options, log *slog.Logger) (*app, error) {
	sm := scs.New() // its default Store is a memstore
	sm.IdleTimeout = o.idleTimeout
	sm.Lifetime = o.lifetime
	sm.Cookie.Secure = o.cookieSecure
	a := &app{name: o.name, sessions: sm, log: log}
	switch o.store {
	case "memory":
	case "redis":
		a.pool = &redis.Pool{
			MaxIdle:     o.redisPool,
			IdleTimeout: 4 * time.Minute,
			Dial: func() (redis.Conn, error) {
				return redis.Dial("tcp", o.redisAddr,
					redis.DialConnectTimeout(2*time.Second),
					redis.DialReadTimeout(5*time.Second),
					redis.DialWriteTimeout(5*time.Second))
			},
		}
		sm.Store = redisstore.New(a.pool)
	case "nats":
		if len(o.nats.routes) == 0 {
			return nil, errors.New("-store nats needs -nats-routes")
		}
		ctx, cancel := context.WithTimeout(ctx, natsReadyTimeout)
		defer cancel()
		st, err := openNATS(ctx, o.name, o.nats)
		if err != nil {
			return nil, err
		}
		a.nats = st
		sm.Store = st
	case "cookie":
		if o.cookieSecret == "" {
			return nil, errNoCookieSecret
		}
		c, err := newCookieApp(a, o.cookieSecret, o)
		if err != nil {
			return nil, err
		}
		a.cookies = c
	default:
		return nil, fmt.Errorf(`-store must be "memory", "redis", "nats" or "cookie", not %q`, o.store)
	}
	sm.ErrorFunc = func(w http.ResponseWriter, _ *http.Request, err error) {
		log.Warn("session store", "err", err)
		a.fail(w, err)
	}
	return a, nil
}

func (a *app) close() {
	if a.pool != nil {
		_ = a.pool.Close()
	}
	if a.nats != nil {
		a.nats.close()
	}
}
