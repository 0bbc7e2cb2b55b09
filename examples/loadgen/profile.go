package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/loadgen"
)

// profile is the CPU and allocation profile of a target's nodes under one
// mix, merged over the nodes.
type profile struct {
	err      error
	seconds  int
	nodes    int
	load     *loadgen.Result // the load while profiling
	cpuFiles []string
	cpuTop   string  // pprof -top: by own (flat) time
	cpuCum   string  // pprof -top -cum: by time including callees
	allocTop string  // pprof -top -sample_index=alloc_space
	shares   []share // flat CPU by area of code
	packages []share // flat CPU by Go package
	entries  []share // CPU including callees of the entry points below
}

// entryPoints are functions whose time including callees tells where a
// node's CPU goes, matched by the end of their name as pprof prints it
// (inlined middleware shows up under the caller's name).
var entryPoints = []struct{ name, suffix string }{
	{"HTTP server: read, route, handle, write a request", "net/http.(*conn).serve"},
	{"… the session middleware (load, handler, save)", "(*Manager).LoadAndSave.func1"},
	{"… … Store.Get", "replication.(*Store).Get"},
	{"… … Store.Save (replicated write, waiting for acks)", "replication.(*Store).Save"},
	{"… … Store.Touch", "replication.(*Store).Touch"},
	{"… … Store.Rename (login)", "replication.(*Store).Rename"},
	{"… JSON replies", "encoding/json.(*Encoder).Encode"},
	{"replication: inbound connections (read, apply, answer)", "replication.(*TCPTransport).serveConn"},
	{"replication: outbound connections, reading answers", "replication.(*tcpConn).readLoop"},
	{"replication: writers (frames to the kernel)", "replication.(*tcpConn).writeLoop"},
	{"replication: applying a peer's write", "replication.(*Store).handle"},
	{"memberlist: UDP gossip", "memberlist.(*NetTransport).udpListen"},
	{"memberlist: packet handling", "memberlist.(*Memberlist).packetHandler"},
	{"garbage collector (background marking)", "runtime.gcBgMarkWorker"},
	{"scheduler: finding work, idling", "runtime.findRunnable"},
}

// share is a fraction of the CPU samples.
type share struct {
	name string
	pct  float64
}

// download fetches url into file.
func download(ctx context.Context, client *http.Client, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return f.Close()
}

// profile runs mix m against r for the profile duration (plus a margin),
// while it takes a CPU and an allocation profile of every node of r that
// serves pprof, and summarises them with go tool pprof.
func (c *comparison) profile(ctx context.Context, t *target, r *running, m loadgen.Mix, dir string) (*profile, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	secs := max(1, int(c.o.profileDuration/time.Second))
	type fetch struct {
		url, file string
		err       error
	}
	var cpu, allocs []*fetch
	for _, n := range r.nodes {
		if n.pprofURL == "" {
			continue
		}
		base := filepath.Join(dir, fmt.Sprintf("%s-%s-%s", t.key, m.Name, n.name))
		cpu = append(cpu, &fetch{url: fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", n.pprofURL, secs), file: base + ".cpu.pb.gz"})
		allocs = append(allocs, &fetch{url: fmt.Sprintf("%s/debug/pprof/allocs?seconds=%d", n.pprofURL, secs), file: base + ".allocs.pb.gz"})
	}
	if len(cpu) == 0 {
		return nil, errNoProfile
	}
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: time.Duration(secs)*time.Second + 30*time.Second}

	var wg sync.WaitGroup
	cfg := c.loadConfig(r, m, "prof-"+t.key+"-"+m.Name)
	cfg.Warmup = 0
	cfg.Duration = time.Duration(secs)*time.Second + 2*time.Second
	cfg.OnMix = func(time.Time) {
		// The profiles start with the mix, after the logins.
		for _, f := range append(slices.Clone(cpu), allocs...) {
			wg.Go(func() { f.err = download(ctx, client, f.url, f.file) })
		}
	}
	load, err := loadgen.Run(ctx, cfg)
	wg.Wait() // after Run: the downloads end by themselves after secs
	if err != nil {
		return nil, err
	}
	p := &profile{seconds: secs, nodes: len(cpu), load: load}
	var allocFiles []string
	var errs []error
	for _, f := range cpu {
		if f.err != nil {
			errs = append(errs, f.err)
			continue
		}
		p.cpuFiles = append(p.cpuFiles, f.file)
	}
	for _, f := range allocs {
		if f.err != nil {
			errs = append(errs, f.err)
			continue
		}
		allocFiles = append(allocFiles, f.file)
	}
	if len(p.cpuFiles) == 0 {
		return nil, errors.Join(errs...)
	}
	if p.cpuTop, err = pprofTop(ctx, 20, false, "", p.cpuFiles); err != nil {
		return nil, err
	}
	if p.cpuCum, err = pprofTop(ctx, 30, true, "", p.cpuFiles); err != nil {
		return nil, err
	}
	all, err := pprofTop(ctx, 1000000, false, "", p.cpuFiles)
	if err != nil {
		return nil, err
	}
	p.packages, p.shares = flatShares(all)
	allCum, err := pprofTop(ctx, 1000000, true, "", p.cpuFiles)
	if err != nil {
		return nil, err
	}
	p.entries = cumShares(allCum)
	if len(allocFiles) > 0 {
		if p.allocTop, err = pprofTop(ctx, 15, false, "alloc_space", allocFiles); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// pprofTop runs go tool pprof -top on files (merged) and returns the table
// with the line that says how much of the total it shows.
func pprofTop(ctx context.Context, nodes int, cum bool, sampleIndex string, files []string) (string, error) {
	args := []string{"tool", "pprof", "-top", "-nodecount=" + strconv.Itoa(nodes)}
	if cum {
		args = append(args, "-cum")
	}
	if sampleIndex != "" {
		args = append(args, "-sample_index="+sampleIndex)
	}
	args = append(args, files...)
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	var kept []string
	keep := false
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Showing nodes") || strings.HasPrefix(line, "Duration:") {
			keep = true
		}
		if keep {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n"), nil
}

// topRow is one row of pprof -top.
type topRow struct {
	flatPct, cumPct float64
	fn              string
}

// cumShares returns the share of the CPU spent in each entry point with
// its callees, from a full pprof -top table; entry points that do not
// appear are left out.
func cumShares(table string) []share {
	rows := parseTop(table)
	var out []share
	for _, e := range entryPoints {
		best := -1.0
		for _, r := range rows {
			if strings.HasSuffix(r.fn, e.suffix) && r.cumPct > best {
				best = r.cumPct
			}
		}
		if best >= 0 {
			out = append(out, share{e.name, best})
		}
	}
	return out
}

// parseTop returns the rows of a pprof -top table.
func parseTop(table string) []topRow {
	var rows []topRow
	sc := bufio.NewScanner(strings.NewReader(table))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") {
			continue
		}
		pct, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		cum, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		rows = append(rows, topRow{flatPct: pct, cumPct: cum, fn: f[5]})
	}
	return rows
}

// packageOf returns the import path of the package of a function name as
// pprof prints it: "github.com/a/b.(*T).M" -> "github.com/a/b".
func packageOf(fn string) string {
	slash := strings.LastIndex(fn, "/")
	dot := strings.Index(fn[slash+1:], ".")
	if dot < 0 {
		return fn
	}
	return fn[:slash+1+dot]
}

// areas groups packages into the areas of code a reader cares about, in
// order: the first match names the area.
var areas = []struct {
	name     string
	prefixes []string
}{
	{"sessionmesh (replication, httpsession, cluster, internal)", []string{"github.com/sessionmesh/"}},
	{"msgpack codec", []string{"github.com/vmihailenco/"}},
	{"memberlist (gossip)", []string{"github.com/hashicorp/", "github.com/armon/", "github.com/miekg/"}},
	{"scs and Redis client", []string{"github.com/alexedwards/", "github.com/gomodule/"}},
	{"net/http (server, client, proxy)", []string{"net/http", "net/textproto", "mime", "bufio", "net/url"}},
	{"encoding/json", []string{"encoding/json"}},
	{"network system calls and poller", []string{"syscall", "internal/poll", "net", "internal/runtime/syscall", "os"}},
	{"crypto", []string{"crypto/", "golang.org/x/crypto/", "vendor/golang.org/x/crypto/"}},
	{"Go runtime (GC, allocation, scheduler, maps)", []string{"runtime", "internal/runtime/", "sync", "internal/sync", "reflect", "unique", "weak"}},
}

// areaOf returns the area of package pkg.
func areaOf(pkg string) string {
	for _, a := range areas {
		for _, p := range a.prefixes {
			if pkg == p || strings.HasPrefix(pkg, p) && (strings.HasSuffix(p, "/") || strings.HasPrefix(pkg[len(p):], "/")) {
				return a.name
			}
		}
	}
	return "other"
}

// flatShares sums the flat CPU of a full pprof -top table by package and by
// area, largest first.
func flatShares(table string) (packages, byArea []share) {
	pk, ar := map[string]float64{}, map[string]float64{}
	for _, r := range parseTop(table) {
		pkg := packageOf(r.fn)
		pk[pkg] += r.flatPct
		ar[areaOf(pkg)] += r.flatPct
	}
	return sortShares(pk), sortShares(ar)
}

func sortShares(m map[string]float64) []share {
	out := make([]share, 0, len(m))
	for k, v := range m {
		if v >= 0.05 { // what rounds to 0.0% is noise
			out = append(out, share{k, v})
		}
	}
	slices.SortFunc(out, func(a, b share) int {
		return cmp.Or(cmp.Compare(b.pct, a.pct), cmp.Compare(a.name, b.name))
	})
	return out
}
