package chaos

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/loadgen"
	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
	"github.com/sessionmesh/sessionmesh/examples/internal/rrproxy"
)

// Timeouts of the harness's own steps.
const (
	// gracefulStopTimeout bounds SIGTERM to exit: the login server
	// allows 2s for requests in flight and 10s for its hand-over.
	gracefulStopTimeout = 20 * time.Second
	// drainTimeout bounds the wait for a node's requests in flight after
	// it left the load balancer's rotation.
	drainTimeout = 30 * time.Second
	// degradedPollInterval is how often the healthy nodes are polled
	// while a fault lasts, to time their re-replication.
	degradedPollInterval = 100 * time.Millisecond
	// secretEnv passes the cluster secret to the login servers.
	secretEnv = "SESSIONMESH_SECRET"
)

// Ports of a node inside its own network namespace.
const (
	nsHTTPPort, nsGossipPort, nsReplPort, nsPprofPort = 8080, 7946, 7947, 6060
)

// harness is one run. The goroutine running Run owns the schedule and the
// nodes' state; workers touch only their users and the locked counters.
type harness struct {
	cfg   Config
	seed  uint64
	start time.Time
	outMu sync.Mutex // guards writes to cfg.Out

	logDir    string
	lab       *lab   // nil on loopback
	netReason string // why the network faults are skipped, if they are
	group     *procs.Group
	nodes     []*node
	byHost    map[string]string // node name by HTTP host:port
	probe     *probe
	tracker   *tracker
	proxy     *rrproxy.Proxy
	proxySrv  *rrproxy.Server
	work      *workload

	fault atomic.Int64 // the index of the fault in progress, 0 between faults

	mu        sync.Mutex // guards the fields below
	stats     runStats
	anomalies []*Anomaly
	perFault  map[int]*faultStats // of the fault in progress
	failover  *loadgen.Histogram  // latencies of every finished fault
}

// Run starts the cluster, runs the workload and the fault schedule, checks
// everything and returns the report. It fails only when the run cannot be
// made (a build error, no node starting, ctx done); anomalies are in the
// report (Report.OK). Every process it started has ended and every network
// namespace it made is gone when it returns, also when ctx is cancelled
// (Ctrl-C).
func Run(ctx context.Context, cfg Config) (_ *Report, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	h := &harness{cfg: cfg, seed: cfg.Seed, start: time.Now(), byHost: map[string]string{},
		perFault: map[int]*faultStats{}, failover: loadgen.NewHistogram()}
	if h.seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
		h.seed = binary.LittleEndian.Uint64(b[:]) >> 1
	}
	rep := &Report{Seed: h.seed, Config: cfg, Started: h.start}
	cfg.Seed = h.seed
	rep.Plan, _ = Schedule(cfg) // cfg is valid
	h.printf("chaos: %d nodes (backups %d%s), %d users on %d workers (at most %d requests/s), faults for %s, seed %d",
		cfg.Nodes, cfg.Backups, map[bool]string{true: ", async", false: ""}[cfg.Async], cfg.Users, cfg.Concurrency, cfg.Rate, cfg.Duration, h.seed)
	h.printf("fault schedule (seed %d; protected %s; the run executes a prefix of it until the duration is over):", h.seed, strings.Join(cfg.Protect, ","))
	for _, f := range rep.Plan {
		h.println("%s", f)
	}

	removeLogs := false
	if h.logDir = cfg.LogDir; h.logDir == "" {
		if h.logDir, err = os.MkdirTemp("", "sessionmesh-chaos-"); err != nil {
			return nil, err
		}
		removeLogs = true
	} else if err := os.MkdirAll(h.logDir, 0o755); err != nil {
		return nil, err
	}
	rep.LogDir = h.logDir
	defer func() {
		if removeLogs && err == nil && rep.OK() {
			os.RemoveAll(h.logDir)
			rep.LogDir = ""
		} else {
			h.printf("node logs kept in %s", h.logDir)
		}
	}()

	bin, cleanBin, err := h.build(ctx)
	if err != nil {
		return nil, err
	}
	defer cleanBin()
	rep.Build = buildInfo(bin, h.cfg.Bin == "")
	h.printf("login binary: %s", rep.Build)

	if err := h.setupNetwork(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if h.lab != nil {
			if cerr := h.lab.close(); cerr != nil {
				h.printf("removing the network namespaces: %v", cerr)
			}
		}
	}()
	rep.Network, rep.NetworkSkipped = h.networkDescription(), h.netReason

	// Everything started ends with the group: on return, on failure, and
	// at once on Ctrl-C. It is closed before the lab is removed (defers
	// run in reverse).
	h.group = procs.NewGroup(ctx, h.logDir)
	defer h.group.Close()
	h.probe = newProbe()
	defer h.probe.close()
	if err := h.startNodes(ctx, bin); err != nil {
		return nil, err
	}
	h.tracker = newTracker()
	defer h.tracker.close()
	if err := h.startProxy(); err != nil {
		return nil, err
	}
	defer h.proxySrv.Close()

	h.work = newWorkload(h, h.proxySrv.URL, h.tracker)
	defer h.work.close()
	h.work.start(ctx)
	defer h.work.end()

	if err := h.runSchedule(ctx, rep); err != nil {
		return nil, err
	}
	h.work.end()
	if err := h.finalChecks(ctx, rep); err != nil {
		return nil, err
	}
	h.fillReport(rep)
	return rep, nil
}

// printf prints a progress line stamped with the time since the start.
func (h *harness) printf(format string, args ...any) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	fmt.Fprintf(h.cfg.Out, "[%7.2fs] %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
}

// println prints an indented line without a time stamp.
func (h *harness) println(format string, args ...any) {
	h.outMu.Lock()
	defer h.outMu.Unlock()
	fmt.Fprintf(h.cfg.Out, "           "+format+"\n", args...)
}

// build builds the login example into a temporary directory, or takes
// Config.Bin; clean removes what it built.
func (h *harness) build(ctx context.Context) (string, func(), error) {
	if h.cfg.Bin != "" {
		return h.cfg.Bin, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "sessionmesh-chaos-bin-")
	if err != nil {
		return "", nil, err
	}
	clean := func() { os.RemoveAll(dir) }
	bin := filepath.Join(dir, "login")
	var flags []string
	if h.cfg.Race {
		flags = append(flags, "-race")
	}
	began := time.Now()
	if err := procs.Build(ctx, procs.LoginPackage, bin, flags...); err != nil {
		clean()
		return "", nil, err
	}
	h.printf("built %s %s in %s", procs.LoginPackage, strings.Join(flags, " "), time.Since(began).Round(time.Millisecond))
	return bin, clean, nil
}

// setupNetwork makes the network namespaces, or explains (and, with
// NetworkNamespaces, fails) why the nodes run on loopback.
func (h *harness) setupNetwork(ctx context.Context) error {
	switch h.cfg.Network {
	case NetworkLoopback:
		h.netReason = "the nodes run on loopback (Network: loopback)"
	default:
		l, err := newLab(ctx, h.cfg.names())
		if err != nil {
			if h.cfg.Network == NetworkNamespaces {
				return fmt.Errorf("chaos: network namespaces: %w", err)
			}
			h.netReason = "no network namespaces: " + err.Error()
			break
		}
		h.lab = l
	}
	if h.lab != nil {
		h.printf("network: %s; network faults drop node-to-node frames on the bridge (nftables)", h.lab.describe())
	} else {
		h.printf("network: every node on 127.0.0.1; NETWORK FAULTS (partition, loss) ARE SKIPPED: %s", h.netReason)
	}
	return nil
}

// networkDescription says where the nodes run, for the report.
func (h *harness) networkDescription() string {
	if h.lab != nil {
		return "network namespaces: " + h.lab.describe()
	}
	return "loopback (127.0.0.1)"
}

// startNodes starts every node and waits until the cluster has settled.
func (h *harness) startNodes(ctx context.Context, bin string) error {
	c := h.cfg
	names := c.names()
	var hosts []string
	var ports [][4]int // http, gossip, repl, pprof
	if h.lab != nil {
		for _, name := range names {
			hosts = append(hosts, h.lab.nodeIP[name])
			ports = append(ports, [4]int{nsHTTPPort, nsGossipPort, nsReplPort, nsPprofPort})
		}
	} else {
		free, err := procs.FreePorts("127.0.0.1", 4*c.Nodes, procs.TCPAndUDP)
		if err != nil {
			return err
		}
		for i := range names {
			hosts = append(hosts, "127.0.0.1")
			ports = append(ports, [4]int(free[4*i:4*i+4]))
		}
	}
	var seeds []string
	for i := range names {
		seeds = append(seeds, net.JoinHostPort(hosts[i], strconv.Itoa(ports[i][1])))
	}
	var secret [32]byte
	_, _ = rand.Read(secret[:])
	for i, name := range names {
		hp := func(p int) string { return net.JoinHostPort(hosts[i], strconv.Itoa(p)) }
		n := &node{name: name, host: hosts[i], hostPort: hp(ports[i][0]), httpURL: "http://" + hp(ports[i][0]), pprofURL: "http://" + hp(ports[i][3])}
		args := []string{
			"-name", name, "-http", hp(ports[i][0]), "-gossip", hp(ports[i][1]), "-repl", hp(ports[i][2]),
			"-seeds", strings.Join(seeds, ","), "-pprof", hp(ports[i][3]),
			"-backups", strconv.Itoa(c.Backups), "-lifetime", c.SessionLifetime.String(),
			"-throttle-addr", "0", // every simulated user logs in from this one machine
		}
		if c.Async {
			args = append(args, "-async")
		}
		args = append(args, c.NodeArgs...)
		spec := procs.Spec{Name: name, Path: bin, Args: args, HealthURL: n.httpURL + "/healthz",
			Env: []string{secretEnv + "=" + hex.EncodeToString(secret[:])}}
		if c.Race && os.Getenv("GORACE") == "" {
			spec.Env = append(spec.Env, "GORACE=atexit_sleep_ms=0")
		}
		if h.lab != nil {
			spec.Path, spec.Args = h.lab.command(name, bin, args)
		}
		p, err := h.group.Start(spec)
		if err != nil {
			return err
		}
		n.proc = p
		h.nodes = append(h.nodes, n)
		h.byHost[n.hostPort] = name
	}
	h.printf("started %d nodes: %s (flags: %s)", len(names), strings.Join(names, ", "),
		strings.Join(append([]string{"-backups", strconv.Itoa(c.Backups), "-lifetime", c.SessionLifetime.String()}, c.NodeArgs...), " "))
	errs := make([]error, len(h.nodes))
	var wg sync.WaitGroup
	for i, n := range h.nodes {
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, c.RecoveryTimeout)
			defer cancel()
			errs[i] = n.proc.WaitHealthy(hctx)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if ok, why := h.probe.waitSettled(ctx, h.nodes, time.Now().Add(c.RecoveryTimeout)); !ok {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("chaos: the cluster did not settle within %s of the start: %s", c.RecoveryTimeout, why)
	}
	h.printf("every node healthy, sees every other and is fully replicated (%s after the start)", time.Since(h.start).Round(time.Millisecond))
	return nil
}

// startProxy starts the load balancer, with the tracker as its transport.
func (h *harness) startProxy() error {
	var urls []string
	for _, n := range h.nodes {
		urls = append(urls, n.httpURL)
	}
	var err error
	if h.proxy, err = rrproxy.New(rrproxy.Config{Backends: urls, Transport: h.tracker}); err != nil {
		return err
	}
	if h.proxySrv, err = rrproxy.ListenAndServe("127.0.0.1:0", h.proxy); err != nil {
		return err
	}
	h.printf("round-robin proxy (not sticky, retries the next node on connection errors) on %s", h.proxySrv.URL)
	return nil
}

// node returns the node with the given name.
func (h *harness) node(name string) *node {
	for _, n := range h.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// nodeAt names the node with the HTTP address host:port.
func (h *harness) nodeAt(hostPort string) string {
	if name, ok := h.byHost[hostPort]; ok {
		return name
	}
	return hostPort
}

// currentFault returns the index of the fault in progress, 0 between
// faults. Safe for concurrent use.
func (h *harness) currentFault() int { return int(h.fault.Load()) }

// others returns every node but n.
func (h *harness) others(n *node) []*node {
	return slices.DeleteFunc(slices.Clone(h.nodes), func(o *node) bool { return o == n })
}

// setBackends puts the nodes in the load balancer's rotation.
func (h *harness) setBackends(nodes []*node) {
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.httpURL)
	}
	_ = h.proxy.SetBackends(urls) // the URLs were accepted by New
}

// runSchedule warms up, then runs the faults of the plan, one at a time
// with recovery between, until the duration or the fault count is
// reached.
func (h *harness) runSchedule(ctx context.Context, rep *Report) error {
	c := h.cfg
	h.printf("warm-up: every user logs in once")
	pollUntil(ctx, time.Now().Add(c.RecoveryTimeout), healthPollInterval, func() bool { return h.work.logins.Load() >= int64(c.Users) })
	if err := ctx.Err(); err != nil {
		return err
	}
	if got := h.work.logins.Load(); got < int64(c.Users) {
		return fmt.Errorf("chaos: only %d of %d users logged in within %s", got, c.Users, c.RecoveryTimeout)
	}
	if !h.verifyEpoch(ctx, time.Now().Add(c.RecoveryTimeout)) {
		return fmt.Errorf("chaos: the users were not verified within %s after the warm-up", c.RecoveryTimeout)
	}
	h.sample(ctx, rep)
	h.printf("warm-up done: every user logged in and was verified on every node")

	began := time.Now()
	rep.FaultsStarted = began
	for _, f := range rep.Plan {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(began) >= c.Duration || (c.Faults > 0 && len(rep.Faults) >= c.Faults) {
			break
		}
		h.checkProcesses(ctx)
		r := h.runFault(ctx, f)
		rep.Faults = append(rep.Faults, r)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if r.Failed != "" {
			h.printf("stopping the schedule: the cluster did not recover from fault #%d", f.Index)
			break
		}
		if r.Skipped == "" {
			h.sample(ctx, rep)
		}
		h.checkProcesses(ctx)
		// The pause between faults is part of the workload's shape.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(f.Pause):
		}
	}
	rep.FaultsTook = time.Since(began)
	return nil
}

// runFault injects one fault, repairs it after its hold, waits for the
// cluster to settle and every user to be verified on every node.
func (h *harness) runFault(ctx context.Context, f Fault) *FaultResult {
	r := &FaultResult{Fault: f}
	n := h.node(f.Node)
	if f.Kind.Network() && h.lab == nil {
		r.Skipped = h.netReason
		h.printf("%s: SKIPPED (%s)", f, h.netReason)
		return r
	}
	h.printf("%s", f)
	h.mu.Lock()
	fs := &faultStats{hist: &loadgen.Histogram{}, errKinds: map[string]int{}}
	h.perFault[f.Index] = fs
	h.mu.Unlock()
	h.fault.Store(int64(f.Index)) // after perFault: record finds the stats of every fault it sees
	defer h.fault.Store(0)

	others := h.others(n)
	hold := func() { r.Degraded = h.hold(ctx, f.Hold, others, r.Injected) }
	var peers []string
	for _, o := range others {
		peers = append(peers, o.host)
	}
	fail := func(format string, args ...any) {
		r.Failed = fmt.Sprintf(format, args...)
		h.addAnomaly(&Anomaly{Kind: NotRecovered, Node: n.name, At: time.Now(), Fault: f.Index, Detail: r.Failed})
	}

	switch f.Kind {
	case Kill:
		r.Injected = time.Now()
		_ = n.proc.Kill()
		n.down = true
		hold()
		if !h.restart(ctx, n, r, fail) {
			return r
		}
	case Freeze:
		r.Injected = time.Now()
		if err := n.signal(syscall.SIGSTOP); err != nil {
			fail("%v", err)
			return r
		}
		n.frozen = true
		hold()
		if err := n.signal(syscall.SIGCONT); err != nil {
			fail("%v", err)
		}
		n.frozen = false
		r.Repaired = time.Since(r.Injected)
	case Term:
		r.Injected = time.Now()
		sctx, cancel := context.WithTimeout(ctx, gracefulStopTimeout)
		err := n.proc.Stop(sctx)
		cancel()
		n.down = true
		r.StopTook = time.Since(r.Injected)
		switch {
		case ctx.Err() != nil:
			return r
		case err != nil:
			h.addAnomaly(&Anomaly{Kind: NodeExited, Node: n.name, At: time.Now(), Fault: f.Index,
				Detail: fmt.Sprintf("did not exit within %s of SIGTERM and was killed; its log ends with:\n%s", gracefulStopTimeout, n.proc.LogTail(20))})
		case n.proc.ExitError() != nil:
			h.addAnomaly(&Anomaly{Kind: NodeExited, Node: n.name, At: time.Now(), Fault: f.Index,
				Detail: fmt.Sprintf("exited with %v after SIGTERM; its log ends with:\n%s", n.proc.ExitError(), n.proc.LogTail(20))})
		}
		hold()
		if !h.restart(ctx, n, r, fail) {
			return r
		}
	case Partition, Loss:
		inject := func() error { return h.lab.lose(ctx, n.name, peers, f.Loss) }
		if f.Kind == Partition {
			// The load balancer drains the node first, as one whose
			// health check follows the cluster's membership would on
			// seeing it cut off; requests already on their way there
			// finish.
			h.setBackends(others)
			pollUntil(ctx, time.Now().Add(drainTimeout), 10*time.Millisecond, func() bool { return h.tracker.inFlight(n.hostPort) == 0 })
			inject = func() error { return h.lab.isolate(ctx, n.name, peers) }
		}
		r.Injected = time.Now()
		if err := inject(); err != nil {
			h.setBackends(h.nodes)
			fail("%v", err)
			return r
		}
		hold()
		if err := h.lab.heal(context.WithoutCancel(ctx)); err != nil {
			fail("%v", err)
			return r
		}
		r.Repaired = time.Since(r.Injected)
	}
	if ctx.Err() != nil {
		return r
	}

	ok, why := h.probe.waitSettled(ctx, h.nodes, time.Now().Add(h.cfg.RecoveryTimeout))
	r.Settled = time.Since(r.Injected)
	if f.Kind == Partition {
		h.setBackends(h.nodes) // back in the rotation once every node sees it
	}
	if !ok {
		if ctx.Err() == nil {
			fail("%s: the cluster did not settle within %s of the repair: %s", f, h.cfg.RecoveryTimeout, why)
		}
		return r
	}
	if !h.verifyEpoch(ctx, time.Now().Add(h.cfg.RecoveryTimeout)) {
		if ctx.Err() == nil {
			fail("%s: not every user was verified on every node within %s", f, h.cfg.RecoveryTimeout)
		}
		return r
	}
	r.Verified = time.Since(r.Injected)
	h.fault.Store(0)
	h.finishFault(r, fs)
	h.println("-> %s", r.summary())
	return r
}

// restart starts n again after a kill or a graceful stop and waits until
// it is healthy.
func (h *harness) restart(ctx context.Context, n *node, r *FaultResult, fail func(string, ...any)) bool {
	r.Repaired = time.Since(r.Injected)
	if err := n.proc.Restart(); err != nil {
		fail("restart %s: %v", n.name, err)
		return false
	}
	n.down = false
	hctx, cancel := context.WithTimeout(ctx, h.cfg.RecoveryTimeout)
	err := n.proc.WaitHealthy(hctx)
	cancel()
	r.Healthy = time.Since(r.Injected)
	if err != nil {
		if ctx.Err() == nil {
			fail("%s not healthy within %s of its restart: %v", n.name, h.cfg.RecoveryTimeout, err)
		}
		return false
	}
	return true
}

// hold lets a fault last d, polling the healthy nodes meanwhile, and
// returns when (since from) they had settled without the faulted node: 0
// if they had not by the end of d.
func (h *harness) hold(ctx context.Context, d time.Duration, healthy []*node, from time.Time) time.Duration {
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(degradedPollInterval)
	defer tick.Stop()
	var took time.Duration
	for {
		select {
		case <-ctx.Done():
			return took
		case <-end.C:
			return took
		case <-tick.C:
		}
		if took == 0 {
			pctx, cancel := context.WithTimeout(ctx, degradedPollInterval*5)
			if ok, _ := h.probe.allSettled(pctx, healthy); ok {
				took = time.Since(from)
			}
			cancel()
		}
	}
}

// verifyEpoch has every user check itself on every node at its next turn
// and waits for all of them until deadline.
func (h *harness) verifyEpoch(ctx context.Context, deadline time.Time) bool {
	done := h.work.newEpoch()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-ctx.Done():
	case <-t.C:
	}
	return false
}

// checkProcesses reports nodes that exited while they should run, and
// starts them again.
func (h *harness) checkProcesses(ctx context.Context) {
	for _, n := range h.nodes {
		if n.down || n.proc.Running() || ctx.Err() != nil {
			continue
		}
		h.addAnomaly(&Anomaly{Kind: NodeExited, Node: n.name, At: time.Now(), Fault: h.currentFault(),
			Detail: fmt.Sprintf("exited unexpectedly (%v); its log ends with:\n%s", n.proc.ExitError(), n.proc.LogTail(30))})
		if err := n.proc.Restart(); err == nil {
			hctx, cancel := context.WithTimeout(ctx, h.cfg.RecoveryTimeout)
			_ = n.proc.WaitHealthy(hctx)
			cancel()
		}
	}
}

// sample reads every node's goroutines and heap for the soak check.
func (h *harness) sample(ctx context.Context, rep *Report) {
	at := time.Since(h.start)
	for _, n := range h.nodes {
		if n.down || n.frozen {
			continue
		}
		res, err := h.probe.resources(ctx, n)
		if err != nil {
			if ctx.Err() == nil {
				h.printf("soak sample of %s: %v", n.name, err)
			}
			continue
		}
		rep.addSample(n.name, n.proc.Starts(), SoakSample{At: at, Goroutines: res.goroutines, HeapBytes: res.heap})
	}
}

// finalChecks stops nothing but the workload (already stopped), waits
// for the cluster to settle, and checks every user's session and every
// logged-out cookie on every node.
func (h *harness) finalChecks(ctx context.Context, rep *Report) error {
	h.checkProcesses(ctx)
	h.printf("final check: workload stopped; waiting for every node to be ready and fully replicated")
	began := time.Now()
	ok, why := h.probe.waitSettled(ctx, h.nodes, time.Now().Add(h.cfg.RecoveryTimeout))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !ok {
		h.addAnomaly(&Anomaly{Kind: NotRecovered, At: time.Now(), Detail: "at the end, the cluster did not settle within " + h.cfg.RecoveryTimeout.String() + ": " + why})
	}
	rep.FinalSettled = time.Since(began)
	// The checks only read: more of them run at once than the workload's
	// workers, so the end check stays short next to the session lifetime.
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 * h.cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(h.work.users) {
					return
				}
				h.work.verify(ctx, h.work.users[i], h.nodes, true)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	h.sample(ctx, rep)
	h.checkLogs()
	rep.judgeSoak(h.cfg.Soak, func(a *Anomaly) { h.addAnomaly(a) })
	h.printf("final check done in %s: every user's session and logged-out cookies checked directly on all %d nodes",
		time.Since(began).Round(time.Millisecond), len(h.nodes))
	return nil
}

// checkLogs reports panics and data races in the node logs.
func (h *harness) checkLogs() {
	for _, n := range h.nodes {
		b, err := os.ReadFile(n.proc.LogPath())
		if err != nil {
			continue
		}
		for _, marker := range []string{"panic:", "WARNING: DATA RACE", "fatal error:"} {
			if i := strings.Index(string(b), marker); i >= 0 {
				end := min(len(b), i+2000)
				h.addAnomaly(&Anomaly{Kind: NodeExited, Node: n.name, At: time.Now(),
					Detail: fmt.Sprintf("its log (%s) has %q:\n%s", n.proc.LogPath(), marker, b[i:end])})
			}
		}
	}
}

// addAnomaly records an anomaly and prints it.
func (h *harness) addAnomaly(a *Anomaly) {
	h.mu.Lock()
	h.anomalies = append(h.anomalies, a)
	if fs := h.perFault[a.Fault]; fs != nil {
		fs.anomalies++
	}
	h.mu.Unlock()
	who := a.Node
	if a.User != "" {
		who = fmt.Sprintf("%s session %s (node %s)", a.User, a.Session, a.Node)
	}
	h.printf("ANOMALY %s: %s: %s", a.Kind, who, a.Detail)
	for _, line := range a.History {
		h.println("  %s", line)
	}
}

// record counts a user's request (if e is not nil) and records the
// anomalies, with the user's recent requests as evidence. Called by the
// user's worker.
func (h *harness) record(e *Event, u *simUser, anomalies []*Anomaly) {
	if e != nil {
		bad := e.Err != "" || e.Status == 401 && (e.Op == OpVisit || e.Op == OpMe || e.Op == OpVerify) || e.Took > h.cfg.SlowThreshold
		outside := false
		h.mu.Lock()
		h.stats.add(e)
		if fs := h.perFault[e.Fault]; fs != nil && e.Fault > 0 {
			fs.add(e, bad, h.cfg.SlowThreshold)
		} else if e.Err != "" {
			h.stats.errorsOutside++
			outside = true
		}
		h.mu.Unlock()
		if outside { // a failure no fault explains: show it like an anomaly
			h.printf("ERROR between faults: %s: %s", u.name, errorKind(e))
			for _, line := range u.recent(h.start) {
				h.println("  %s", line)
			}
		}
	}
	for _, a := range anomalies {
		a.History = u.recent(h.start)
		h.addAnomaly(a)
	}
}

// finishFault copies the fault's request statistics into its result.
func (h *harness) finishFault(r *FaultResult, fs *faultStats) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r.Requests, r.Errors, r.Slow, r.Anomalies = fs.requests, fs.errors, fs.slow, fs.anomalies
	r.P50, r.P99, r.Max = fs.hist.Quantile(0.50), fs.hist.Quantile(0.99), fs.hist.Max()
	if !fs.lastBad.IsZero() {
		r.ServedAgain = fs.lastBad.Sub(r.Injected)
	}
	r.ErrorKinds = fs.errKinds
	h.failover.Merge(fs.hist)
	delete(h.perFault, r.Index)
}

// fillReport copies the counters into the report.
func (h *harness) fillReport(rep *Report) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := &h.stats
	rep.Requests, rep.Answered, rep.Errors, rep.ErrorsOutsideFailover, rep.Timeouts = s.requests, s.answered, s.errors, s.errorsOutside, s.timeouts
	rep.Logins, rep.Logouts, rep.Visits = s.byOp[OpLogin], s.byOp[OpLogout], s.byOp[OpVisit]
	rep.Latency = s.hist
	rep.FailoverLatency = h.failover
	ps := h.proxy.Stats()
	rep.ProxyRetries, rep.ProxyFailed = ps.Retries, ps.Failed
	rep.Anomalies = slices.Clone(h.anomalies)
	rep.Took = time.Since(h.start)
}

// pollUntil calls cond every interval until it returns true, deadline
// passes or ctx is done, and reports whether cond returned true.
func pollUntil(ctx context.Context, deadline time.Time, interval time.Duration, cond func() bool) bool {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// buildInfo describes the source a Go binary was built from: its version
// control revision, and whether the working tree had changes. When the
// binary carries none (built with -buildvcs=false) and the harness built it
// here, it asks git.
func buildInfo(bin string, builtHere bool) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "unknown build (" + err.Error() + ")"
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	rev, modified := settings["vcs.revision"], settings["vcs.modified"] == "true"
	if rev == "" && builtHere {
		if out, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
			rev = strings.TrimSpace(string(out))
			out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output()
			modified = err != nil || len(bytes.TrimSpace(out)) > 0
		}
	}
	if rev == "" {
		return bi.GoVersion + ", no version control information"
	}
	desc := fmt.Sprintf("%s, revision %.12s", bi.GoVersion, rev)
	if modified {
		desc += " plus uncommitted changes"
	}
	return desc
}
