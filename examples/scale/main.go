// Command scale measures what a cluster costs as it grows: for each size it
// starts that many examples/login servers on this machine, waits until
// they have converged (and counts the CPU the whole cluster used until
// then), logs users in, waits until the nodes have stopped renewing leases
// at the pace of requests, measures the idle background cost
// (CPU, memory and replication messages per node) and the false failure
// verdicts while nothing happens, the messages per node while every node
// answers a few reads a second (a node in use renews its read leases with
// every peer), the false verdicts while busy loops take the cores from the
// servers (with -busy), then SIGKILLs one server, then another,
// and measures for each how soon the survivors stop saying "fully
// replicated" and how long re-replication takes, and checks that nobody
// was logged out and every count is right.
//
//	go run ./examples/scale                           # 3, 8 and 16 nodes, Backups(1)
//	go run ./examples/scale -nodes 3,8,16,32,64 -idle 20s -busy 3 -node-args "-timers lan"
//
// Every figure comes from the servers themselves: process_cpu_seconds_total,
// process_resident_memory_bytes and sessionmesh_transport_frames_sent_total
// from GET /metrics at convergence and before and after the idle window,
// "peer gone" lines in the logs for verdicts, and GET /healthz for
// convergence. All servers share this machine's cores, so the per-node cost
// of a big cluster includes the contention of its neighbours.
// docs/benchmarks.md has a run.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/healthz"
	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
)

func main() { os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr)) }

// config is the command line.
type config struct {
	sizes    []int
	backups  int
	users    int
	idle     time.Duration
	inUse    time.Duration
	quiet    time.Duration
	busy     int
	settle   time.Duration
	nodeArgs []string
	bin      string
	logs     string    // keep the servers' logs here ("": in a temporary directory, removed at the end)
	progress io.Writer // where a slow wait says what it waits for
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	c.progress = stderr
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "scale:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "sessionmesh-scale-")
	if err != nil {
		fmt.Fprintln(stderr, "scale:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	logDir := dir
	if c.logs != "" {
		logDir = c.logs
	}
	bin := c.bin
	if bin == "" {
		bin = filepath.Join(dir, "login")
		if err := procs.Build(ctx, procs.LoginPackage, bin); err != nil {
			fmt.Fprintln(stderr, "scale:", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "| nodes | converged | CPU to converge, whole cluster | idle CPU, whole cluster (%% of a core) | idle CPU per node | RSS per node | messages/s per node | messages/s per node, every node in use | false verdicts while idle | false verdicts under -busy load | visit p50 / p99 | loss shown after SIGKILL 1, 2 | loss logged by the slowest survivor after SIGKILL 1, 2 | re-replicated after SIGKILL 1, 2 | membership dropped it after SIGKILL 1, 2 | logouts, wrong counts |\n")
	fmt.Fprintf(stdout, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	failed := false
	for _, n := range c.sizes {
		r, err := measure(ctx, c, bin, filepath.Join(logDir, strconv.Itoa(n)), n)
		if err != nil {
			fmt.Fprintf(stderr, "scale: %d nodes: %v\n", n, err)
			failed = true
			if ctx.Err() != nil {
				return 130
			}
			continue
		}
		fmt.Fprintln(stdout, r.row())
		failed = failed || r.logouts > 0 || r.wrong > 0
	}
	if failed {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var sizes, nodeArgs string
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&sizes, "nodes", "3,8,16", "comma-separated cluster sizes to measure, one after another")
	fs.IntVar(&c.backups, "backups", 1, "backup copies of each session (-1: every node holds every session)")
	fs.IntVar(&c.users, "users", 100, "users logged in before the idle window")
	fs.DurationVar(&c.idle, "idle", 10*time.Second, "length of the idle window")
	fs.DurationVar(&c.inUse, "in-use", 10*time.Second, "length of the window in which every server answers two reads a second, for the background messages of nodes in use (0: none)")
	fs.DurationVar(&c.quiet, "quiet", 5*time.Second, "wait after the logins before the idle window starts, and before each SIGKILL")
	fs.IntVar(&c.busy, "busy", 0, "after the idle window, spin this many goroutines for as long, counting false verdicts (0: no loaded window)")
	fs.DurationVar(&c.settle, "settle", 2*time.Minute, "longest wait for a cluster to converge")
	fs.StringVar(&nodeArgs, "node-args", "", "extra flags for every login server, space-separated")
	fs.StringVar(&c.bin, "bin", "", "login binary to run instead of building examples/login")
	fs.StringVar(&c.logs, "logs", "", "keep the servers' logs in this directory, one subdirectory per cluster size (default: removed at the end)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for s := range strings.SplitSeq(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			return c, fmt.Errorf("-nodes: %q is not a cluster size of at least 2", s)
		}
		c.sizes = append(c.sizes, n)
	}
	c.nodeArgs = strings.Fields(nodeArgs)
	if c.users < 1 || c.idle <= 0 || c.settle <= 0 || c.quiet < 0 || c.busy < 0 || c.inUse < 0 {
		return c, errors.New("-users, -idle and -settle must be positive, -quiet, -busy and -in-use not negative")
	}
	return c, nil
}

// result is one cluster size's figures.
type result struct {
	nodes          int
	converged      time.Duration
	convergeCPU    float64          // CPU seconds the whole cluster used from the start until converged
	noticed        [2]time.Duration // from each SIGKILL until a survivor showed the loss (watchRecovery)
	lossLogged     [2]time.Duration // from each SIGKILL until the slowest survivor logged that it is not fully replicated
	lossUnlogged   [2]int           // survivors that logged no such line
	rereplicated   [2]time.Duration // from each SIGKILL until every survivor was fully replicated again
	dropped        [2]time.Duration // from each SIGKILL until every survivor's membership had dropped the dead node
	cpuCluster     float64          // cores used by the whole cluster while idle
	rssMiB         float64          // mean per node
	msgsPerNode    float64          // frames sent per second per node while idle
	inUseMsgs      float64          // the same while every node answered reads; -1 without -in-use
	verdicts       int              // "peer gone" log lines while idle
	loadedVerdicts int              // the same while -busy loops took the cores; -1 without -busy
	p50, p99       time.Duration
	logouts, wrong int
}

func (r result) row() string {
	ms := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	cs := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	loaded, inUse := "-", "-"
	if r.loadedVerdicts >= 0 {
		loaded = strconv.Itoa(r.loadedVerdicts)
	}
	if r.inUseMsgs >= 0 {
		inUse = fmt.Sprintf("%.0f", r.inUseMsgs)
	}
	logged := func(k int) string {
		if r.lossUnlogged[k] > 0 {
			return fmt.Sprintf("%s (%d unlogged)", ms(r.lossLogged[k]), r.lossUnlogged[k])
		}
		return ms(r.lossLogged[k]).String()
	}
	return fmt.Sprintf("| %d | %s | %.1fs | %.1f%% | %.2f%% | %.1f MiB | %.0f | %s | %d | %s | %s / %s | %s, %s | %s, %s | %s, %s | %s, %s | %d, %d |",
		r.nodes, cs(r.converged), r.convergeCPU, 100*r.cpuCluster, 100*r.cpuCluster/float64(r.nodes), r.rssMiB,
		r.msgsPerNode, inUse, r.verdicts, loaded, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond),
		ms(r.noticed[0]), ms(r.noticed[1]), logged(0), logged(1), cs(r.rereplicated[0]), cs(r.rereplicated[1]),
		cs(r.dropped[0]), cs(r.dropped[1]), r.logouts, r.wrong)
}

// measure runs one cluster of n servers through the steps of the package
// comment.
func measure(ctx context.Context, c config, bin, logDir string, n int) (result, error) {
	r := result{nodes: n}
	addrs, err := procs.FreeAddrs("127.0.0.1", 2*n, procs.TCPAndUDP)
	if err != nil {
		return r, err
	}
	httpAddrs, gossip := addrs[:n], addrs[n:]
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return r, err
	}
	g := procs.NewGroup(ctx, logDir)
	defer g.Close()
	var urls, names []string
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("n%02d", i+1)
		args := append([]string{"-name", name, "-http", httpAddrs[i], "-gossip", gossip[i],
			"-seeds", strings.Join(gossip[:min(n, 3)], ","), "-backups", strconv.Itoa(c.backups), "-log-level", "info",
			"-throttle-addr", "0"}, c.nodeArgs...) // every user logs in from this machine's address
		if _, err := g.Start(procs.Spec{Name: name, Path: bin, Args: args, HealthURL: "http://" + httpAddrs[i] + "/healthz"}); err != nil {
			return r, err
		}
		urls, names = append(urls, "http://"+httpAddrs[i]), append(names, name)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	if err := waitSettled(ctx, c, client, urls, names); err != nil {
		return r, fmt.Errorf("not converged: %w", err)
	}
	r.converged = time.Since(start)
	atConvergence, err := scrapeAll(ctx, client, urls)
	if err != nil {
		return r, err
	}
	for _, m := range atConvergence {
		r.convergeCPU += m["process_cpu_seconds_total"]
	}

	users, lat, err := loginAndVisit(ctx, urls, c.users)
	if err != nil {
		return r, err
	}
	r.p50, r.p99 = percentile(lat, 50), percentile(lat, 99)
	if err := waitSettled(ctx, c, client, urls, names); err != nil {
		return r, fmt.Errorf("not settled after the logins: %w", err)
	}

	// The idle window, once the nodes have stopped renewing leases at the
	// pace of requests (they keep it for 2 ReadLeases after the last one).
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(c.quiet):
	}
	before, err := scrapeAll(ctx, client, urls)
	if err != nil {
		return r, err
	}
	gone0 := countLogLines(logDir, "peer gone")
	windowStart := time.Now()
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(c.idle):
	}
	after, err := scrapeAll(ctx, client, urls)
	if err != nil {
		return r, err
	}
	elapsed := time.Since(windowStart)
	window := elapsed.Seconds()
	r.verdicts = countLogLines(logDir, "peer gone") - gone0
	var rss float64
	for i := range urls {
		r.cpuCluster += (after[i]["process_cpu_seconds_total"] - before[i]["process_cpu_seconds_total"]) / window
		rss += after[i]["process_resident_memory_bytes"]
	}
	r.msgsPerNode = framesPerNode(before, after, elapsed)
	r.rssMiB = rss / float64(n) / (1 << 20)

	// Then a window in which every node is in use: it renews its leases
	// at the pace of requests, with every peer.
	r.inUseMsgs = -1
	if c.inUse > 0 {
		before, err := scrapeAll(ctx, client, urls)
		if err != nil {
			return r, err
		}
		start := time.Now()
		if err := readEverywhere(ctx, users, urls, c.inUse); err != nil {
			return r, err
		}
		after, err := scrapeAll(ctx, client, urls)
		if err != nil {
			return r, err
		}
		r.inUseMsgs = framesPerNode(before, after, time.Since(start))
	}

	// A window as long as the idle one, with -busy loops in this process taking the
	// cores from the servers: the failure detector's probes then answer
	// late, which is when false verdicts happen.
	r.loadedVerdicts = -1
	if c.busy > 0 {
		gone0 := countLogLines(logDir, "peer gone")
		if err := burn(ctx, c.busy, c.idle); err != nil {
			return r, err
		}
		r.loadedVerdicts = countLogLines(logDir, "peer gone") - gone0
	}

	// Two SIGKILLs, one after the other: for each, the time until a
	// survivor says it is not fully replicated, and the time until every
	// survivor is fully replicated again; then every user on a survivor.
	survivors, live := urls, names
	for k, victim := range names[1:3] {
		i := slices.Index(live, victim)
		var losses []uint64
		for j, h := range healthz.GetAll(ctx, client, survivors) {
			if h.Err != nil {
				return r, fmt.Errorf("before SIGKILL %d: %w", k+1, h.Err)
			}
			if j != i {
				losses = append(losses, h.OwnerLosses)
			}
		}
		// Then the quiet spell: a crash comes at a random time, not
		// right after the poll of every server above, whose requests
		// and lease renewals on 64 servers sharing 2 cores would delay
		// the survivors' noticing by tens of milliseconds.
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(c.quiet):
		}
		killed := time.Now()
		if err := g.Process(victim).Kill(); err != nil {
			return r, err
		}
		survivors, live = slices.Delete(slices.Clone(survivors), i, i+1), slices.Delete(slices.Clone(live), i, i+1)
		noticed, whole, err := watchRecovery(ctx, client, survivors, live, losses, c.settle)
		if err != nil {
			return r, fmt.Errorf("SIGKILL %d: %w", k+1, err)
		}
		if err := waitSettled(ctx, c, client, survivors, live); err != nil {
			return r, fmt.Errorf("membership not settled after SIGKILL %d: %w", k+1, err)
		}
		r.noticed[k], r.rereplicated[k], r.dropped[k] = noticed.Sub(killed), whole.Sub(killed), time.Since(killed)
		r.lossLogged[k], r.lossUnlogged[k] = lossLogged(logDir, live, victim, killed)
	}
	for i, u := range users {
		visits, status, err := u.me(ctx, survivors[i%len(survivors)])
		switch {
		case err != nil:
			return r, err
		case status == http.StatusUnauthorized:
			r.logouts++
		case visits != 1:
			r.wrong++
		}
	}
	return r, nil
}

// user is one logged-in browser.
type user struct{ c *http.Client }

func (u user) me(ctx context.Context, base string) (visits, status int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/me", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := u.c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var body struct{ Visits int }
	_ = decodeJSON(resp.Body, &body)
	return body.Visits, resp.StatusCode, nil
}

// framesPerNode returns the replication frames each server sent per
// second, on average, between two scrapes d apart.
func framesPerNode(before, after []map[string]float64, d time.Duration) float64 {
	var frames float64
	for i := range after {
		frames += after[i]["sessionmesh_transport_frames_sent_total"] - before[i]["sessionmesh_transport_frames_sent_total"]
	}
	return frames / d.Seconds() / float64(len(after))
}

// readEverywhere has the users read their sessions (GET /me) for d, one
// request at a time, two a second on each server in turn, so that every
// server is in use and none is busy.
func readEverywhere(ctx context.Context, users []user, urls []string, d time.Duration) error {
	tick := time.NewTicker(500 * time.Millisecond / time.Duration(len(urls)))
	defer tick.Stop()
	end := time.Now().Add(d)
	for i := 0; time.Now().Before(end); i++ {
		if _, status, err := users[i%len(users)].me(ctx, urls[i%len(urls)]); err != nil || status != http.StatusOK {
			return fmt.Errorf("GET /me while every node is in use: status %d, %v", status, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// loginAndVisit logs n users in, each on another server, and has each
// visit once on the next server; it returns the users and the visits'
// latencies.
func loginAndVisit(ctx context.Context, urls []string, n int) ([]user, []time.Duration, error) {
	var users []user
	var lat []time.Duration
	for i := range n {
		jar, _ := cookiejar.New(nil)
		u := user{&http.Client{Jar: jar, Timeout: 10 * time.Second}}
		if err := post(ctx, u.c, urls[i%len(urls)]+"/login", url.Values{"user": {fmt.Sprint("user", i)}, "password": {"demo"}}); err != nil {
			return nil, nil, fmt.Errorf("login: %w", err)
		}
		t := time.Now()
		if err := post(ctx, u.c, urls[(i+1)%len(urls)]+"/visit", nil); err != nil {
			return nil, nil, fmt.Errorf("visit: %w", err)
		}
		lat = append(lat, time.Since(t))
		users = append(users, u)
	}
	return users, lat, nil
}

func post(ctx context.Context, c *http.Client, u string, form url.Values) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d", u, resp.StatusCode)
	}
	return nil
}

// waitSettled polls every server's /healthz until each is settled for the
// live names (healthz.Settled), or c.settle passes.
func waitSettled(ctx context.Context, c config, client *http.Client, urls, live []string) error {
	live = slices.Sorted(slices.Values(live))
	start := time.Now()
	deadline, report := start.Add(c.settle), start.Add(settleReport)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var why []string
		for i, h := range healthz.GetAll(ctx, client, urls) {
			if ok, reason := h.Settled(live); !ok {
				why = append(why, urls[i]+": "+reason)
			}
		}
		if len(why) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(why[0])
		}
		if time.Now().After(report) && c.progress != nil {
			report = time.Now().Add(settleReport)
			fmt.Fprintf(c.progress, "scale: %d nodes not settled after %v, %d of them; first: %s\n",
				len(live), time.Since(start).Round(time.Second), len(why), why[0])
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// settleReport is how often a wait for a cluster to settle says what it
// still waits for.
const settleReport = 5 * time.Second

// burn keeps n goroutines spinning for d.
func burn(ctx context.Context, n int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for ctx.Err() == nil {
			}
		})
	}
	wg.Wait()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil
	}
	return ctx.Err()
}

// watchRecovery follows the survivors of a SIGKILL through their /healthz;
// losses are their owner_losses from before it. It returns when one first
// showed the loss, saying it was not fully replicated or counting an owner
// gone, and when every survivor was whole again: ready, holding every
// partition it owns, fully replicated, and either it had found an owner
// gone since the kill (then only a maintenance round after that finds it
// fully replicated) or its membership no longer lists the dead node. (A
// survivor that has not noticed the death still reports the state from
// before it.)
//
// Until one shows the loss it asks one survivor at a time, in turn, as a
// rollout script asks the node it is about to stop: asking all of them at
// once is a burst of 63 requests on 64 servers sharing 2 cores, landing
// while they are noticing the death, and the first answer that showed the
// loss came about twice as late (docs/benchmarks.md). Then it asks every survivor at once, round after
// round, so "whole" includes at most one round; a survivor that
// re-replicates faster than that may say fully replicated again before it
// is asked.
func watchRecovery(ctx context.Context, client *http.Client, urls, live []string, losses []uint64, timeout time.Duration) (noticed, whole time.Time, err error) {
	live = slices.Sorted(slices.Values(live))
	deadline := time.Now().Add(timeout)
	saidNot := make([]bool, len(urls))
	for i := 0; noticed.IsZero() && time.Now().Before(deadline); i = (i + 1) % len(urls) {
		if err := ctx.Err(); err != nil {
			return noticed, whole, err
		}
		h := healthz.Get(ctx, client, urls[i])
		if h.Err == nil && (!h.FullyReplicated || h.OwnerLosses > losses[i]) {
			saidNot[i], noticed = true, time.Now()
		}
	}
	for time.Now().Before(deadline) {
		hs := healthz.GetAll(ctx, client, urls)
		now := time.Now()
		done := true
		for i, h := range hs {
			if h.Err != nil {
				done = false
				continue
			}
			saidNot[i] = saidNot[i] || !h.FullyReplicated || h.OwnerLosses > losses[i]
			if saidNot[i] && noticed.IsZero() {
				noticed = now
			}
			done = done && h.Status == http.StatusOK && h.Ready && h.ReadyPartitions == h.OwnedPartitions &&
				h.FullyReplicated && (saidNot[i] || h.Sees(live))
		}
		if done && !noticed.IsZero() {
			return noticed, now, nil
		}
		if err := ctx.Err(); err != nil {
			return noticed, whole, err
		}
		if !noticed.IsZero() {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if noticed.IsZero() {
		return noticed, whole, fmt.Errorf("no survivor showed the loss within %s", timeout)
	}
	return noticed, whole, fmt.Errorf("not re-replicated within %s", timeout)
}

// scrapeAll reads the unlabelled samples of every server's /metrics.
func scrapeAll(ctx context.Context, client *http.Client, urls []string) ([]map[string]float64, error) {
	out := make([]map[string]float64, len(urls))
	for i, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		out[i] = parseMetrics(resp.Body)
		resp.Body.Close()
	}
	return out, nil
}

// parseMetrics reads the samples without labels of a Prometheus text
// exposition.
func parseMetrics(r io.Reader) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.Contains(line, "{") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
			m[name] = v
		}
	}
	return m
}

// lossLine is what a store logs when an owner's loss turns it not fully
// replicated.
const lossLine = `msg="an owner is unreachable`

// lossLogged reads when each survivor logged lossLine about victim after
// killed, and returns the latest delay, and how many logged none (one that
// was not fully replicated already has nothing to say). These are the
// servers' own clocks, to the millisecond, free of the round of asking
// every survivor that watchRecovery's figure includes.
func lossLogged(dir string, survivors []string, victim string, killed time.Time) (latest time.Duration, unlogged int) {
	for _, name := range survivors {
		at, ok := firstLogLine(filepath.Join(dir, name+".log"), killed, lossLine, " peer="+victim+" ")
		if !ok {
			unlogged++
			continue
		}
		latest = max(latest, at.Sub(killed))
	}
	return latest, unlogged
}

// firstLogLine returns the time of the first line of the log file that is
// stamped after since and contains every one of parts.
func firstLogLine(file string, since time.Time, parts ...string) (time.Time, bool) {
	f, err := os.Open(file)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		stamp, rest, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !ok || !strings.HasPrefix(line, "time=") || !containsAll(rest, parts) {
			continue
		}
		// The stamp has milliseconds: a line from the kill's millisecond
		// reads as before it.
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil && !at.Before(since.Truncate(time.Millisecond)) {
			return at, true
		}
	}
	return time.Time{}, false
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// countLogLines counts the lines containing s in the logs of dir.
func countLogLines(dir, s string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil {
			n += strings.Count(string(b), s)
		}
	}
	return n
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[min(len(s)-1, len(s)*p/100)]
}

func decodeJSON(r io.Reader, v any) error { return json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(v) }
