package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/loadgen"
	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
)

// comparison is one run of -compare.
type comparison struct {
	o   options
	out io.Writer
	dir string // logs, binaries and profiles

	meshBin, scsBin, redisBin string
	nginxBin                  string
	wrk                       wrkConfig
	meshFlags                 map[string]bool // flags of the login binary
	secret                    string
}

// targetResult is what one target gave.
type targetResult struct {
	t        *target
	skipped  string                     // why the target did not run, or ""
	err      error                      // why it failed to start
	mixes    map[string]*loadgen.Result // by mix name, merged over the rounds; absent when the mix failed
	mixErrs  map[string]error           // by mix name
	cpu      map[string]*cpuUsage       // by mix name, over the measured windows
	profiles map[string]*profile        // by mix name, for profiled targets
	run      *running                   // while it runs

	// With -front nginx, by mix name:
	users      map[string][]wrkUser // the users as the last wrk run left them
	lost       map[string]uint64    // acknowledged increments missing from the final counts
	unreadable map[string]uint64    // users whose final count could not be read
	checkErr   map[string]error     // an example of why
}

func (c *comparison) printf(format string, args ...any) {
	fmt.Fprintf(c.out, "loadgen: "+format+"\n", args...)
}

// runCompare runs the comparison described in the package documentation.
func runCompare(ctx context.Context, o options, out io.Writer) (err error) {
	targets, err := selectTargets(o.targets)
	if err != nil {
		return err
	}
	if o.list {
		for _, t := range allTargets() {
			fmt.Fprintf(out, "%-10s %s\n", t.key, t.name)
		}
		return nil
	}
	c := &comparison{o: o, out: out, secret: o.secret}
	if c.secret == "" {
		var b [32]byte // the form examples/login's -secret takes: 32 random bytes in hex
		_, _ = rand.Read(b[:])
		c.secret = hex.EncodeToString(b[:])
	}
	if c.dir, err = os.MkdirTemp("", "sessionmesh-bench-"); err != nil {
		return err
	}
	defer func() {
		if err == nil && !o.keep {
			os.RemoveAll(c.dir)
		} else {
			c.printf("logs and profiles kept in %s", c.dir)
		}
	}()
	c.printf("logs and profiles in %s", c.dir)
	rep := &report{when: time.Now(), opts: o, machine: machine(ctx, o.redisServer)}

	if err := c.build(ctx, targets); err != nil {
		return err
	}
	if o.front == frontNginx {
		if err := c.findFront(); err != nil {
			return err
		}
		rep.machine.nginx = toolVersion(ctx, c.nginxBin, "-v")
		rep.machine.wrk = toolVersion(ctx, c.wrk.bin, "-v")
	}
	if o.micro {
		// First, alone: nothing else of ours runs meanwhile.
		c.printf("micro-benchmarks: go test -bench (-benchtime %s)", o.microBenchtime)
		rep.microRaw, rep.micro, rep.microErr = runMicro(ctx, o.microBenchtime, out)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	// Start every target, then interleave them: each mix runs in rounds,
	// and each round gives every target a slice of the duration in turn, so
	// that load from elsewhere on the machine spreads over all of them.
	var live []*targetResult
	for _, t := range targets {
		tr := c.startOne(ctx, t)
		rep.targets = append(rep.targets, tr)
		if tr.run != nil {
			defer tr.run.stop()
			live = append(live, tr)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	slice := o.duration / time.Duration(o.rounds)
	for _, m := range o.mixes {
		for round := range o.rounds {
			for _, tr := range live {
				c.runSlice(ctx, tr, m, round, slice)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		if o.front == frontNginx {
			for _, tr := range live {
				c.checkFinal(ctx, tr, m)
			}
		}
		for _, tr := range live {
			if !slices.Contains(o.profile, tr.t.key) {
				continue
			}
			c.printf("%s: profiling the nodes under %s for %s (not measured)", tr.t.key, m.Name, o.profileDuration)
			p, err := c.profile(ctx, tr.t, tr.run, m, filepath.Join(c.dir, "profiles"))
			if err != nil {
				c.printf("%s: profile under %s failed: %v", tr.t.key, m.Name, err)
				p = &profile{err: err}
			}
			tr.profiles[m.Name] = p
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	if err := rep.writeText(out); err != nil {
		return err
	}
	if o.out != "" {
		if err := rep.writeMarkdownFile(o.out); err != nil {
			return err
		}
		c.printf("report written to %s", o.out)
	}
	return nil
}

// build compiles the programs the targets need and finds redis-server.
func (c *comparison) build(ctx context.Context, targets []*target) error {
	need := map[app]bool{}
	for _, t := range targets {
		need[t.app] = true
	}
	if need[appMesh] {
		c.meshBin = filepath.Join(c.dir, "login")
		c.printf("building %s", procs.LoginPackage)
		if err := procs.Build(ctx, procs.LoginPackage, c.meshBin); err != nil {
			return fmt.Errorf("%w\n(run loadgen from inside the repository)", err)
		}
		flags, err := binaryFlags(ctx, c.meshBin)
		if err != nil {
			return err
		}
		c.meshFlags = flags
	}
	if need[appSCSRedis] || need[appSCSMemory] || need[appSCSNATS] || need[appCookie] {
		c.scsBin = filepath.Join(c.dir, "scslogin")
		c.printf("building %s", scsLoginPackage)
		if err := procs.Build(ctx, scsLoginPackage, c.scsBin); err != nil {
			return err
		}
	}
	if need[appSCSRedis] {
		if p, err := exec.LookPath(c.o.redisServer); err == nil {
			c.redisBin = p
		}
	}
	return nil
}

// skipReason says why t cannot run here, or "".
func (c *comparison) skipReason(t *target) string {
	if t.app == appSCSRedis && c.redisBin == "" {
		return fmt.Sprintf("%s not found: install it (docs/bench.sh does: apt-get install -y redis-server) or pass -redis-server", c.o.redisServer)
	}
	var missing []string
	for _, f := range t.needs {
		if t.app == appMesh && !c.meshFlags[f] {
			missing = append(missing, "-"+f)
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("examples/login has no %s flag yet", strings.Join(missing, ", "))
	}
	return ""
}

// startOne starts t unless it must be skipped. The result's run is set
// when it runs; the caller stops it.
func (c *comparison) startOne(ctx context.Context, t *target) *targetResult {
	res := &targetResult{t: t, mixes: map[string]*loadgen.Result{}, mixErrs: map[string]error{},
		cpu: map[string]*cpuUsage{}, profiles: map[string]*profile{},
		users: map[string][]wrkUser{}, lost: map[string]uint64{}, unreadable: map[string]uint64{}, checkErr: map[string]error{}}
	if res.skipped = c.skipReason(t); res.skipped != "" {
		c.printf("%s: skipped: %s", t.key, res.skipped)
		return res
	}
	c.printf("%s: starting %s", t.key, t.name)
	logDir := filepath.Join(c.dir, t.key)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		res.err = err
		return res
	}
	r, err := c.startTarget(ctx, t, logDir, slices.Contains(c.o.profile, t.key))
	if err != nil {
		res.err = err
		c.printf("%s: failed to start: %v", t.key, err)
		return res
	}
	res.run = r
	return res
}

// runSlice runs one round of mix m against a started target for d and adds
// the result to the target's.
func (c *comparison) runSlice(ctx context.Context, tr *targetResult, m loadgen.Mix, round int, d time.Duration) {
	if tr.mixErrs[m.Name] != nil {
		return // failed in an earlier round
	}
	if c.o.front == frontNginx {
		c.runSliceWrk(ctx, tr, m, round, d)
		return
	}
	pids := tr.run.pids()
	var before cpuSample
	cfg := c.loadConfig(tr.run, m, fmt.Sprintf("%s-%s-%d", tr.t.key, m.Name, round))
	cfg.Duration = d
	cfg.OnMeasure = func() { before = takeCPU(pids, nil) }
	lr, err := loadgen.Run(ctx, cfg)
	if err != nil {
		tr.mixErrs[m.Name] = err
		delete(tr.mixes, m.Name)
		c.printf("%s %s round %d/%d failed: %v", tr.t.key, m.Name, round+1, c.o.rounds, err)
		return
	}
	u := takeCPU(pids, nil).since(before)
	if tr.mixes[m.Name] == nil {
		tr.mixes[m.Name] = &loadgen.Result{Config: lr.Config}
		tr.cpu[m.Name] = &cpuUsage{}
	}
	tr.mixes[m.Name].Merge(lr)
	tr.cpu[m.Name].add(u)
	h := &lr.Total.Latency
	c.printf("%-9s %-11s round %d/%d: %6.0f req/s  p50 %-7s p99 %-7s errors %d mismatches %d | cores: servers %.2f, load generator+proxy %.2f, other %.2f",
		tr.t.key, m.Name, round+1, c.o.rounds, lr.RequestsPerSecond(),
		loadgen.FormatDuration(h.Quantile(0.5)), loadgen.FormatDuration(h.Quantile(0.99)),
		lr.Total.Errors, lr.Total.Mismatches, u.cores(u.servers), u.cores(u.client), u.cores(u.other))
	for _, e := range lr.ErrorSamples {
		c.printf("%s %s: error: %s", tr.t.key, m.Name, e)
	}
}

// loadConfig is the workload of every target: through the proxy in front
// of r, or with -front client, rotating over r's nodes from the load
// generator itself.
func (c *comparison) loadConfig(r *running, m loadgen.Mix, prefix string) loadgen.Config {
	cfg := loadgen.Config{
		BaseURL:     r.URL(),
		Users:       c.o.users,
		Concurrency: c.o.concurrency,
		Duration:    c.o.duration,
		Warmup:      c.o.warmup,
		Mix:         m,
		Timeout:     c.o.timeout,
		UserPrefix:  prefix,
	}
	if c.o.front == frontClient {
		cfg.BaseURL = ""
		for _, n := range r.nodes {
			cfg.MoreURLs = append(cfg.MoreURLs, n.url)
		}
	}
	return cfg
}

// errNoProfile is returned when a target was profiled without pprof
// endpoints.
var errNoProfile = errors.New("no node serves pprof")

// findFront finds nginx and wrk and writes wrk's script.
func (c *comparison) findFront() error {
	var err error
	if c.nginxBin, err = exec.LookPath(c.o.nginxBin); err != nil {
		return fmt.Errorf("-front nginx: %w (docs/bench.sh installs it: apt-get install -y nginx; or pass -front inprocess)", err)
	}
	c.wrk = wrkConfig{script: filepath.Join(c.dir, "bench.lua"), dir: c.dir,
		threads: c.o.wrkThreads, conns: c.o.wrkConns, timeout: c.o.timeout}
	if c.wrk.bin, err = exec.LookPath(c.o.wrkBin); err != nil {
		return fmt.Errorf("-front nginx: %w (docs/bench.sh installs it: apt-get install -y wrk; or pass -front inprocess)", err)
	}
	if err := os.WriteFile(c.wrk.script, benchLua, 0o644); err != nil {
		return fmt.Errorf("wrk script: %w", err)
	}
	return nil
}

// runSliceWrk runs one round of mix m against a started target for d with
// wrk through nginx. The first round of a mix logs the users in (their
// logins are the target's login latency), and every round runs a warm-up
// first; the users' counts and cookies carry over from run to run.
func (c *comparison) runSliceWrk(ctx context.Context, tr *targetResult, m loadgen.Mix, round int, d time.Duration) {
	fail := func(err error) {
		tr.mixErrs[m.Name] = err
		delete(tr.mixes, m.Name)
		c.printf("%s %s round %d/%d failed: %v", tr.t.key, m.Name, round+1, c.o.rounds, err)
	}
	client := wrkClient(c.o.wrkConns, c.o.timeout)
	defer client.CloseIdleConnections()
	if tr.mixes[m.Name] == nil {
		names := make([]string, c.o.users)
		for i := range names {
			names[i] = fmt.Sprintf("%s-%s-u%d", tr.t.key, m.Name, i)
		}
		users, logins, err := loginUsers(ctx, client, tr.run.URL(), names, c.o.wrkConns)
		if err != nil {
			fail(err)
			return
		}
		tr.users[m.Name] = users
		tr.mixes[m.Name] = &loadgen.Result{Config: loadgen.Config{Mix: m, Users: c.o.users, Concurrency: c.o.wrkConns}, Logins: logins}
		tr.cpu[m.Name] = &cpuUsage{}
	}
	name := fmt.Sprintf("%s-%s-%d", tr.t.key, m.Name, round)
	if c.o.warmup > 0 {
		w, err := runWrk(ctx, c.wrk, tr.run.URL(), tr.users[m.Name], m.WritePercent, c.o.warmup, name+"-warmup")
		if err != nil {
			fail(err)
			return
		}
		tr.users[m.Name] = w.users
		tr.mixes[m.Name].Total.Mismatches += w.stale // a stale read counts wherever it happens
	}
	pids, front := tr.run.pids(), tr.run.frontPIDs()
	before := takeCPU(pids, front)
	w, err := runWrk(ctx, c.wrk, tr.run.URL(), tr.users[m.Name], m.WritePercent, d, name)
	if err != nil {
		fail(err)
		return
	}
	u := takeCPU(pids, front).since(before)
	u.client += w.cpu
	u.other = max(0, u.other-w.cpu)
	tr.users[m.Name] = w.users
	res := w.result(m)
	tr.mixes[m.Name].Merge(res)
	tr.cpu[m.Name].add(u)
	h := &res.Total.Latency
	c.printf("%-9s %-11s round %d/%d: %6.0f req/s  p50 %-7s p99 %-7s errors %d stale %d | cores: servers %.2f, nginx+wrk+harness %.2f, other %.2f",
		tr.t.key, m.Name, round+1, c.o.rounds, res.RequestsPerSecond(),
		loadgen.FormatDuration(h.Quantile(0.5)), loadgen.FormatDuration(h.Quantile(0.99)),
		res.Total.Errors, w.stale, u.cores(u.servers), u.cores(u.client), u.cores(u.other))
	if w.unknown > 0 || w.abandoned > 1 { // wrk asks for one request it never sends, to check the script
		c.printf("%s %s: %d answers named no user, %d users were asked again without an answer", tr.t.key, m.Name, w.unknown, w.abandoned)
	}
}

// checkFinal reads every user's final count of mix m through the front
// and counts the acknowledged increments it misses.
func (c *comparison) checkFinal(ctx context.Context, tr *targetResult, m loadgen.Mix) {
	users := tr.users[m.Name]
	if tr.mixErrs[m.Name] != nil || users == nil {
		return
	}
	client := wrkClient(c.o.wrkConns, c.o.timeout)
	defer client.CloseIdleConnections()
	lost, unreadable, sample := finalCheck(ctx, client, tr.run.URL(), users, c.o.wrkConns)
	tr.lost[m.Name], tr.unreadable[m.Name], tr.checkErr[m.Name] = lost, unreadable, sample
	var acks int
	for _, u := range users {
		acks += u.acks
	}
	c.printf("%s %s: final counts: %d acknowledged increments, %d lost, %d users unreadable", tr.t.key, m.Name, acks, lost, unreadable)
	if sample != nil {
		c.printf("%s %s: e.g. %v", tr.t.key, m.Name, sample)
	}
}
