package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/loadgen"
)

// keepMarker separates the generated part of the Markdown report from
// notes written by hand, which a rewrite keeps.
const keepMarker = "<!-- Everything below this line is written by hand and kept when loadgen -compare rewrites this file. -->"

// sessionPayload is the payload of a micro-benchmark session, for the
// memory target.
const sessionPayload = 1024

// report is everything a comparison measured.
type report struct {
	when     time.Time
	opts     options
	machine  machineInfo
	micro    []benchResult
	microRaw string
	microErr error
	targets  []*targetResult
}

// machineInfo describes the machine the comparison ran on, and the tree.
type machineInfo struct {
	nproc, cpuModel, memory, kernel, goVersion, redis string
	nginx, wrk, nats                                  string
	numCPU, gomaxprocs                                int
	tree                                              string // git commit, and whether the work tree differs
}

// machine gathers what machineInfo holds; what cannot be found is "?".
func machine(ctx context.Context, redisServer string) machineInfo {
	run := func(name string, args ...string) string {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).Output()
		if err != nil {
			return "?"
		}
		return strings.TrimSpace(string(out))
	}
	m := machineInfo{
		nproc:      run("nproc"),
		goVersion:  run("go", "version"),
		redis:      run(redisServer, "--version"),
		kernel:     "?",
		cpuModel:   "?",
		memory:     "?",
		nats:       natsVersion(),
		numCPU:     runtime.NumCPU(),
		gomaxprocs: runtime.GOMAXPROCS(0),
	}
	if m.redis == "?" {
		m.redis = "not installed"
	}
	if m.tree = run("git", "rev-parse", "--short", "HEAD"); m.tree != "?" {
		if st := run("git", "status", "--porcelain", "--untracked-files=no"); st != "" {
			m.tree += " with uncommitted changes"
		}
	} else {
		m.tree = "not a git checkout"
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = runtime.GOOS + " " + strings.TrimSpace(string(b))
	}
	m.cpuModel = procField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 64); err == nil {
		m.memory = fmt.Sprintf("%.0f GiB", kb/(1<<20))
	}
	return m
}

// procField returns the value of the first "key: value" line of a /proc
// file, or "?".
func procField(file, key string) string {
	f, err := os.Open(file)
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func (m machineInfo) String() string {
	s := fmt.Sprintf("%s cores (`nproc` = %s, GOMAXPROCS %d), %s, %s memory, %s, %s, redis-server: %s, nats-server (embedded): %s",
		strconv.Itoa(m.numCPU), m.nproc, m.gomaxprocs, m.cpuModel, m.memory, m.kernel, m.goVersion, m.redis, m.nats)
	if m.nginx != "" {
		s += fmt.Sprintf(", nginx: %s, wrk: %s", m.nginx, m.wrk)
	}
	return s
}

// command returns the command line that produced the report.
func (r *report) command() string {
	parts := []string{"go", "run", "./examples/loadgen"}
	for _, a := range r.opts.args {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// result returns the result of target key under mix, or nil.
func (r *report) result(key, mix string) *loadgen.Result {
	for _, t := range r.targets {
		if t.t.key == key {
			return t.mixes[mix]
		}
	}
	return nil
}

// ratio returns a/b as "2.31x", or "–" when either is missing.
func ratio(a, b *loadgen.Result) string {
	if a == nil || b == nil || b.RequestsPerSecond() == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2fx", a.RequestsPerSecond()/b.RequestsPerSecond())
}

// check is one target of the performance issue.
type check struct {
	name     string // what is compared
	goal     string
	measured string // the value, with what it was computed from
	ok       bool
	missing  string // why it was not measured, or ""
}

func (c check) status() string {
	switch {
	case c.missing != "":
		return "not measured"
	case c.ok:
		return "met"
	default:
		return "**missed**"
	}
}

// ratioCheck compares a/b with limit: at most (atMost) or at least.
func ratioCheck(name string, a, b float64, atMost bool, limit float64, detail string) check {
	c := check{name: name}
	if atMost {
		c.goal = fmt.Sprintf("<= %gx", limit)
	} else {
		c.goal = fmt.Sprintf(">= %gx", limit)
	}
	if a <= 0 || b <= 0 {
		c.missing = "a benchmark did not run"
		return c
	}
	x := a / b
	c.ok = x <= limit
	if !atMost {
		c.ok = x >= limit
	}
	c.measured = fmt.Sprintf("%.2fx (%s)", x, detail)
	return c
}

// ns formats nanoseconds.
func ns(v float64) string { return loadgen.FormatDuration(time.Duration(v)) }

// checks evaluates the targets on what the report holds.
func (r *report) checks() []check {
	var out []check
	micro := func(name, unit string) float64 {
		v, _ := findBench(r.micro, name).metric(unit)
		return v
	}
	if r.opts.micro {
		if st, mp := micro("BenchmarkLocalRead/paired", "store-ns/read"), micro("BenchmarkLocalRead/paired", "map64-ns/read"); st > 0 {
			out = append(out, ratioCheck("Local session read (Store.Get of 1 KiB) / 64-shard RWMutex map read, paired", st, mp, true, 1.5,
				fmt.Sprintf("%s vs %s, alternating batches", ns(st), ns(mp))))
		}
		st, mp := micro("BenchmarkLocalRead/store", "ns/op"), micro("BenchmarkLocalRead/map64", "ns/op")
		out = append(out, ratioCheck("… the same, one benchmark after the other", st, mp, true, 1.5,
			fmt.Sprintf("%s vs %s", ns(st), ns(mp))))
		stp, mpp := micro("BenchmarkLocalRead/store-parallel", "ns/op"), micro("BenchmarkLocalRead/map64-parallel", "ns/op")
		out = append(out, ratioCheck("… the same from parallel goroutines", stp, mpp, true, 1.5,
			fmt.Sprintf("%s vs %s", ns(stp), ns(mpp))))
		c := check{name: "Local read path allocation-free", goal: "0 allocs/op"}
		if b := findBench(r.micro, "BenchmarkLocalRead/store"); b == nil {
			c.missing = "BenchmarkLocalRead did not run"
		} else {
			a, _ := b.metric("allocs/op")
			c.ok, c.measured = a == 0, fmt.Sprintf("%g allocs/op", a)
		}
		out = append(out, c)
		for _, q := range []struct {
			unit  string
			limit float64
		}{{"p50-ns", 2}, {"p99-ns", 3}} {
			p := strings.TrimSuffix(q.unit, "-ns")
			const paired = "BenchmarkReplicatedWrite/paired-peers=1"
			if w, raw := micro(paired, q.unit), micro(paired, "raw-"+q.unit); w > 0 {
				out = append(out, ratioCheck(fmt.Sprintf("Sync replicated write of 1 KiB to 1 peer / raw loopback request-ack, %s, paired", p),
					w, raw, true, q.limit, fmt.Sprintf("%s vs %s, alternating", ns(w), ns(raw))))
			}
			w, raw := micro("BenchmarkReplicatedWrite/peers=1", q.unit), micro("BenchmarkReplicatedWrite/raw-loopback", q.unit)
			out = append(out, ratioCheck(fmt.Sprintf("… %s, one benchmark after the other", p),
				w, raw, true, q.limit, fmt.Sprintf("%s vs %s", ns(w), ns(raw))))
		}
		c = check{name: "100k sessions of 1 KiB: a joining node catches up", goal: "<= 2s"}
		if d := micro("BenchmarkStateTransfer/sessions=100000", "ns/op"); d > 0 {
			c.ok = d <= 2e9
			c.measured = fmt.Sprintf("%s (%.0f sessions/s)", ns(d), micro("BenchmarkStateTransfer/sessions=100000", "sessions/s"))
		} else {
			c.missing = "BenchmarkStateTransfer did not run"
		}
		out = append(out, c)
		limit := 1.3*sessionPayload + 200
		c = check{name: "Memory per replica (heap per 1 KiB session after state transfer)", goal: fmt.Sprintf("<= 1.3x payload + 200 B = %.0f B", limit)}
		if v := micro("BenchmarkStateTransfer/sessions=100000", "replica-heap-B/session"); v > 0 {
			c.ok = v <= limit
			c.measured = fmt.Sprintf("%.0f B (source node: %.0f B)", v, micro("BenchmarkStateTransfer/sessions=100000", "src-heap-B/session"))
		} else {
			c.missing = "BenchmarkStateTransfer did not run"
		}
		out = append(out, c)
		c = check{name: "Full replication restored after a node crashes (100k sessions, Backups(1), in-process kill)", goal: "<= 2s"}
		if d := micro("BenchmarkReReplication/sessions=100000", "ns/op"); d > 0 {
			c.ok, c.measured = d <= 2e9, ns(d)
		} else {
			c.missing = "BenchmarkReReplication did not run"
		}
		out = append(out, c)
		backup := func(nodes int, unit string) float64 {
			name := fmt.Sprintf("BenchmarkBackupWriteBytes/nodes=%d", nodes)
			if v := micro(name, unit); v > 0 {
				return v
			}
			return micro(name+"/base=loaded", unit) // the benchmark's variant on a loaded store
		}
		perWrite := func(nodes int) float64 { return backup(nodes, "B/write") }
		measured := fmt.Sprintf("B/write: 3 nodes %.0f, 5 nodes %.0f, 7 nodes %.0f, 9 nodes %.0f", perWrite(3), perWrite(5), perWrite(7), perWrite(9))
		if c3, c9 := backup(3, "B/copy"), backup(9, "B/copy"); c3 > 0 && c9 > 0 {
			// See BenchmarkBackupWriteBytes: the copies a write needs grow
			// by 4/3 from 3 to 9 nodes, as fewer writes land on an owner.
			measured += fmt.Sprintf("; per copy an owner needs: 3 nodes %.0f B, 9 nodes %.0f B (%.2fx; copies per write grow 1.33x)", c3, c9, c9/c3)
		}
		out = append(out, ratioCheck("Backup mode: bytes sent per write, 9 nodes / 3 nodes (flat)", perWrite(9), perWrite(3), true, 1.1, measured))
	}
	read, write := loadgen.ReadHeavy.Name, loadgen.WriteHeavy.Name
	for _, h := range []struct {
		key, mix, ref string
		limit         float64
	}{
		{primary, read, refCookie, 1.0},
		{primary, write, refCookie, 0.8},
		{primary, write, refRedis, 1.6},
		{primary, write, refNATS, 4},
		{"mesh3-b1", write, refRedis, 1.3},
		{"mesh3-b1", read, refRedis, 1.6},
		{"mesh5-b1", write, refRedis, 1.3},
		{"mesh5-b1", read, refRedis, 1.6},
	} {
		if !r.ran(h.key) && !r.ran(h.ref) {
			continue // neither was selected
		}
		name := fmt.Sprintf("HTTP %s requests/s, %s / %s", h.mix, h.key, h.ref)
		a, b := r.result(h.key, h.mix), r.result(h.ref, h.mix)
		if a == nil || b == nil {
			out = append(out, check{name: name, goal: fmt.Sprintf(">= %gx", h.limit), missing: "a target or mix did not run"})
			continue
		}
		c := ratioCheck(name, a.RequestsPerSecond(), b.RequestsPerSecond(), false, h.limit,
			fmt.Sprintf("%.0f vs %.0f req/s", a.RequestsPerSecond(), b.RequestsPerSecond()))
		if !c.ok && c.missing == "" {
			c.measured += "; " + r.profileLink(h.key, h.mix)
		}
		out = append(out, c)
	}
	for _, t := range r.targets {
		if len(t.mixes) == 0 {
			continue
		}
		var lost, stale, unreadable, errs uint64
		for m, res := range t.mixes {
			stale += res.Total.Mismatches
			errs += res.Total.Errors
			lost += t.lost[m]
			unreadable += t.unreadable[m]
		}
		c := check{name: fmt.Sprintf("HTTP %s: no lost increments, no stale reads, in every mix", t.t.key), goal: "0",
			ok: lost == 0 && stale == 0 && unreadable == 0}
		c.measured = fmt.Sprintf("%d lost, %d stale reads (%d errors)", lost, stale, errs)
		if unreadable > 0 {
			c.measured += fmt.Sprintf(", %d final counts unreadable", unreadable)
		}
		if r.opts.front != frontNginx {
			c.measured += "; lost increments are counted with -front nginx only"
		}
		out = append(out, c)
	}
	return out
}

// loginConcurrency is the number of requests in flight: wrk's connections
// with -front nginx, else -concurrency.
func (r *report) loginConcurrency() int {
	if r.opts.front == frontNginx {
		return r.opts.wrkConns
	}
	return r.opts.concurrency
}

// ran reports whether target key was selected.
func (r *report) ran(key string) bool {
	for _, t := range r.targets {
		if t.t.key == key {
			return true
		}
	}
	return false
}

// profileLink points to the profile of target key under mix, or says why
// there is none.
func (r *report) profileLink(key, mix string) string {
	for _, t := range r.targets {
		if p := t.profiles[mix]; t.t.key == key && p != nil && p.err == nil {
			return fmt.Sprintf("why: [profile of %s under %s](#%s-under-%s)", key, mix, key, mix)
		}
	}
	return fmt.Sprintf("no profile of %s under %s (add it to -profile)", key, mix)
}

// writeText prints the tables to w.
func (r *report) writeText(w io.Writer) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "\n== HTTP load: %d users, %d in flight, %s per target and mix in %d rounds (each after %s warm-up), front: %s\n",
		r.opts.users, r.loginConcurrency(), r.opts.duration, r.opts.rounds, r.opts.warmup, r.opts.front)
	tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(httpColumns, "\t"))
	for _, t := range r.targets {
		for _, row := range r.rows(t) {
			fmt.Fprintln(tw, strings.Join(pad(row), "\t"))
		}
	}
	tw.Flush()
	for _, n := range r.notes() {
		fmt.Fprintln(&b, n)
	}
	fmt.Fprintln(&b, "\n== Targets of the performance issue")
	tw = tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
	for _, c := range r.checks() {
		v := c.measured
		if c.missing != "" {
			v = c.missing
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.name, c.goal, v, strings.Trim(c.status(), "*"))
	}
	tw.Flush()
	_, err := w.Write(b.Bytes())
	return err
}

// rows returns the table rows of t: one per mix, or one saying why not.
func (r *report) rows(t *targetResult) [][]string {
	k := t.t.key
	switch {
	case t.skipped != "":
		return [][]string{{k, "–", "skipped"}}
	case t.err != nil:
		return [][]string{{k, "–", "failed"}}
	}
	var rows [][]string
	for _, m := range r.opts.mixes {
		res := t.mixes[m.Name]
		if res == nil {
			msg := "did not run"
			if t.mixErrs[m.Name] != nil {
				msg = "failed"
			}
			rows = append(rows, []string{k, m.Name, msg})
			continue
		}
		h := &res.Total.Latency
		cpuReq, cores, eff := "?", "?", "?"
		if u := t.cpu[m.Name]; u != nil && u.ok {
			cpuReq = loadgen.FormatDuration(perRequest(u, res))
			cores = fmt.Sprintf("%.2f / %.2f / %.2f", u.cores(u.servers), u.cores(u.client), u.cores(u.other))
			eff = fmt.Sprintf("%.0f", perCPUSecond(u, res))
		}
		lost := "–"
		if _, ok := t.lost[m.Name]; ok {
			lost = strconv.FormatUint(t.lost[m.Name], 10)
			if n := t.unreadable[m.Name]; n > 0 {
				lost += fmt.Sprintf(" (+%d unreadable)", n)
			}
		}
		rows = append(rows, []string{k, m.Name, fmt.Sprintf("%.0f", res.RequestsPerSecond()),
			loadgen.FormatDuration(h.Quantile(0.5)), loadgen.FormatDuration(h.Quantile(0.9)),
			loadgen.FormatDuration(h.Quantile(0.99)), loadgen.FormatDuration(h.Max()),
			strconv.FormatUint(res.Total.Errors, 10), strconv.FormatUint(res.Total.Mismatches, 10), lost,
			ratio(res, r.result(refRedis, m.Name)), ratio(res, r.result(refCookie, m.Name)),
			cpuReq, eff, cores})
	}
	return rows
}

// notes returns why targets were skipped or failed, one line each.
func (r *report) notes() []string {
	var out []string
	for _, t := range r.targets {
		switch {
		case t.skipped != "":
			out = append(out, fmt.Sprintf("%s: skipped: %s", t.t.key, t.skipped))
		case t.err != nil:
			out = append(out, fmt.Sprintf("%s: failed to start: %s", t.t.key, oneLine(t.err.Error())))
		}
		for _, m := range r.opts.mixes {
			if err := t.mixErrs[m.Name]; err != nil {
				out = append(out, fmt.Sprintf("%s, %s: failed: %s", t.t.key, m.Name, oneLine(err.Error())))
			}
		}
	}
	return out
}

// perRequest returns the server CPU time per successful request.
func perRequest(u *cpuUsage, res *loadgen.Result) time.Duration {
	n := res.Total.Requests - res.Total.Errors
	if n == 0 {
		return 0
	}
	return u.servers / time.Duration(n)
}

// perCPUSecond returns the successful requests per second of CPU used by
// the servers and the front (load generator and proxy) together: what the
// whole stack gets out of a core, whatever else runs on the machine.
func perCPUSecond(u *cpuUsage, res *loadgen.Result) float64 {
	cpu := (u.servers + u.client).Seconds()
	if cpu <= 0 {
		return 0
	}
	return float64(res.Total.Requests-res.Total.Errors) / cpu
}

// cpuPerRequest returns the server CPU per request of target key under
// mix, or 0.
func (r *report) cpuPerRequest(key, mix string) time.Duration {
	for _, t := range r.targets {
		if t.t.key == key {
			if u, res := t.cpu[mix], t.mixes[mix]; u != nil && u.ok && res != nil {
				return perRequest(u, res)
			}
		}
	}
	return 0
}

// httpColumns is the header of the HTTP table.
var httpColumns = []string{"target", "mix", "req/s", "p50", "p90", "p99", "max", "errors", "stale reads", "lost increments",
	"× scs+Redis", "× cookie", "server CPU/req", "req per CPU-s", "cores: servers / front and load gen. / other"}

// pad fills a table row up to the columns of the HTTP table.
func pad(row []string) []string {
	for len(row) < len(httpColumns) {
		row = append(row, "")
	}
	return row
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// writeMarkdownFile writes the report to file, keeping what follows
// keepMarker in the file it replaces.
func (r *report) writeMarkdownFile(file string) error {
	kept := "\n## Analysis\n\n(Nothing written yet.)\n"
	if old, err := os.ReadFile(file); err == nil {
		if _, tail, ok := strings.Cut(string(old), keepMarker); ok {
			kept = tail
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var b bytes.Buffer
	if err := r.writeMarkdown(&b); err != nil {
		return err
	}
	b.WriteString("\n" + keepMarker)
	b.WriteString(kept)
	return os.WriteFile(file, b.Bytes(), 0o644)
}

// writeMarkdown writes the generated part of the report.
func (r *report) writeMarkdown(w io.Writer) error {
	var b bytes.Buffer
	o := r.opts
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# sessionmesh benchmarks")
	p("")
	p("Generated by `examples/loadgen -compare` on %s. Command (from the repository root; `docs/bench.sh` runs it after installing redis-server, nginx and wrk if missing):",
		r.when.UTC().Format("2006-01-02 15:04 MST"))
	p("")
	p("    %s", r.command())
	p("")
	p("Source tree: %s. Machine: %s.", r.machine.tree, r.machine)
	p("The machine is shared and noisy: absolute figures move between runs by tens of percent, so every")
	p("target is judged as a ratio to a baseline measured in the same run.")
	p("")
	if o.front == frontNginx {
		p("HTTP workload: %d users log in (`POST /login`, through the front, by the harness: the login latency below), then", o.users)
		p("wrk (`-t%d -c%d`, the Lua script examples/loadgen/bench.lua) sends %s through a stock", o.wrkThreads, o.wrkConns, mixList(o.mixes))
		p("nginx round robin (Debian's package, `worker_processes auto`, keep-alive connections to every node, not sticky).")
		p("Each wrk thread sends its users' requests round robin, skipping a user whose previous request is unanswered, so a")
		p("user has one request in flight, as a browser does. Everything (nginx, wrk, the harness, the nodes, redis-server)")
		p("shares the same cores. Every target is started first; then each mix runs in %d rounds, and each round gives every", o.rounds)
		p("target %s of wrk in turn (after %s of unmeasured warm-up), so that load from elsewhere on the machine spreads over", o.duration/time.Duration(o.rounds), o.warmup)
		p("all targets; a target's figures merge its rounds (%s in all). Every application runs with `-idle-timeout %s`.", o.duration, o.idleTimeout)
		p("")
		p("Requests/s counts answered requests without error statuses. *Errors* are socket errors, timeouts and statuses of")
		p("400 or more. A *stale read* is a `GET /me` that answers fewer visits than the user's last acknowledged `POST /visit`")
		p("did, or a `POST /visit` that answers no more than it (counted in warm-ups too). *Lost increments*: after a mix's last")
		p("round the harness reads every user's count through the front; each acknowledged `POST /visit` that the count does")
		p("not reflect is lost. *Server CPU/req* is the CPU time (user + system, from /proc) of the target's processes,")
		p("redis-server included, per successful request in the measured windows; *cores* splits the machine's busy CPUs over")
		p("those windows between the target's processes, nginx with wrk (and the idle harness), and everything else; *req per")
		p("CPU-s* is the successful requests per second of CPU used by the servers and the front together.")
		p("")
	} else {
		p("HTTP workload: %d users, each with its own cookie jar, log in (`POST /login`, not measured), then %d requests",
			o.users, o.concurrency)
		p("in flight send %s. Every target is started first; then each mix runs in %d rounds, and each", mixList(o.mixes), o.rounds)
		p("round gives every target %s in turn (after a %s warm-up and fresh logins), so that load from elsewhere on", o.duration/time.Duration(o.rounds), o.warmup)
		p("the machine spreads over all targets; a target's figures merge its rounds (%s in all). All targets sit", o.duration)
		if o.front == frontClient {
			p("behind the same non-sticky round robin, done by the load generator itself (`-front client`: each request of each")
			p("user goes to the next node in turn; no proxy hop), on the same cores as the load generator and (for scs+Redis)")
			p("redis-server. Every application runs with `-idle-timeout %s`.", o.idleTimeout)
		} else {
			p("behind the same non-sticky round-robin proxy (examples/internal/rrproxy, inside the load generator's process, `-front inprocess`), on the same")
			p("cores as the load generator, the proxy and (for scs+Redis) redis-server. Every application runs with `-idle-timeout %s`.", o.idleTimeout)
		}
		p("")
		p("Requests/s counts successful requests; *stale reads* are answers that contradict the user's own earlier")
		p("requests (a lost write or a stale read after the proxy switched servers); lost increments are counted with")
		p("`-front nginx` only. *Server CPU/req* is the CPU time (user + system, from /proc) of the target's processes,")
		p("redis-server included, per successful request in the measured windows; *cores* splits the machine's busy CPUs")
		p("between the target's processes, the load generator with the proxy, and everything else.")
		p("")
	}
	p("The issue's HTTP targets are ratios of requests/s in this one run. A missed target links to the CPU profile of")
	p("the sessionmesh nodes under that mix (section *Where the CPU goes*).")
	p("")

	p("## Targets of the performance issue")
	p("")
	p("| target | goal | measured | status |")
	p("|---|---|---|---|")
	for _, c := range r.checks() {
		v := c.measured
		if c.missing != "" {
			v = c.missing
		}
		p("| %s | %s | %s | %s |", c.name, c.goal, v, c.status())
	}
	p("")

	p("## HTTP load")
	p("")
	p("| %s |", strings.Join(httpColumns, " | "))
	p("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, t := range r.targets {
		for _, row := range r.rows(t) {
			p("| %s |", strings.Join(pad(row), " | "))
		}
	}
	p("")
	p("Targets:")
	p("")
	for _, t := range r.targets {
		p("- `%s`: %s.", t.t.key, t.t.name)
	}
	p("")
	if notes := r.notes(); len(notes) > 0 {
		p("Skipped and failed:")
		p("")
		for _, n := range notes {
			p("- %s", n)
		}
		p("")
	}
	p("### Login latency")
	p("")
	p("`POST /login` of every user through the front, %d at a time, before each mix (not part of the mixes' figures).", r.loginConcurrency())
	p("")
	p("| target | logins | errors | p50 | p99 | max |")
	p("|---|--:|--:|--:|--:|--:|")
	for _, t := range r.targets {
		var l loadgen.OpStats
		for _, res := range t.mixes {
			l.Requests += res.Logins.Requests
			l.Errors += res.Logins.Errors
			l.Latency.Merge(&res.Logins.Latency)
		}
		if l.Requests == 0 {
			continue
		}
		h := &l.Latency
		p("| %s | %d | %d | %s | %s | %s |", t.t.key, l.Requests, l.Errors, loadgen.FormatDuration(h.Quantile(0.5)),
			loadgen.FormatDuration(h.Quantile(0.99)), loadgen.FormatDuration(h.Max()))
	}
	p("")
	p("### Server CPU per request")
	p("")
	p("The cost of a request to the servers alone (for scs+Redis: the app processes and redis-server), independent of")
	p("how much CPU the load generator leaves them. A ratio above 1 means the reference needs more CPU per request")
	p("than the row's target.")
	p("")
	p("| target | mix | server CPU/req | scs+Redis ÷ target | cookie ÷ target |")
	p("|---|---|--:|--:|--:|")
	for _, t := range r.targets {
		for _, m := range o.mixes {
			c := r.cpuPerRequest(t.t.key, m.Name)
			if c == 0 {
				continue
			}
			cmp := func(ref string) string {
				if x := r.cpuPerRequest(ref, m.Name); x > 0 {
					return fmt.Sprintf("%.2fx", float64(x)/float64(c))
				}
				return "–"
			}
			p("| %s | %s | %s | %s | %s |", t.t.key, m.Name, loadgen.FormatDuration(c), cmp(refRedis), cmp(refCookie))
		}
	}
	p("")

	if o.micro {
		p("## A replicated write next to its floor")
		p("")
		p("One write in flight, 1 KiB, over loopback TCP inside one process (`go test -bench BenchmarkReplicatedWrite ./replication`):")
		p("")
		p("| | p50 | p99 | mean | writes/s | allocs/op |")
		p("|---|--:|--:|--:|--:|--:|")
		for _, row := range []struct{ label, name, prefix string }{
			{"raw loopback TCP request/ack (the floor)", "BenchmarkReplicatedWrite/raw-loopback", ""},
			{"sessionmesh sync write, 1 peer", "BenchmarkReplicatedWrite/peers=1", ""},
			{"sessionmesh sync write, 2 peers", "BenchmarkReplicatedWrite/peers=2", ""},
			{"paired: raw loopback, alternating with…", "BenchmarkReplicatedWrite/paired-peers=1", "raw-"},
			{"paired: … sessionmesh sync write, 1 peer", "BenchmarkReplicatedWrite/paired-peers=1", ""},
		} {
			br := findBench(r.micro, row.name)
			if br == nil {
				p("| %s | did not run | | | | |", row.label)
				continue
			}
			p50, _ := br.metric(row.prefix + "p50-ns")
			p99, _ := br.metric(row.prefix + "p99-ns")
			mean, _ := br.metric("ns/op")
			if strings.HasPrefix(row.label, "paired") {
				mean = 0 // ns/op covers both operations of the pair
			}
			allocs, _ := br.metric("allocs/op")
			wps := 0.0
			if mean > 0 {
				wps = 1e9 / mean
			}
			if mean == 0 {
				p("| %s | %s | %s | | | |", row.label, ns(p50), ns(p99))
				continue
			}
			p("| %s | %s | %s | %s | %.0f | %g |", row.label, ns(p50), ns(p99), ns(mean), wps, allocs)
		}
		p("")
		p("## Micro-benchmarks")
		p("")
		if r.microErr != nil {
			p("**The micro-benchmarks failed:** `%s` (their output is below).", oneLine(r.microErr.Error()))
			p("")
		}
		p("| benchmark | iterations | ns/op | B/op | allocs/op | other |")
		p("|---|--:|--:|--:|--:|---|")
		for _, br := range r.micro {
			var other []string
			for _, u := range br.units {
				switch u {
				case "ns/op", "B/op", "allocs/op":
				default:
					other = append(other, fmt.Sprintf("%s %s", strconv.FormatFloat(br.metrics[u], 'g', 6, 64), u))
				}
			}
			v := func(u string) string {
				x, ok := br.metric(u)
				if !ok {
					return ""
				}
				return strconv.FormatFloat(x, 'g', 6, 64)
			}
			p("| %s | %d | %s | %s | %s | %s |", br.name, br.n, v("ns/op"), v("B/op"), v("allocs/op"), strings.Join(other, ", "))
		}
		p("")
		p("<details><summary>go test output</summary>")
		p("")
		p("```")
		b.WriteString(strings.TrimSpace(r.microRaw) + "\n")
		p("```")
		p("</details>")
		p("")
	}

	var profiled []*targetResult
	for _, t := range r.targets {
		if len(t.profiles) > 0 {
			profiled = append(profiled, t)
		}
	}
	if len(profiled) > 0 {
		p("## Where the CPU goes")
		p("")
		p("CPU and allocation profiles of the nodes (`-pprof`), taken in a separate pass after the measured rounds")
		p("of each mix (same workload; profiling adds a little overhead), merged over the nodes. Percentages are of all")
		p("samples of all nodes; the load generator, the proxy and redis-server are not in them.")
		p("")
		for _, t := range profiled {
			for _, m := range o.mixes {
				pr := t.profiles[m.Name]
				if pr == nil {
					continue
				}
				p("### %s under %s", t.t.key, m.Name)
				p("")
				if pr.err != nil {
					p("Profiling failed: `%s`", oneLine(pr.err.Error()))
					p("")
					continue
				}
				p("%d nodes, %d s each, at %.0f requests/s.", pr.nodes, pr.seconds, pr.load.RequestsPerSecond())
				p("")
				p("| area of code (own CPU time, flat) | share |")
				p("|---|--:|")
				for _, s := range pr.shares {
					p("| %s | %.1f%% |", s.name, s.pct)
				}
				p("")
				if len(pr.entries) > 0 {
					p("| entry point (CPU time including callees) | share |")
					p("|---|--:|")
					for _, s := range pr.entries {
						p("| %s | %.1f%% |", s.name, s.pct)
					}
					p("")
				}
				p("<details><summary>by package, top functions, cumulative, allocations</summary>")
				p("")
				p("Flat CPU by package (top 15):")
				p("")
				p("```")
				for i, s := range pr.packages {
					if i == 15 {
						break
					}
					p("%6.1f%%  %s", s.pct, s.name)
				}
				p("```")
				p("")
				p("Top functions by own time (`go tool pprof -top`):")
				p("")
				p("```")
				p("%s", pr.cpuTop)
				p("```")
				p("")
				p("Top functions by time including callees (`-top -cum`):")
				p("")
				p("```")
				p("%s", pr.cpuCum)
				p("```")
				p("")
				if pr.allocTop != "" {
					p("Allocated bytes (`-sample_index=alloc_space`):")
					p("")
					p("```")
					p("%s", pr.allocTop)
					p("```")
					p("")
				}
				p("</details>")
				p("")
			}
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

func mixList(mixes []loadgen.Mix) string {
	var s []string
	for _, m := range mixes {
		s = append(s, fmt.Sprintf("%s (%d%% `POST /visit`, %d%% `GET /me`)", m.Name, m.WritePercent, 100-m.WritePercent))
	}
	return strings.Join(s, ", then ")
}
