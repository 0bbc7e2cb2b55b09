// Command throttlebench measures package throttle next to Redis, in one
// run on one machine: the latency (p50, p99) and throughput of
// Limiter.Allow on three sessionmesh nodes on loopback against INCR +
// EXPIRE NX through go-redis on a redis-server started for the run; then
// POST /login of three examples/login processes under load, with and
// without throttling, and under a brute-force attack on one user. It
// prints a Markdown report (docs/benchmarks.md keeps one):
//
//	go run ./examples/throttlebench -calls 5000 -concurrency 32 -duration 5s
//
// docs/throttle-bench.sh installs redis-server from Debian's packages when
// it is missing, then runs this.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
	"github.com/sessionmesh/sessionmesh/throttle"
)

type options struct {
	calls       int
	concurrency int
	duration    time.Duration
	redisBin    string
	login       bool
}

func main() {
	var o options
	flag.IntVar(&o.calls, "calls", 5000, "sequential calls per latency scenario")
	flag.IntVar(&o.concurrency, "concurrency", 32, "calls in flight at once in the throughput runs")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each throughput run")
	flag.StringVar(&o.redisBin, "redis-server", "redis-server", "the redis-server executable")
	flag.BoolVar(&o.login, "login", true, "also load POST /login of three examples/login processes")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "throttlebench:", err)
		os.Exit(1)
	}
}

// stats summarises one scenario.
type stats struct {
	p50, p99 time.Duration
	perSec   float64
	errors   int64  // calls that failed (throughput runs)
	firstErr string // the first of them
}

func summarize(ds []time.Duration) stats {
	slices.Sort(ds)
	if len(ds) == 0 {
		return stats{}
	}
	return stats{p50: ds[len(ds)/2], p99: ds[len(ds)*99/100]}
}

// allowFunc is one rate-limit check: reports whether key is allowed.
type allowFunc func(ctx context.Context, key string) (bool, error)

// latency calls allow n times in sequence with key(i) and returns the
// latencies. It fails if any call errs or answers other than want.
func latency(ctx context.Context, n int, allow allowFunc, key func(int) string, want bool) (stats, error) {
	ds := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		ok, err := allow(ctx, key(i))
		ds = append(ds, time.Since(t0))
		if err != nil {
			return stats{}, err
		}
		if ok != want {
			return stats{}, fmt.Errorf("call %d of %q answered %v", i, key(i), ok)
		}
	}
	return summarize(ds), nil
}

// throughput runs allow from c goroutines for d, goroutine w using
// allows[w%len(allows)] with keys from key, and returns the calls per
// second and their latencies. Calls that fail are counted in
// stats.errors (and their latencies kept); it fails only when more than
// 1% do.
func throughput(ctx context.Context, c int, d time.Duration, allows []allowFunc, key func(w, i int) string) (stats, error) {
	var mu sync.Mutex
	var all []time.Duration
	var errs atomic.Int64
	var firstErr atomic.Pointer[error]
	end := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range c {
		wg.Go(func() {
			allow := allows[w%len(allows)]
			var ds []time.Duration
			for i := 0; time.Now().Before(end); i++ {
				t0 := time.Now()
				_, err := allow(ctx, key(w, i))
				ds = append(ds, time.Since(t0))
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
			mu.Lock()
			all = append(all, ds...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil && errs.Load()*100 > int64(len(all)) {
		return stats{}, fmt.Errorf("%d of %d calls failed, the first: %w", errs.Load(), len(all), *e)
	}
	s := summarize(all)
	s.perSec = float64(len(all)) / time.Since(start).Seconds()
	s.errors = errs.Load()
	if e := firstErr.Load(); e != nil {
		s.firstErr = (*e).Error()
	}
	return s, nil
}

// row is one line of a comparison table.
type row struct {
	name        string
	mesh, redis stats
}

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "throttlebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	g := procs.NewGroup(ctx, dir)
	defer g.Close()

	rdb, err := startRedis(ctx, g, o)
	if err != nil {
		return err
	}
	defer rdb.Close()
	nodes, err := startNodes(3)
	if err != nil {
		return err
	}
	defer func() {
		for _, n := range nodes {
			_ = n.Close()
		}
	}()

	const window = time.Hour
	const big = 1 << 40 // a limit never reached: every call is counted
	meshAllow := func(limit int, name string) ([]allowFunc, error) {
		var out []allowFunc
		for _, n := range nodes {
			l, err := throttle.New(n.Store, limit, window, throttle.Options{Name: name, MaxKeys: 1 << 30})
			if err != nil {
				return nil, err
			}
			out = append(out, func(ctx context.Context, key string) (bool, error) {
				ok, _, err := l.Allow(ctx, key)
				return ok, err
			})
		}
		return out, nil
	}
	redisAllow := func(limit int64, prefix string) allowFunc {
		return func(ctx context.Context, key string) (bool, error) {
			var incr *redis.IntCmd
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				incr = p.Incr(ctx, prefix+key)
				p.ExpireNX(ctx, prefix+key, window)
				return nil
			})
			if err != nil {
				return false, err
			}
			return incr.Val() <= limit, nil
		}
	}
	counted, err := meshAllow(big, "counted")
	if err != nil {
		return err
	}
	fresh, err := meshAllow(big, "fresh")
	if err != nil {
		return err
	}
	limited, err := meshAllow(5, "limited")
	if err != nil {
		return err
	}
	rCounted, rFresh, rLimited := redisAllow(big, "c:"), redisAllow(big, "f:"), redisAllow(5, "l:")
	hot := func(i int) string { return "k" + strconv.Itoa(i%100) }
	for i := range 100 { // the records exist: the scenario measures counting, not creating
		if _, err := counted[0](ctx, hot(i)); err != nil {
			return err
		}
		if _, err := rCounted(ctx, hot(i)); err != nil {
			return err
		}
	}
	for range 5 {
		if _, err := limited[0](ctx, "victim"); err != nil {
			return err
		}
		if _, err := rLimited(ctx, "victim"); err != nil {
			return err
		}
	}
	var rows []row
	measure := func(name string, m, r allowFunc, key func(int) string, want bool) error {
		ms, err := latency(ctx, o.calls, m, key, want)
		if err != nil {
			return fmt.Errorf("%s, sessionmesh: %w", name, err)
		}
		rs, err := latency(ctx, o.calls, r, key, want)
		if err != nil {
			return fmt.Errorf("%s, redis: %w", name, err)
		}
		rows = append(rows, row{name: name, mesh: ms, redis: rs})
		return nil
	}
	if err := measure("counted (100 keys in turn)", counted[0], rCounted, hot, true); err != nil {
		return err
	}
	if err := measure("first call of a key in its window", fresh[0], rFresh, func(i int) string { return "new-" + strconv.Itoa(i) }, true); err != nil {
		return err
	}
	if err := measure("refused (over the limit)", limited[0], rLimited, func(int) string { return "victim" }, false); err != nil {
		return err
	}
	var tput []row
	measureT := func(name string, m []allowFunc, r allowFunc, key func(w, i int) string) error {
		ms, err := throughput(ctx, o.concurrency, o.duration, m, key)
		if err != nil {
			return fmt.Errorf("%s, sessionmesh: %w", name, err)
		}
		rs, err := throughput(ctx, o.concurrency, o.duration, []allowFunc{r}, key)
		if err != nil {
			return fmt.Errorf("%s, redis: %w", name, err)
		}
		tput = append(tput, row{name: name, mesh: ms, redis: rs})
		return nil
	}
	if err := measureT("counted (1000 keys, calls spread over the 3 nodes)", counted, rCounted,
		func(w, i int) string { return "k" + strconv.Itoa((w*7919+i)%1000) }); err != nil {
		return err
	}
	if err := measureT("refused (one key over the limit)", limited, rLimited, func(int, int) string { return "victim" }); err != nil {
		return err
	}

	out := os.Stdout
	fmt.Fprintf(out, "`Limiter.Allow` on node 1 of 3 (all-to-all, loopback TCP) next to Redis `INCR` + `EXPIRE NX` pipelined through go-redis, %d sequential calls per scenario:\n\n", o.calls)
	fmt.Fprintln(out, "| scenario | sessionmesh p50 | p99 | Redis p50 | p99 | ratio p50 | ratio p99 |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(out, "| %s | %v | %v | %v | %v | %.2fx | %.2fx |\n", r.name, us(r.mesh.p50), us(r.mesh.p99), us(r.redis.p50), us(r.redis.p99),
			ratio(r.mesh.p50, r.redis.p50), ratio(r.mesh.p99, r.redis.p99))
	}
	fmt.Fprintf(out, "\nThroughput, %d calls in flight for %v (sessionmesh: spread over the 3 nodes in one process; Redis: one server):\n\n", o.concurrency, o.duration)
	fmt.Fprintln(out, "| scenario | sessionmesh calls/s | p50 | p99 | errors | Redis calls/s | p50 | p99 | ratio calls/s |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|")
	var notes []string
	for _, r := range tput {
		fmt.Fprintf(out, "| %s | %.0f | %v | %v | %d | %.0f | %v | %v | %.2fx |\n", r.name, r.mesh.perSec, us(r.mesh.p50), us(r.mesh.p99), r.mesh.errors,
			r.redis.perSec, us(r.redis.p50), us(r.redis.p99), r.mesh.perSec/r.redis.perSec)
		if r.mesh.errors > 0 {
			notes = append(notes, fmt.Sprintf("%s: the first sessionmesh error: %s", r.name, r.mesh.firstErr))
		}
	}
	for _, n := range notes {
		fmt.Fprintf(out, "\n%s\n", n)
	}
	if !o.login {
		return nil
	}
	return loginBench(ctx, o, dir, out)
}

// us rounds d for a table.
func us(d time.Duration) time.Duration {
	if d < 100*time.Microsecond {
		return d.Round(100 * time.Nanosecond)
	}
	return d.Round(time.Microsecond)
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }

// startRedis starts redis-server in memory on a free port and returns a
// client with a pool for the throughput runs.
func startRedis(ctx context.Context, g *procs.Group, o options) (*redis.Client, error) {
	bin, err := exec.LookPath(o.redisBin)
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w (docs/throttle-bench.sh installs it)", err)
	}
	ports, err := procs.FreePorts("127.0.0.1", 1, procs.TCP)
	if err != nil {
		return nil, err
	}
	if _, err := g.Start(procs.Spec{Name: "redis", Path: bin, Args: []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(ports[0]), "--save", "", "--appendonly", "no", "--daemonize", "no",
	}}); err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), PoolSize: 2 * o.concurrency})
	for deadline := time.Now().Add(10 * time.Second); ; {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			return rdb, nil
		}
		if time.Now().After(deadline) {
			_ = rdb.Close()
			return nil, fmt.Errorf("redis-server does not answer: %w", err)
		}
		time.Sleep(20 * time.Millisecond) // polling a process that is starting
	}
}

// startNodes starts n sessionmesh nodes on loopback in this process and
// waits until each has all the others as peers and is ready.
func startNodes(n int) ([]*sessionmesh.Node, error) {
	var nodes []*sessionmesh.Node
	var seed string
	for i := range n {
		cfg := sessionmesh.DefaultLocalNodeConfig()
		cfg.Cluster.NodeName = "n" + strconv.Itoa(i+1)
		if seed != "" {
			cfg.Cluster.Seeds = []string{seed}
		}
		cfg.Store.Logger = slog.New(slog.DiscardHandler)
		node, err := sessionmesh.StartNode(cfg)
		if err != nil {
			for _, n := range nodes {
				_ = n.Close()
			}
			return nil, err
		}
		nodes = append(nodes, node)
		seed = node.Cluster.LocalMember().Addr
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		ok := true
		for _, node := range nodes {
			st := node.Store.Stats()
			ok = ok && st.Ready && st.Peers == n-1 && st.Authoritative
		}
		if ok {
			return nodes, nil
		}
		if time.Now().After(deadline) {
			for _, n := range nodes {
				_ = n.Close()
			}
			return nil, errors.New("the nodes did not see each other within 30s")
		}
		time.Sleep(20 * time.Millisecond) // polling the cluster as it forms
	}
}

// loginBench loads POST /login of three login processes: correct logins
// with the default limits, the same without limits, and wrong passwords
// for one user beyond its limit (answered 429).
func loginBench(ctx context.Context, o options, dir string, out *os.File) error {
	bin := filepath.Join(dir, "login")
	if err := procs.Build(ctx, procs.LoginPackage, bin); err != nil {
		return err
	}
	type result struct {
		name string
		s    stats
		want int
	}
	var results []result
	for _, sc := range []struct {
		name     string
		args     []string
		user     func(w, i int) string
		password string
		want     int
	}{
		{"correct logins, limits on (5/user, 20/address, 15 min)", []string{"-trust-proxy"},
			func(w, i int) string { return "u" + strconv.Itoa(w) + "-" + strconv.Itoa(i) }, "demo", http.StatusOK},
		{"correct logins, limits off", []string{"-throttle-user", "0", "-throttle-addr", "0"},
			func(w, i int) string { return "u" + strconv.Itoa(w) + "-" + strconv.Itoa(i) }, "demo", http.StatusOK},
		{"brute force of one user (429 beyond the limit)", []string{"-trust-proxy"},
			func(int, int) string { return "victim" }, "wrong", http.StatusTooManyRequests},
	} {
		urls, stop, err := startLogins(ctx, dir, bin, sc.args)
		if err != nil {
			return err
		}
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency}, Timeout: 10 * time.Second}
		var wrongCode atomic.Int64
		post := func(base string) allowFunc {
			return func(ctx context.Context, key string) (bool, error) {
				user, addr, _ := strings.Cut(key, "|")
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/login",
					strings.NewReader(url.Values{"user": {user}, "password": {sc.password}}.Encode()))
				if err != nil {
					return false, err
				}
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Forwarded-For", addr)
				resp, err := c.Do(req)
				if err != nil {
					return false, err
				}
				_ = resp.Body.Close()
				// The brute force's first attempts reach the password check.
				bruteForceStart := sc.want == http.StatusTooManyRequests && resp.StatusCode == http.StatusUnauthorized
				if resp.StatusCode != sc.want && !bruteForceStart {
					wrongCode.Add(1)
				}
				return true, nil
			}
		}
		var posts []allowFunc
		for _, u := range urls {
			posts = append(posts, post(u))
		}
		s, err := throughput(ctx, o.concurrency, o.duration, posts, func(w, i int) string {
			return sc.user(w, i) + "|10." + strconv.Itoa(rand.IntN(250)) + "." + strconv.Itoa(rand.IntN(250)) + "." + strconv.Itoa(rand.IntN(250))
		})
		stop()
		c.CloseIdleConnections()
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		if n := wrongCode.Load(); n > 0 {
			return fmt.Errorf("%s: %d answers other than %d", sc.name, n, sc.want)
		}
		results = append(results, result{sc.name, s, sc.want})
	}
	fmt.Fprintf(out, "\n`POST /login` of three examples/login processes (all-to-all), %d requests in flight round robin for %v, each from its own X-Forwarded-For address:\n\n", o.concurrency, o.duration)
	fmt.Fprintln(out, "| scenario | requests/s | p50 | p99 |")
	fmt.Fprintln(out, "|---|---|---|---|")
	for _, r := range results {
		fmt.Fprintf(out, "| %s | %.0f | %v | %v |\n", r.name, r.s.perSec, us(r.s.p50), us(r.s.p99))
	}
	return nil
}

// startLogins starts three login processes with args and waits until they
// are healthy. stop ends them.
func startLogins(ctx context.Context, dir, bin string, args []string) (urls []string, stop func(), err error) {
	addrs, err := procs.FreeAddrs("127.0.0.1", 6, procs.TCPAndUDP)
	if err != nil {
		return nil, nil, err
	}
	g := procs.NewGroup(ctx, dir)
	var ps []*procs.Process
	for i := range 3 {
		name := "n" + strconv.Itoa(i+1)
		p, err := g.Start(procs.Spec{Name: name, Path: bin, HealthURL: "http://" + addrs[i] + "/healthz",
			Args: append([]string{"-name", name, "-http", addrs[i], "-gossip", addrs[3+i], "-seeds", strings.Join(addrs[3:], ","),
				"-log-level", "error"}, args...)})
		if err != nil {
			_ = g.Close()
			return nil, nil, err
		}
		ps = append(ps, p)
		urls = append(urls, "http://"+addrs[i])
	}
	hctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for _, p := range ps {
		if err := p.WaitHealthy(hctx); err != nil {
			_ = g.Close()
			return nil, nil, fmt.Errorf("%s: %w\n%s", p.Name(), err, p.LogTail(20))
		}
	}
	return urls, func() { _ = g.Close() }, nil
}
