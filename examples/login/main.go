// Command login is a small login web application whose sessions are
// replicated across every running copy of it with sessionmesh. Start three
// and put any round-robin load balancer in front:
//
//	go run ./examples/login -name n1 -http 127.0.0.1:8081 -gossip 127.0.0.1:7946 -seeds 127.0.0.1:7946,127.0.0.1:7947,127.0.0.1:7948
//	go run ./examples/login -name n2 -http 127.0.0.1:8082 -gossip 127.0.0.1:7947 -seeds 127.0.0.1:7946,127.0.0.1:7947,127.0.0.1:7948
//	go run ./examples/login -name n3 -http 127.0.0.1:8083 -gossip 127.0.0.1:7948 -seeds 127.0.0.1:7946,127.0.0.1:7947,127.0.0.1:7948
//
// Endpoints:
//
//	GET  /         a page to log in, see who you are and which node answered, visit, log out
//	GET  /healthz  200 once the node has joined (or is alone) and holds every session it owns, else 503;
//	               the JSON body says whether every session has its full number of copies
//	               ("fully_replicated": the next failure is safe) and how full the memory budget is
//	               ("sessions" of "max_sessions", "session_bytes" of "max_bytes"; 0: no bound)
//	GET  /metrics  Prometheus metrics (sessionmesh_*, go_*, process_*)
//	GET  /cluster  a live status page of the cluster: members, partitions, sessions per node,
//	               replication health (?format=json for the same as JSON)
//	POST /login    form fields user and password (any user, password "demo"): 200, or 401;
//	               429 with Retry-After beyond 5 attempts per user or 20 per client address
//	               in 15 minutes, counted across the cluster (a correct login resets the user's);
//	               503 with Retry-After when the attempt cannot be counted (the limits fail closed)
//	GET  /me       200 {"user":...,"node":...,"visits":...} when logged in, else 401
//	POST /visit    increments visits: 200 {"user":...,"visits":N,"node":...}, or 401
//	POST /logout   destroys the session
//
// A node over its memory budget (-max-sessions, -max-bytes) answers 503
// with Retry-After (-overload-retry-after) to a login that would start a
// new session; users already logged in keep working.
//
// SIGTERM and SIGINT leave the cluster gracefully; after SIGKILL the other
// nodes still hold every session. With -snapshot-dir each node also keeps
// its sessions on its local disk (encrypted with the cluster secret), so
// that stopping or killing every node at once logs nobody out: a node
// loads its snapshot when it starts again and reconciles it with the
// others. When every node is stopped at once, each exits within 3 seconds
// rather than waiting for peers to hand its sessions to.
//
// Login attempts are throttled with package throttle: -throttle-user
// attempts per user name and -throttle-addr per client address in each
// -throttle-window, counted in the replicated store, so that no node and no
// restart of one gives an attacker more guesses. The client address is the
// connection's; with -trust-proxy, the last address of X-Forwarded-For
// (the one the load balancer in front appended) instead: set it only
// behind a proxy that sets the header, or clients choose their address.
//
// Instead of (or besides) -seeds, -seeds-dns finds the other nodes in DNS
// and looks them up again while running: host:port for A/AAAA records, or
// an SRV name such as _gossip._tcp.mesh.default.svc.cluster.local, as a
// Kubernetes headless Service provides (docs/kubernetes.md).
//
// Give every node the same cluster secret (32 random bytes, e.g. from
// "openssl rand -hex 32") in the environment variable SESSIONMESH_SECRET,
// with -secret, or in a -secret-file: gossip is then encrypted and the
// replication connections run mutually authenticated TLS 1.3, so a host
// without the secret can neither join nor read or write a session. A
// comma-separated list (or one secret per line in the file) gives the
// primary first and further accepted ones; on SIGHUP the node re-reads
// -secret-file and installs exactly its keys, which rotates the secret
// without downtime (see docs/security.md). Without a secret the cluster
// traffic is clear text.
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/examples/internal/pprofserve"
	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/throttle"
	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

type options struct {
	name, httpAddr, gossipAddr, replAddr, seeds string
	seedsDNS                                    string
	timers, logLevel                            string
	cookieSecure                                bool
	backups                                     int
	async                                       bool
	secret, secretFile, label, zone             string
	idleTimeout, lifetime                       time.Duration
	pprofAddr                                   string
	throttleUser, throttleAddr                  int
	throttleWindow                              time.Duration
	trustProxy                                  bool
	maxSessions                                 int
	maxBytes                                    int64
	overloadRetryAfter                          time.Duration
	snapshotDir                                 string
	snapshotInterval                            time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.name, "name", "", "node name, unique in the cluster (default: the host name)")
	flag.StringVar(&o.httpAddr, "http", "127.0.0.1:8080", "HTTP listen address")
	flag.StringVar(&o.gossipAddr, "gossip", "127.0.0.1:7946", "gossip (membership) bind address, TCP and UDP")
	flag.StringVar(&o.replAddr, "repl", "", "replication listen address (default: the gossip host, any free port)")
	flag.StringVar(&o.seeds, "seeds", "", "comma-separated gossip addresses to join; may include this node's own; any may be down")
	flag.StringVar(&o.seedsDNS, "seeds-dns", "", "comma-separated DNS names listing the nodes, looked up again while running: host:port (A/AAAA) or _svc._proto.name (SRV)")
	flag.StringVar(&o.timers, "timers", "local", `failure-detection timers: "local" (fast, for one machine) or "lan"`)
	flag.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	flag.BoolVar(&o.async, "async", false, "acknowledge writes before the other owners have them (read-your-writes through a version in the cookie)")
	flag.IntVar(&o.backups, "backups", -1, "backup copies of each session besides its primary (-1: every node holds every session)")
	flag.BoolVar(&o.cookieSecure, "cookie-secure", false, "mark the session cookie Secure (serve over HTTPS then)")
	flag.StringVar(&o.secret, "secret", "", "cluster secret(s): 32 random bytes in hex or base64, comma-separated, primary first (default: $"+secretEnv+"; prefer it: flags show in ps)")
	flag.StringVar(&o.secretFile, "secret-file", "", "file with the cluster secret(s), one per line, primary first; re-read on SIGHUP (overrides -secret)")
	flag.StringVar(&o.label, "label", "", "cluster label: nodes with another label never talk to this one")
	flag.StringVar(&o.zone, "zone", "", "zone (availability zone, rack) of this node: with -backups, each session's copies are spread over the zones")
	flag.DurationVar(&o.idleTimeout, "idle-timeout", 30*time.Minute, "end sessions unused for this long (0: never)")
	flag.DurationVar(&o.lifetime, "lifetime", 24*time.Hour, "end sessions this long after login")
	flag.IntVar(&o.maxSessions, "max-sessions", 0, "refuse new sessions (503) while this node holds this many, tombstones included (0: no bound by count; -max-bytes bounds them)")
	flag.Int64Var(&o.maxBytes, "max-bytes", 0, "refuse new sessions (503) while this node's sessions take this many bytes (estimated; 0: half of GOMEMLIMIT or of the container's memory limit, else 1 GiB; -1: no bound)")
	flag.DurationVar(&o.overloadRetryAfter, "overload-retry-after", 10*time.Second, "Retry-After of the 503 that refuses a new session on a full node")
	flag.StringVar(&o.pprofAddr, "pprof", "", "serve net/http/pprof on this address (default: off)")
	flag.IntVar(&o.throttleUser, "throttle-user", 5, "login attempts allowed per user name in each -throttle-window (0: no limit)")
	flag.IntVar(&o.throttleAddr, "throttle-addr", 20, "login attempts allowed per client address in each -throttle-window (0: no limit; load tests from one machine need it)")
	flag.DurationVar(&o.throttleWindow, "throttle-window", 15*time.Minute, "the window of the login limits")
	flag.BoolVar(&o.trustProxy, "trust-proxy", false, "take the client address from the last X-Forwarded-For entry (only behind a proxy that sets it)")
	flag.StringVar(&o.snapshotDir, "snapshot-dir", "", "keep the sessions in a snapshot in this local directory (one per node), so that a restart of every node keeps them (default: off)")
	flag.DurationVar(&o.snapshotInterval, "snapshot-interval", 5*time.Second, "how often to write the snapshot of -snapshot-dir")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "login: -log-level:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		log.Error("login: " + err.Error())
		os.Exit(1)
	}
}

// node is one running copy of the application: membership, session store
// and HTTP server.
type node struct {
	name      string
	mesh      *sessionmesh.Node // cluster, transport and store together
	cluster   *cluster.Cluster
	transport *tcp.Transport
	store     *replication.Store
	sessions  *httpsession.Manager
	// users and addrs throttle login attempts per user name and per
	// client address.
	users, addrs *throttle.Limiter
	// trustProxy takes the client address from X-Forwarded-For.
	trustProxy bool
	log        *slog.Logger
	// antiEntropy is the store's AntiEntropyInterval, which paces its
	// status polls of peers.
	antiEntropy time.Duration
}

func run(ctx context.Context, o options, log *slog.Logger) error {
	n, err := start(o, log)
	if err != nil {
		return err
	}
	if o.pprofAddr != "" {
		ps, err := pprofserve.ListenAndServe(o.pprofAddr)
		if err != nil {
			n.close()
			return err
		}
		defer ps.Close()
		log.Info("serving pprof", "addr", "http://"+ps.Addr()+"/debug/pprof/")
	}
	var fresh unusedConns
	srv := &http.Server{Addr: o.httpAddr, Handler: n.routes(), ReadHeaderTimeout: 10 * time.Second, ConnState: fresh.track}
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		n.close()
		return fmt.Errorf("listen http: %w", err)
	}
	log.Info("serving", "node", n.name, "http", "http://"+ln.Addr().String()+"/",
		"gossip", n.cluster.LocalMember().Addr)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	if o.secretFile != "" {
		reloadDone := make(chan struct{})
		var reload sync.WaitGroup
		reload.Go(func() { n.reloadSecretsOnHUP(o, log, reloadDone) })
		defer reload.Wait()
		defer close(reloadDone)
	}

	select {
	case err := <-serveErr:
		n.close()
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	// Graceful exit: stop accepting requests and finish those in flight
	// (a load balancer retries refused connections elsewhere), then hand
	// over and leave. Connections that never sent a request are closed
	// (Shutdown would wait up to 5 s for each: a proxy may have just dialed
	// one), and the requests in flight are not waited for beyond a short
	// bound.
	log.Info("leaving the cluster", "node", n.name)
	hctx, hcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer hcancel()
	srv.RegisterOnShutdown(fresh.closeAll) // called once the listener is closed
	if err := srv.Shutdown(hctx); err != nil {
		log.Warn("http shutdown", "err", err)
		_ = srv.Close()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.mesh.Leave(sctx); err != nil {
		log.Warn("leave", "err", err)
	}
	n.close()
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// start wires a transport, a cluster, a store and a session manager.
func start(o options, log *slog.Logger) (*node, error) {
	if o.timers != "local" && o.timers != "lan" {
		return nil, fmt.Errorf(`-timers must be "local" or "lan", not %q`, o.timers)
	}
	replAddr := o.replAddr
	if replAddr == "" {
		host, _, err := net.SplitHostPort(o.gossipAddr)
		if err != nil {
			return nil, fmt.Errorf("-gossip: %w", err)
		}
		replAddr = net.JoinHostPort(host, "0")
	}
	keys, err := loadSecrets(o)
	if err != nil {
		return nil, err
	}
	var discover func(context.Context) ([]string, error)
	if o.seedsDNS != "" {
		if discover, err = cluster.DNSSeeds(nil, splitList(o.seedsDNS)...); err != nil {
			return nil, fmt.Errorf("-seeds-dns: %w", err)
		}
	}
	cfg := sessionmesh.DefaultLocalNodeConfig()
	if o.timers == "lan" {
		cfg = sessionmesh.DefaultNodeConfig()
	}
	cfg.Cluster.Discover = discover
	cfg.Cluster.NodeName = o.name
	cfg.Cluster.BindAddr = o.gossipAddr
	cfg.Cluster.Seeds = splitList(o.seeds)
	cfg.Transport.BindAddr = replAddr
	cfg.Label = o.label
	cfg.Zone = o.zone
	if len(keys) > 0 {
		cfg.SecretKey, cfg.SecondaryKeys = keys[0], keys[1:]
	} else {
		log.Warn("no cluster secret: gossip and replication run in clear text and unauthenticated; " +
			"set " + secretEnv + ", -secret or -secret-file")
	}
	if o.backups >= 0 {
		cfg.Store.Mode = replication.Backups(o.backups)
	}
	if o.async {
		cfg.Store.WriteConcern = replication.Async
	}
	cfg.Store.MaxSessions, cfg.Store.MaxBytes = o.maxSessions, o.maxBytes
	cfg.Store.Logger = log
	cfg.Store.SnapshotDir, cfg.Store.SnapshotInterval = o.snapshotDir, o.snapshotInterval
	if c := testClock(); c != nil { // tests only: see testClockEnv
		log.Warn("store clock offset by a test file", "env", testClockEnv)
		cfg.Store.Clock = c
	}
	mesh, err := sessionmesh.StartNode(cfg)
	if err != nil {
		return nil, err
	}
	st := mesh.Store
	sessions := httpsession.New(st)
	sessions.Cookie.Secure = o.cookieSecure
	sessions.IdleTimeout = o.idleTimeout
	sessions.Lifetime = o.lifetime
	sessions.OverloadRetryAfter = o.overloadRetryAfter
	sessions.Logger = log
	users, err := newLimiter(st, "login-user", o.throttleUser, o.throttleWindow)
	if err != nil {
		_ = mesh.Close()
		return nil, fmt.Errorf("-throttle-user: %w", err)
	}
	addrs, err := newLimiter(st, "login-addr", o.throttleAddr, o.throttleWindow)
	if err != nil {
		_ = mesh.Close()
		return nil, fmt.Errorf("-throttle-addr: %w", err)
	}
	return &node{name: mesh.Cluster.LocalMember().Name, mesh: mesh, cluster: mesh.Cluster, transport: mesh.Transport,
		store: st, sessions: sessions, users: users, addrs: addrs, trustProxy: o.trustProxy, log: log,
		antiEntropy: cfg.Store.AntiEntropyInterval}, nil
}

// newLimiter returns the limiter called name, failing closed, or nil when
// limit is 0 (no limit).
func newLimiter(st *replication.Store, name string, limit int, window time.Duration) (*throttle.Limiter, error) {
	if limit == 0 {
		return nil, nil
	}
	return throttle.New(st, limit, window, throttle.Options{Name: name})
}

func (n *node) close() { _ = n.mesh.Close() }

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}
