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
//
// Run three behind any round-robin load balancer, with a Redis server on
// 127.0.0.1:6379:
//
//	go run ./examples/scslogin -name s1 -http 127.0.0.1:8081 -store redis -redis 127.0.0.1:6379
//	go run ./examples/scslogin -name s2 -http 127.0.0.1:8082 -store redis -redis 127.0.0.1:6379
//	go run ./examples/scslogin -name s3 -http 127.0.0.1:8083 -store redis -redis 127.0.0.1:6379
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
}

func main() {
	var o options
	host, _ := os.Hostname()
	flag.StringVar(&o.name, "name", host, "node name, reported in every reply")
	flag.StringVar(&o.httpAddr, "http", "127.0.0.1:8080", "HTTP listen address")
	flag.StringVar(&o.store, "store", "memory", `session store: "memory" (scs memstore, this process only) or "redis" (scs redisstore)`)
	flag.StringVar(&o.redisAddr, "redis", "127.0.0.1:6379", "Redis address, for -store redis")
	flag.IntVar(&o.redisPool, "redis-pool", 128, "idle Redis connections kept for reuse (redigo Pool.MaxIdle); set it to at least the concurrency")
	flag.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	flag.BoolVar(&o.cookieSecure, "cookie-secure", false, "mark the session cookie Secure (serve over HTTPS then)")
	flag.DurationVar(&o.idleTimeout, "idle-timeout", 30*time.Minute, "end sessions unused for this long (0: never)")
	flag.DurationVar(&o.lifetime, "lifetime", 24*time.Hour, "end sessions this long after login")
	flag.StringVar(&o.pprofAddr, "pprof", "", "serve net/http/pprof on this address (default: off)")
	flag.Parse()

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
	a, err := newApp(o, log)
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
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}
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
	pool     *redis.Pool // nil for the memory store
}

func newApp(o options, log *slog.Logger) (*app, error) {
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
	default:
		return nil, fmt.Errorf(`-store must be "memory" or "redis", not %q`, o.store)
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
}
