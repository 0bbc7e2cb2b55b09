package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
	"github.com/sessionmesh/sessionmesh/examples/internal/rrproxy"
)

// secretEnv is the environment variable in which the login servers find the
// cluster secret.
const secretEnv = "SESSIONMESH_SECRET"

// errChecksFailed is returned by run when checks failed; the summary has
// listed them already.
var errChecksFailed = errors.New("checks failed")

// maxListedFailures is how many failed checks the summary lists.
const maxListedFailures = 10

// demo is one run of the scenario. Its fields are set up by run; the
// workers of a phase touch only the users they own, the phase's counters
// and the failure log.
type demo struct {
	cfg   config
	out   io.Writer
	start time.Time
	outMu sync.Mutex // guards writes to out

	logDir   string
	secret   string // the cluster secret of this run, hex; empty with -no-secret
	group    *procs.Group
	nodes    []*node
	victim   *node
	proxy    *rrproxy.Proxy
	proxySrv *rrproxy.Server
	proxyURL *url.URL
	tr       *http.Transport // shared by every user's client
	users    []*user
	phases   []*phase

	failMu   sync.Mutex // guards failures and nFailures
	failures []string   // the first maxListedFailures
	nFail    int

	// Results of the kills and restarts.
	victim2        *node         // backups: the second node to SIGKILL
	kills          []*killRecord // in order
	restartHealthy time.Duration // kill: the restarted victim
	rereplicated   *replWait     // backups: after the first SIGKILL
	restarts       []*restartRecord
	load           *load // rolling, upgrade: the background load
	mode           string

	// upgrade: the login executables of this build and of the previous
	// release.
	currentBin, previousBin string

	fleet *fleetRestart // fleet-restart: what survived
}

// node is one login server.
type node struct {
	name   string
	url    string
	gossip string
	proc   *procs.Process
	ready  time.Duration // from start to healthy
}

// user is one simulated browser. Only the worker running the user touches
// its fields during a phase.
type user struct {
	name     string
	jar      *cookiejar.Jar
	client   *http.Client // through the proxy, with the jar
	direct   *http.Client // to a node, cookies copied from the jar by hand
	loggedIn bool
	visits   int  // the last count the servers confirmed
	known    bool // visits is certain (false after a visit whose outcome is unknown)

	// The rolling scenario's background load.
	acked      int    // visits acknowledged since login
	loadErrors int    // visits that failed
	lastErr    string // the last failure, for messages
	loggedOut  int    // visits answered 401 (not logged in)
}

func newDemo(cfg config, out io.Writer) *demo {
	return &demo{cfg: cfg, out: out, start: time.Now()}
}

// printf prints a progress line stamped with the time since the start.
func (d *demo) printf(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.out, "[%6.2fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

// println prints a line without a time stamp.
func (d *demo) println(format string, args ...any) {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	fmt.Fprintf(d.out, "          "+format+"\n", args...)
}

// run runs the whole scenario. ctx ends on Ctrl-C.
func (d *demo) run(ctx context.Context) (err error) {
	c := d.cfg
	switch c.scenario {
	case scenarioBackups:
		d.printf("sessionmesh demo, scenario backups: %d login servers with %q behind a round-robin proxy (not sticky), %d users, %d visits each, concurrency %d; will SIGKILL %s, wait until the cluster is fully replicated again, then SIGKILL %s",
			c.nodes, strings.Join(c.nodeArgs, " "), c.users, c.visits, c.concurrency, c.kill, nextNode(c))
	case scenarioFleetRestart:
		d.printf("sessionmesh demo, scenario fleet-restart: %d login servers with %q and a snapshot directory each (interval %s) behind a round-robin proxy, %d users, %d visits each; will stop every node at once with SIGTERM, then with SIGKILL, restarting them all each time",
			c.nodes, strings.Join(c.nodeArgs, " "), c.snapshotInterval, c.users, c.visits)
	case scenarioRolling:
		d.printf("sessionmesh demo, scenario rolling: %d login servers with %q behind a round-robin proxy (not sticky), %d users, %d visits each, concurrency %d; then a graceful rolling restart of every node while the users keep visiting",
			c.nodes, strings.Join(c.nodeArgs, " "), c.users, c.visits, c.concurrency)
	case scenarioUpgrade:
		d.printf("sessionmesh demo, scenario upgrade: %d login servers of the previous release (%.12s) with %q behind a round-robin proxy (not sticky), %d users, %d visits each, concurrency %d; then each node is rolled to this build and back while the users keep visiting",
			c.nodes, c.previous, strings.Join(c.nodeArgs, " "), c.users, c.visits, c.concurrency)
	default:
		d.printf("sessionmesh demo: %d login servers behind a round-robin proxy (not sticky), %d users, %d visits each, concurrency %d; will SIGKILL %s",
			c.nodes, c.users, c.visits, c.concurrency, c.kill)
	}

	removeLogs := false
	if d.logDir = c.logDir; d.logDir == "" {
		if d.logDir, err = os.MkdirTemp("", "sessionmesh-demo-"); err != nil {
			return err
		}
		removeLogs = true
	} else if err = os.MkdirAll(d.logDir, 0o755); err != nil {
		return err
	}
	d.printf("node logs: %s", d.logDir)
	defer func() {
		if err != nil && ctx.Err() == nil && !errors.Is(err, errChecksFailed) {
			d.printf("FAIL: %v", err)
		}
		switch {
		case err == nil && removeLogs && !c.keep && ctx.Err() == nil:
			os.RemoveAll(d.logDir)
		default:
			d.printf("node logs kept in %s", d.logDir)
		}
	}()

	// Everything the demo starts ends with this group: on return, on
	// failure, and at once on Ctrl-C.
	d.group = procs.NewGroup(ctx, d.logDir)
	defer d.group.Close()

	sctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	bin, cleanBin, err := d.build(sctx)
	if err != nil {
		return err
	}
	defer cleanBin()
	if c.scenario == scenarioUpgrade {
		d.currentBin = bin
		if bin, err = d.buildPrevious(sctx, bin); err != nil {
			return err
		}
		d.previousBin = bin
	}
	if !c.noSecret {
		var b [32]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		d.secret = hex.EncodeToString(b[:])
		d.printf("cluster secret: a random one for this run, given to every node in $%s (not on the command line, which ps shows): gossip encrypted, replication over mutual TLS 1.3", secretEnv)
	} else {
		d.printf("no cluster secret (-no-secret): cluster traffic in clear text")
	}
	if err := d.startNodes(sctx, bin); err != nil {
		return err
	}
	if err := d.startProxy(); err != nil {
		return err
	}
	defer d.proxySrv.Close()
	defer d.proxy.Close()
	d.makeUsers()
	defer d.tr.CloseIdleConnections()

	if err := d.scenario(sctx); err != nil {
		return err
	}
	if d.nFail == 0 && !c.keep {
		d.stopCluster()
	} else {
		ph := d.beginPhase("check node logs")
		d.checkLogs(ph)
		ph.end()
	}
	d.summary()
	if d.nFail > 0 {
		return errChecksFailed
	}
	if c.keep {
		d.keepRunning(ctx)
	}
	return nil
}

// build builds the login example, or takes -bin.
func (d *demo) build(ctx context.Context) (bin string, clean func(), err error) {
	if d.cfg.bin != "" {
		d.printf("using login binary %s", d.cfg.bin)
		return d.cfg.bin, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "sessionmesh-demo-bin-")
	if err != nil {
		return "", nil, err
	}
	clean = func() { os.RemoveAll(dir) }
	bin = filepath.Join(dir, "login")
	var flags []string
	if d.cfg.race {
		flags = append(flags, "-race")
	}
	ph := d.beginPhase("build examples/login")
	d.printf("building %s %s", procs.LoginPackage, strings.Join(flags, " "))
	if err := procs.Build(ctx, procs.LoginPackage, bin, flags...); err != nil {
		clean()
		return "", nil, fmt.Errorf("%w\n(run the demo from inside the repository, or pass -bin)", err)
	}
	ph.end()
	d.printf("built in %s", round(ph.dur))
	return bin, clean, nil
}

// startNodes starts every node on free ports and waits until all are
// healthy.
func (d *demo) startNodes(ctx context.Context, bin string) error {
	c := d.cfg
	ph := d.beginPhase(fmt.Sprintf("start %d nodes", c.nodes))
	// One call, so all 2n ports are distinct; gossip needs UDP too.
	addrs, err := procs.FreeAddrs(c.host, 2*c.nodes, procs.TCPAndUDP)
	if err != nil {
		return err
	}
	httpAddrs, gossipAddrs := addrs[:c.nodes], addrs[c.nodes:]
	seeds := strings.Join(gossipAddrs, ",")
	for i := range c.nodes {
		n := &node{name: nodeName(i), url: "http://" + httpAddrs[i], gossip: gossipAddrs[i]}
		args := []string{"-name", n.name, "-http", httpAddrs[i], "-gossip", gossipAddrs[i], "-seeds", seeds}
		if c.scenario != scenarioUpgrade {
			// Every simulated user logs in from this one machine. (The
			// previous release has no such flag, nor any limit: in the
			// upgrade scenario the users log in before the roll.)
			args = append(args, "-throttle-addr", "0")
		}
		args = append(args, c.nodeArgs...)
		args = append(args, d.snapshotArgs(n.name)...)
		spec := procs.Spec{Name: n.name, Path: bin, Args: args, HealthURL: n.url + "/healthz"}
		if c.race && os.Getenv("GORACE") == "" {
			// A race-enabled binary sleeps 1s at exit unless told not to.
			spec.Env = append(spec.Env, "GORACE=atexit_sleep_ms=0")
		}
		if d.secret != "" {
			spec.Env = append(spec.Env, secretEnv+"="+d.secret)
		}
		n.proc, err = d.group.Start(spec)
		if err != nil {
			return err
		}
		d.nodes = append(d.nodes, n)
		switch {
		case c.scenario == scenarioRolling, c.scenario == scenarioUpgrade, c.scenario == scenarioFleetRestart:
		case n.name == c.kill:
			d.victim = n
		case c.scenario == scenarioBackups && n.name == nextNode(c):
			d.victim2 = n
		}
		d.printf("started %s (pid %d): http %s, gossip %s", n.name, n.proc.Pid(), n.url, n.gossip)
	}
	d.printf("seeds of every node: %s; extra node flags: %q", seeds, c.nodeArgs)
	errs := make([]error, len(d.nodes))
	var wg sync.WaitGroup
	for i, n := range d.nodes {
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, c.readyTimeout)
			defer cancel()
			errs[i] = n.proc.WaitHealthy(hctx)
			n.ready = time.Since(n.proc.StartedAt())
		})
	}
	wg.Wait()
	var first error
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, d.nodes[i].name)
			first = cmp.Or(first, err)
		}
	}
	if first != nil {
		return fmt.Errorf("%s not healthy (-ready-timeout %s); the first: %w", strings.Join(failed, ", "), c.readyTimeout, first)
	}
	ph.end()
	var ready []string
	for _, n := range d.nodes {
		ready = append(ready, fmt.Sprintf("%s %s", n.name, round(n.ready)))
	}
	d.printf("all %d nodes healthy (GET /healthz = 200) in %s: %s", c.nodes, round(ph.dur), strings.Join(ready, ", "))
	return nil
}

func (d *demo) startProxy() error {
	var urls []string
	for _, n := range d.nodes {
		urls = append(urls, n.url)
	}
	var err error
	if d.proxy, err = rrproxy.New(rrproxy.Config{Backends: urls}); err != nil {
		return err
	}
	if d.proxySrv, err = rrproxy.ListenAndServe(d.cfg.proxyAddr, d.proxy); err != nil {
		d.proxy.Close()
		return err
	}
	d.proxyURL, _ = url.Parse(d.proxySrv.URL)
	d.printf("round-robin proxy on %s -> %s (retries the next node on connection errors)",
		d.proxySrv.URL, strings.Join(urls, ", "))
	return nil
}

func (d *demo) makeUsers() {
	d.tr = &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: d.cfg.concurrency + 8,
		IdleConnTimeout:     30 * time.Second,
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	width := len(fmt.Sprint(d.cfg.users))
	for i := range d.cfg.users {
		jar, _ := cookiejar.New(nil) // never fails without options
		d.users = append(d.users, &user{
			name:   fmt.Sprintf("user%0*d", width, i+1),
			jar:    jar,
			client: &http.Client{Transport: d.tr, Jar: jar, Timeout: d.cfg.requestTimeout, CheckRedirect: noRedirect},
			direct: &http.Client{Transport: d.tr, Timeout: d.cfg.requestTimeout, CheckRedirect: noRedirect},
			known:  true,
		})
	}
}

// keepRunning waits for Ctrl-C, showing where to look.
func (d *demo) keepRunning(ctx context.Context) {
	d.printf("-keep: the cluster keeps running. Open in a browser (any user, password \"demo\"):")
	d.println("proxy  %s/   (round robin: every reload may land on another node)", d.proxySrv.URL)
	for _, n := range d.nodes {
		if !n.proc.Running() {
			d.println("%-6s %s/   (killed, log %s)", n.name, n.url, n.proc.LogPath())
			continue
		}
		d.println("%-6s %s/   (pid %d, log %s)", n.name, n.url, n.proc.Pid(), n.proc.LogPath())
	}
	d.println("Kill a node (kill -9 PID) and reload: you stay logged in. Press Ctrl-C to stop everything.")
	if d.secret != "" {
		d.println("To start another node: %s=%s go run ./examples/login -seeds %s ...", secretEnv, d.secret, d.nodes[0].gossip)
	}
	<-ctx.Done()
}

// stopCluster stops the nodes gracefully, one at a time as in a rolling
// shutdown: SIGTERM, and each leaves the cluster and hands its sessions
// over to the ones still running.
func (d *demo) stopCluster() {
	ph := d.beginPhase("graceful stop, one node at a time")
	defer ph.end()
	// Close our idle keep-alive connections first: a server's graceful
	// http.Server.Shutdown waits up to 5s for a connection that never
	// carried a request, and the client's transport leaves such spares.
	d.tr.CloseIdleConnections()
	d.proxy.Close()
	start := time.Now()
	var times, bad []string
	for _, n := range d.nodes {
		if !n.proc.Running() {
			continue // killed by the scenario
		}
		t := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := n.proc.Stop(ctx)
		cancel()
		times = append(times, fmt.Sprintf("%s %s", n.name, round(time.Since(t))))
		switch {
		case err != nil:
			bad = append(bad, fmt.Sprintf("%s did not exit within 10s of SIGTERM and was killed", n.name))
		case n.proc.ExitError() != nil:
			bad = append(bad, fmt.Sprintf("%s exited with %v after SIGTERM", n.name, n.proc.ExitError()))
		}
	}
	if len(bad) > 0 {
		d.printf("warning: graceful stop: %s", strings.Join(bad, "; "))
	}
	d.printf("stopped the cluster one node at a time with SIGTERM (graceful leave) in %s: %s",
		round(time.Since(start)), strings.Join(times, ", "))
	d.checkLogs(ph)
}

// checkLogs fails the run if a node's log reports a data race or a panic.
func (d *demo) checkLogs(ph *phase) {
	for _, n := range d.nodes {
		b, err := os.ReadFile(n.proc.LogPath())
		if err != nil {
			continue
		}
		for _, bad := range []string{"WARNING: DATA RACE", "panic: "} {
			if c := strings.Count(string(b), bad); c > 0 {
				d.fail(ph, "%s: %d x %q in its log %s", n.name, c, bad, n.proc.LogPath())
			}
		}
	}
}

// fail records a failed check.
func (d *demo) fail(ph *phase, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	ph.failures.Add(1)
	d.failMu.Lock()
	d.nFail++
	if len(d.failures) < maxListedFailures {
		d.failures = append(d.failures, ph.name+": "+msg)
	}
	d.failMu.Unlock()
	if d.cfg.verbose {
		d.printf("FAILED %s", msg)
	}
}

// nextNode returns the name of the node after c.kill, cyclically: the
// second node the backups scenario kills.
func nextNode(c config) string {
	for i := range c.nodes {
		if nodeName(i) == c.kill {
			return nodeName((i + 1) % c.nodes)
		}
	}
	return ""
}

// round rounds a duration for printing.
func round(t time.Duration) time.Duration {
	switch {
	case t >= time.Second:
		return t.Round(10 * time.Millisecond)
	case t >= time.Millisecond:
		return t.Round(100 * time.Microsecond)
	default:
		return t.Round(time.Microsecond)
	}
}
