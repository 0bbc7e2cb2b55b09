package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sessionmesh/sessionmesh/examples/internal/loadgen"
	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
	"github.com/sessionmesh/sessionmesh/examples/internal/rrproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"-url", "http://127.0.0.1:1"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, []loadgen.Mix{loadgen.ReadHeavy}, o.mixes)
	assert.Equal(t, 10*time.Second, o.duration)
	assert.Equal(t, 1000, o.users)
	assert.Equal(t, 32, o.concurrency)

	o, err = parseFlags([]string{"-compare", "-targets", "mesh3, scs-mem", "-node-args", "-log-level warn"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, []loadgen.Mix{loadgen.ReadHeavy, loadgen.WriteHeavy}, o.mixes)
	assert.Equal(t, 15*time.Second, o.duration)
	assert.Equal(t, time.Second, o.warmup)
	assert.Equal(t, 5, o.rounds)
	assert.Equal(t, frontNginx, o.front)
	assert.Equal(t, 2, o.wrkThreads)
	assert.Equal(t, 64, o.wrkConns)
	assert.Equal(t, []string{"mesh3", "scs-mem"}, o.targets)
	assert.Equal(t, []string{"-log-level", "warn"}, o.nodeArgs)
	assert.Equal(t, []string{"mesh3", "mesh3-b1", "mesh5-b1"}, o.profile)

	for _, args := range [][]string{
		{},
		{"-url", "http://x", "-compare"},
		{"-url", "http://x", "-users", "3", "-concurrency", "4"},
		{"-url", "http://x", "-mix", "reads"},
		{"-url", "http://x", "-duration", "-1s"},
		{"-url", "http://x", "extra"},
		{"-compare", "-front", "haproxy"},
		{"-compare", "-wrk-connections", "2000"},
	} {
		_, err := parseFlags(args, &stderr)
		assert.Error(t, err, args)
	}
	_, err = selectTargets([]string{"nope"})
	assert.Error(t, err)
}

func TestParseBench(t *testing.T) {
	out := `goos: linux
pkg: github.com/sessionmesh/sessionmesh/replication
BenchmarkLocalRead/store-2         	 1539830	       653.2 ns/op	       0 B/op	       0 allocs/op
BenchmarkReplicatedWrite/peers=1-2 	   15740	     67482 ns/op	  15.17 MB/s	     47359 p50-ns	    180223 p99-ns	    3821 B/op	      26 allocs/op
BenchmarkStateTransfer/sessions=100000-2 	       1	 639795217 ns/op	 160.05 MB/s	      1480 replica-heap-B/session
BenchmarkBroken-2 	 x	 1 ns/op
--- FAIL: BenchmarkOther
PASS
`
	rs := parseBench(out, 2)
	require.Len(t, rs, 3)
	assert.Equal(t, "BenchmarkLocalRead/store", rs[0].name)
	assert.Equal(t, int64(1539830), rs[0].n)
	v, ok := rs[0].metric("ns/op")
	assert.True(t, ok)
	assert.Equal(t, 653.2, v)
	w := findBench(rs, "BenchmarkReplicatedWrite/peers=1")
	require.NotNil(t, w)
	v, _ = w.metric("p99-ns")
	assert.Equal(t, 180223.0, v)
	assert.Equal(t, []string{"ns/op", "MB/s", "p50-ns", "p99-ns", "B/op", "allocs/op"}, w.units)
	assert.NotNil(t, findBench(rs, "BenchmarkStateTransfer/sessions=100000"))
	assert.Nil(t, findBench(rs, "BenchmarkBroken"))
	_, ok = findBench(rs, "none").metric("ns/op")
	assert.False(t, ok)

	// GOMAXPROCS=1 prints no suffix; "peers=1" must stay whole.
	rs = parseBench("BenchmarkReplicatedWrite/peers=1 	 10	 5 ns/op\n", 1)
	require.Len(t, rs, 1)
	assert.Equal(t, "BenchmarkReplicatedWrite/peers=1", rs[0].name)
}

func TestParseFlagNames(t *testing.T) {
	usage := `Usage of login:
  -backups int
    	backup copies (default -1)
  -cookie-secure
    	mark the cookie Secure
  -http string
    	HTTP listen address (default "127.0.0.1:8080")
`
	got := parseFlagNames(usage)
	assert.Equal(t, map[string]bool{"backups": true, "cookie-secure": true, "http": true}, got)
}

func TestProfileSummaries(t *testing.T) {
	for fn, pkg := range map[string]string{
		"github.com/sessionmesh/sessionmesh/replication.(*Store).Get": "github.com/sessionmesh/sessionmesh/replication",
		"runtime.mallocgc":                      "runtime",
		"internal/runtime/maps.ctrlGroup.match": "internal/runtime/maps",
		"net/http.(*conn).serve":                "net/http",
		"syscall.Syscall6":                      "syscall",
		"main.main":                             "main",
	} {
		assert.Equal(t, pkg, packageOf(fn), fn)
	}
	for pkg, area := range map[string]string{
		"github.com/sessionmesh/sessionmesh/httpsession": areas[0].name,
		"net/http/httputil":     "net/http (server, client, proxy)",
		"net":                   "network system calls and poller",
		"netip":                 "other",
		"internal/runtime/maps": "Go runtime (GC, allocation, scheduler, maps)",
		"runtime":               "Go runtime (GC, allocation, scheduler, maps)",
		"encoding/json":         "encoding/json",
		"main":                  "other",
	} {
		assert.Equal(t, area, areaOf(pkg), pkg)
	}
	table := `Showing nodes accounting for 1.43s, 97.95% of 1.46s total
      flat  flat%   sum%        cum   cum%
     0.34s 23.29% 23.29%      0.34s 23.29%  github.com/sessionmesh/sessionmesh/replication.(*hash64).writeByte (inline)
     0.17s 11.64% 34.93%      0.22s 15.07%  github.com/sessionmesh/sessionmesh/replication.(*record).live (inline)
     0.13s  8.90% 43.83%      0.26s 17.81%  runtime.mapaccess1_faststr
     0.10s  6.85% 50.68%      0.10s  6.85%  syscall.Syscall6
`
	pk, ar := flatShares(table)
	require.Len(t, pk, 3)
	assert.Equal(t, "github.com/sessionmesh/sessionmesh/replication", pk[0].name)
	assert.InDelta(t, 34.93, pk[0].pct, 0.001)
	assert.Equal(t, areas[0].name, ar[0].name)
	assert.Len(t, ar, 3)

	cum := `      flat  flat%   sum%        cum   cum%
     0.01s  0.35%  0.35%      1.16s 41.13%  net/http.(*conn).serve
     0.01s  0.35% 27.66%      0.38s 13.48%  main.(*node).routes.(*Manager).LoadAndSave.func1
     0.01s  0.35% 27.66%      0.10s  3.00%  github.com/sessionmesh/sessionmesh/replication.(*Store).Get
`
	es := cumShares(cum)
	require.Len(t, es, 3)
	assert.Equal(t, share{entryPoints[0].name, 41.13}, es[0])
	assert.Equal(t, share{entryPoints[1].name, 13.48}, es[1])
	assert.Equal(t, share{entryPoints[2].name, 3.00}, es[2])
}

// fakeResult returns a Result of rps requests/s over one second.
func fakeResult(mix loadgen.Mix, rps int, errs uint64) *loadgen.Result {
	r := &loadgen.Result{Config: loadgen.Config{Mix: mix}, Elapsed: time.Second, Ops: map[string]*loadgen.OpStats{}}
	r.Total.Requests = uint64(rps) + errs
	r.Total.Errors = errs
	for range 100 {
		r.Total.Latency.Record(time.Millisecond)
	}
	return r
}

func TestReport(t *testing.T) {
	read, write := loadgen.ReadHeavy, loadgen.WriteHeavy
	tr := func(key string, rr, wr int) *targetResult {
		var tt *target
		for _, x := range allTargets() {
			if x.key == key {
				tt = x
			}
		}
		return &targetResult{t: tt,
			mixes: map[string]*loadgen.Result{read.Name: fakeResult(read, rr, 0), write.Name: fakeResult(write, wr, 0)},
			cpu: map[string]*cpuUsage{
				read.Name:  {wall: time.Second, servers: time.Duration(rr) * 100 * time.Microsecond, client: time.Second, ok: true},
				write.Name: {wall: time.Second, servers: time.Second, client: time.Second, ok: true},
			}}
	}
	micro := parseBench(`BenchmarkLocalRead/store-2 	 1	 40 ns/op	 0 B/op	 0 allocs/op
BenchmarkLocalRead/map64-2 	 1	 30 ns/op	 0 B/op	 0 allocs/op
BenchmarkReplicatedWrite/raw-loopback-2 	 1	 20000 ns/op	 20000 p50-ns	 50000 p99-ns
BenchmarkReplicatedWrite/peers=1-2 	 1	 50000 ns/op	 45000 p50-ns	 140000 p99-ns
BenchmarkReplicatedWrite/paired-peers=1-2 	 1	 90000 ns/op	 30000 p50-ns	 300000 p99-ns	 20000 raw-p50-ns	 50000 raw-p99-ns
`, 2)
	o, err := parseFlags([]string{"-compare", "-duration", "15s"}, &bytes.Buffer{})
	require.NoError(t, err)
	rep := &report{when: time.Unix(0, 0), opts: o, micro: micro, microRaw: "raw output", targets: []*targetResult{
		tr("mesh3", 25000, 9000),
		{t: allTargets()[1], skipped: "examples/login has no -backups flag yet"},
		tr("scs-redis", 10000, 10000),
		tr("cookie", 20000, 30000),
		tr("nats3", 3000, 2000),
		tr("scs-mem", 30000, 30000),
	}}
	rep.targets[0].lost = map[string]uint64{write.Name: 2}
	rep.targets[0].profiles = map[string]*profile{write.Name: {load: fakeResult(write, 100, 0)}}
	status := map[string]string{}
	for _, c := range rep.checks() {
		status[c.name] = c.status()
	}
	assert.Equal(t, "met", status["… the same, one benchmark after the other"])
	assert.Equal(t, "**missed**", status["… p50, one benchmark after the other"])
	assert.Equal(t, "met", status["… p99, one benchmark after the other"])
	assert.Equal(t, "met", status["Sync replicated write of 1 KiB to 1 peer / raw loopback request-ack, p50, paired"])
	assert.Equal(t, "**missed**", status["Sync replicated write of 1 KiB to 1 peer / raw loopback request-ack, p99, paired"])
	assert.Equal(t, "met", status["HTTP read-heavy requests/s, mesh3 / cookie"])
	assert.Equal(t, "**missed**", status["HTTP write-heavy requests/s, mesh3 / cookie"])
	assert.Equal(t, "**missed**", status["HTTP write-heavy requests/s, mesh3 / scs-redis"])
	assert.Equal(t, "met", status["HTTP write-heavy requests/s, mesh3 / nats3"])
	assert.Equal(t, "not measured", status["HTTP read-heavy requests/s, mesh3-b1 / scs-redis"])
	assert.Equal(t, "**missed**", status["HTTP mesh3: no lost increments, no stale reads, in every mix"])
	assert.Equal(t, "met", status["HTTP scs-redis: no lost increments, no stale reads, in every mix"])
	assert.Equal(t, "not measured", status["100k sessions of 1 KiB: a joining node catches up"])

	var text bytes.Buffer
	require.NoError(t, rep.writeText(&text))
	assert.Contains(t, text.String(), "2.50x") // 25000 / 10000
	assert.Contains(t, text.String(), "1.25x") // 25000 / 20000
	assert.Contains(t, text.String(), "mesh3-b1: skipped: examples/login has no -backups flag yet")

	// The Markdown file keeps what was written by hand below the marker.
	file := filepath.Join(t.TempDir(), "benchmarks.md")
	require.NoError(t, os.WriteFile(file, []byte("old\n"+keepMarker+"\n## Analysis\n\nhand-written\n"), 0o644))
	require.NoError(t, rep.writeMarkdownFile(file))
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	md := string(b)
	assert.NotContains(t, md, "old\n")
	assert.Contains(t, md, "| mesh3 | read-heavy | 25000 |")
	assert.Contains(t, md, "| 100µs | 7143 | 2.50 / 1.00 / 0.00 |")           // 2.5 s of server CPU and 1 s of front for 25000 requests
	assert.Contains(t, md, "| mesh3 | write-heavy | 111µs | 0.90x | 0.30x |") // 1 s / 9000 requests vs 1 s / 10000 and 1 s / 30000
	assert.Contains(t, md, "| 0 | 0 | 2 | 0.90x | 0.30x |")                   // errors, stale reads, lost increments of mesh3's write-heavy mix
	assert.Contains(t, md, "[profile of mesh3 under write-heavy](#mesh3-under-write-heavy)")
	assert.Contains(t, md, "go run ./examples/loadgen -compare -duration 15s")
	assert.Contains(t, md, "hand-written")
	assert.Equal(t, 1, strings.Count(md, keepMarker))
	require.NoError(t, rep.writeMarkdownFile(file))
	again, err := os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, md, string(again))
}

// buildApps builds examples/login and examples/scslogin into dir.
func buildApps(t *testing.T, ctx context.Context, dir string) (login, scs string) {
	t.Helper()
	login, scs = filepath.Join(dir, "login"), filepath.Join(dir, "scslogin")
	require.NoError(t, procs.Build(ctx, procs.LoginPackage, login))
	require.NoError(t, procs.Build(ctx, scsLoginPackage, scs))
	return login, scs
}

// TestSmoke runs the load generator for about a second against one real
// examples/login node, and one examples/scslogin node with its memstore:
// both implement the contract, and neither loses a write.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the login servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	login, scs := buildApps(t, ctx, dir)
	g := procs.NewGroup(ctx, dir)
	defer g.Close()
	addrs, err := procs.FreeAddrs("127.0.0.1", 3, procs.TCPAndUDP)
	require.NoError(t, err)
	specs := []procs.Spec{
		{Name: "n1", Path: login, Args: []string{"-name", "n1", "-http", addrs[0], "-gossip", addrs[1], "-seeds", addrs[1], "-throttle-addr", "0"}},
		{Name: "s1", Path: scs, Args: []string{"-name", "s1", "-http", addrs[2], "-store", "memory"}},
	}
	for i, spec := range specs {
		url := "http://" + addrs[[]int{0, 2}[i]]
		spec.HealthURL = url + "/healthz"
		p, err := g.Start(spec)
		require.NoError(t, err)
		hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
		require.NoError(t, p.WaitHealthy(hctx))
		hcancel()
		for _, mix := range []loadgen.Mix{loadgen.ReadHeavy, loadgen.WriteHeavy} {
			res, err := loadgen.Run(ctx, loadgen.Config{
				BaseURL: url, Users: 20, Concurrency: 4, Duration: 500 * time.Millisecond, Mix: mix,
				UserPrefix: spec.Name + "-" + mix.Name,
			})
			require.NoError(t, err)
			var out bytes.Buffer
			require.NoError(t, res.WriteText(&out))
			t.Log(out.String())
			assert.Greater(t, res.Total.Requests, uint64(0), spec.Name)
			assert.Zero(t, res.Total.Errors, "%s: %v", spec.Name, res.ErrorSamples)
			assert.Zero(t, res.Total.Mismatches, "%s: %v", spec.Name, res.ErrorSamples)
			assert.Equal(t, uint64(20), res.Logins.Requests)
			assert.Zero(t, res.Logins.Errors)
		}
	}
}

// TestCompare runs a short comparison end to end: the harness builds the
// apps, starts sessionmesh (3 nodes) and scs memstore behind the proxy,
// loads and profiles them, and writes the report.
func TestCompare(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the login servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "bench.md")
	o, err := parseFlags([]string{"-compare", "-front", "inprocess", "-targets", "mesh3,mesh3-b1,scs-mem", "-micro=false",
		"-mix", "read-heavy", "-duration", "1s", "-rounds", "2", "-warmup", "0", "-users", "20", "-concurrency", "4",
		"-profile", "mesh3", "-profile-duration", "1s", "-out", out}, &bytes.Buffer{})
	require.NoError(t, err)
	var log bytes.Buffer
	err = runCompare(ctx, o, &log)
	t.Log(log.String())
	require.NoError(t, err)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	md := string(b)
	assert.Contains(t, md, "| mesh3 | read-heavy |")
	assert.Contains(t, md, "| scs-mem | read-heavy |")
	assert.Contains(t, md, "### mesh3 under read-heavy")
	assert.Contains(t, md, "| area of code (own CPU time, flat) | share |")
	assert.Contains(t, md, "| HTTP server: read, route, handle, write a request |")
	assert.Contains(t, md, "HTTP mesh3: no lost increments, no stale reads, in every mix | 0 | 0 lost, 0 stale reads (0 errors)")
	assert.NotContains(t, md, "failed to start")
	assert.NotContains(t, md, ": failed:")
	assert.Contains(t, md, "| mesh3-b1 |") // skipped or run, depending on the login binary
}

// needFront returns nginx's and wrk's paths. Without them the test is
// skipped, except in CI (CI=true), where they are installed from Debian's
// packages as .ci/run installs chromium.
func needFront(t *testing.T) {
	t.Helper()
	missing := func() []string {
		var m []string
		for _, bin := range []string{"nginx", "wrk"} {
			if _, err := exec.LookPath(bin); err != nil {
				m = append(m, bin)
			}
		}
		return m
	}
	m := missing()
	if len(m) == 0 {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("needs %v for -front nginx (apt-get install -y nginx wrk; docs/bench.sh installs them)", m)
	}
	frontInstall.Do(func() {
		out, err := exec.Command("sh", "-c", "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "+strings.Join(m, " ")).CombinedOutput()
		if err != nil {
			t.Logf("apt-get: %v\n%s", err, out)
		}
	})
	require.Empty(t, missing(), "CI: could not install nginx and wrk with apt-get")
}

// frontInstall installs nginx and wrk once per test binary.
var frontInstall sync.Once

// TestCompareNginx runs a short comparison through nginx with wrk: logins
// through the front, wrk's script with its checks, the final counts, and
// the report's columns for them.
func TestCompareNginx(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the login servers, nginx and wrk")
	}
	needFront(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "bench.md")
	o, err := parseFlags([]string{"-compare", "-targets", "mesh3,cookie", "-micro=false",
		"-duration", "2s", "-rounds", "2", "-warmup", "1s", "-users", "100", "-wrk-connections", "16",
		"-profile", "", "-out", out}, &bytes.Buffer{})
	require.NoError(t, err)
	var log bytes.Buffer
	err = runCompare(ctx, o, &log)
	t.Log(log.String())
	require.NoError(t, err)
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	md := string(b)
	for _, k := range []string{"mesh3", "cookie"} {
		for _, m := range []string{"read-heavy", "write-heavy"} {
			assert.Regexp(t, `\| `+k+` \| `+m+` \| [1-9][0-9]* \|`, md)
		}
		assert.Contains(t, md, "HTTP "+k+": no lost increments, no stale reads, in every mix | 0 | 0 lost, 0 stale reads (0 errors) | met |")
		assert.Regexp(t, `\| `+k+` \| 200 \| 0 \|`, md) // 100 logins per mix, none failed
	}
	assert.Contains(t, md, "HTTP read-heavy requests/s, mesh3 / cookie")
	assert.Contains(t, md, "nginx: nginx version")
	assert.NotContains(t, md, ": failed:")
}

func TestParseWrkOut(t *testing.T) {
	w, err := parseWrkOut(strings.NewReader(`requests 1000
duration_us 2000000
errors 1 2 3 4 5
stale 6
unknown 7
abandoned 1
latency 100 3
latency 2000 1
user a 3 3 session=abc
user b 0 0 a=1; b=2
`))
	require.NoError(t, err)
	assert.Equal(t, uint64(1000), w.requests)
	assert.Equal(t, 2*time.Second, w.duration)
	assert.Equal(t, uint64(1+2+3+5), w.socket)
	assert.Equal(t, uint64(4), w.status)
	assert.Equal(t, uint64(6), w.stale)
	assert.Equal(t, uint64(4), w.latency.Count())
	assert.Equal(t, 2*time.Millisecond, w.latency.Max())
	assert.Equal(t, []wrkUser{{"a", 3, 3, "session=abc"}, {"b", 0, 0, "a=1; b=2"}}, w.users)
	r := w.result(loadgen.WriteHeavy)
	assert.Equal(t, uint64(1011), r.Total.Requests)
	assert.Equal(t, uint64(15), r.Total.Errors)
	assert.InDelta(t, 498, r.RequestsPerSecond(), 0.01) // (1000 - 4) / 2 s
	_, err = parseWrkOut(strings.NewReader("nothing\n"))
	assert.Error(t, err)

	conf := nginxConfig("127.0.0.1:1", []string{"127.0.0.1:2", "127.0.0.1:3"})
	assert.Contains(t, conf, "server 127.0.0.1:2 max_fails=0;")
	assert.Contains(t, conf, "listen 127.0.0.1:1;")
	ppid, ok := parsePPID("12 (a (b) c) S 34 12")
	assert.True(t, ok)
	assert.Equal(t, 34, ppid)
}

func TestCPUAccounting(t *testing.T) {
	d, err := parseProcStat("1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 70 0 0 20 0 12 0 100 1000 10")
	require.NoError(t, err)
	assert.Equal(t, 3200*time.Millisecond, d) // (250 + 70) ticks
	_, err = parseProcStat("garbage")
	assert.Error(t, err)

	busy, err := parseCPULine("cpu  100 5 50 1000 30 2 3 4 0 0")
	require.NoError(t, err)
	assert.Equal(t, 1640*time.Millisecond, busy) // 100+5+50+2+3+4 ticks
	_, err = parseCPULine("cpu0 1 2 3")
	assert.Error(t, err)

	t0 := time.Unix(100, 0)
	a := cpuSample{at: t0, servers: time.Second, self: 2 * time.Second, machine: 10 * time.Second, ok: true}
	b := cpuSample{at: t0.Add(2 * time.Second), servers: 2 * time.Second, self: 3 * time.Second, machine: 13 * time.Second, ok: true}
	u := b.since(a)
	assert.Equal(t, cpuUsage{wall: 2 * time.Second, servers: time.Second, client: time.Second, other: time.Second, ok: true}, u)
	assert.InDelta(t, 0.5, u.cores(u.servers), 1e-9)
	var sum cpuUsage
	sum.add(u)
	sum.add(u)
	assert.Equal(t, 4*time.Second, sum.wall)
	assert.True(t, sum.ok)
	sum.add(cpuUsage{wall: time.Second})
	assert.False(t, sum.ok)

	// This process's own reading works here.
	s := takeCPU([]int{os.Getpid()}, []int{os.Getpid()})
	assert.True(t, s.ok)
	assert.Greater(t, s.machine, time.Duration(0))
}

func TestLoadConfig_Front(t *testing.T) {
	r := &running{nodes: []*node{{url: "http://a"}, {url: "http://b"}}, proxySrv: &rrproxy.Server{URL: "http://proxy"}}
	c := &comparison{o: options{front: frontInProcess, users: 10, concurrency: 2}}
	cfg := c.loadConfig(r, loadgen.ReadHeavy, "p")
	assert.Equal(t, "http://proxy", cfg.BaseURL)
	assert.Empty(t, cfg.MoreURLs)
	c.o.front = frontClient
	cfg = c.loadConfig(r, loadgen.ReadHeavy, "p")
	assert.Empty(t, cfg.BaseURL)
	assert.Equal(t, []string{"http://a", "http://b"}, cfg.MoreURLs)
}
