package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
	"github.com/sessionmesh/sessionmesh/examples/internal/rrproxy"
)

// app is the server program a target runs.
type app int

const (
	appMesh      app = iota // examples/login: sessionmesh
	appSCSRedis             // examples/scslogin -store redis, plus a redis-server
	appSCSMemory            // examples/scslogin -store memory
	appSCSNATS              // examples/scslogin -store nats: an embedded NATS JetStream cluster
	appCookie               // examples/scslogin -store cookie: the session in the cookie
)

// cookieSecretEnv is the environment variable examples/scslogin reads its
// -cookie-secret from.
const cookieSecretEnv = "SCSLOGIN_COOKIE_SECRET"

// scsLoginPackage is the import path of the scs version of the login app.
const scsLoginPackage = "github.com/sessionmesh/sessionmesh/examples/scslogin"

// secretEnv is the environment variable examples/login reads its -secret
// from when it has that flag.
const secretEnv = "SESSIONMESH_SECRET"

// target is one system under test: some server processes behind the
// round-robin proxy.
type target struct {
	key   string   // names the target in -targets
	name  string   // names it in reports
	app   app      // the program of its nodes
	nodes int      // how many application processes
	args  []string // extra flags of every node
	needs []string // flags the program must have, or the target is skipped
}

// allTargets returns the comparison's targets, in the order they run. To
// add one, append it here; a target whose program lacks a flag it needs is
// skipped with a note instead of failing.
func allTargets() []*target {
	return []*target{
		{key: "mesh3", name: "sessionmesh, 3 nodes, all-to-all, sync", app: appMesh, nodes: 3},
		{key: "mesh3-b1", name: "sessionmesh, 3 nodes, backups 1, sync", app: appMesh, nodes: 3,
			args: []string{"-backups", "1"}, needs: []string{"backups"}},
		{key: "mesh5-b1", name: "sessionmesh, 5 nodes, backups 1, sync", app: appMesh, nodes: 5,
			args: []string{"-backups", "1"}, needs: []string{"backups"}},
		{key: "scs-redis", name: "scs + Redis (redisstore), 3 nodes", app: appSCSRedis, nodes: 3},
		{key: "nats3", name: "scs on an embedded NATS JetStream cluster (KeyValue, R3, memory storage, reads from the leader), 3 nodes", app: appSCSNATS, nodes: 3},
		{key: "cookie", name: "stateless encrypted cookies (gorilla/securecookie, no server state, logout not final), 3 nodes", app: appCookie, nodes: 3},
		{key: "scs-mem", name: "scs memstore, 1 node (no replication)", app: appSCSMemory, nodes: 1},
	}
}

// Keys of the reference targets the ratios are computed against.
const (
	refRedis  = "scs-redis"
	refCookie = "cookie"
	refNATS   = "nats3"
	refMemory = "scs-mem"
	primary   = "mesh3" // the sessionmesh target the HTTP targets are checked on
)

// selectTargets returns the targets named by keys (all when empty).
func selectTargets(keys []string) ([]*target, error) {
	all := allTargets()
	if len(keys) == 0 {
		return all, nil
	}
	var out []*target
	for _, k := range keys {
		found := false
		for _, t := range all {
			if t.key == k {
				out = append(out, t)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown target %q (see -compare -list)", k)
		}
	}
	return out, nil
}

// flagLine matches a flag in the usage text of the flag package.
var flagLine = regexp.MustCompile(`^\s+-([A-Za-z0-9][A-Za-z0-9_.-]*)`)

// parseFlagNames returns the flags listed in a usage text of the flag
// package.
func parseFlagNames(usage string) map[string]bool {
	names := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(usage))
	for sc.Scan() {
		if m := flagLine.FindStringSubmatch(sc.Text()); m != nil {
			names[m[1]] = true
		}
	}
	return names
}

// binaryFlags runs bin -h and returns the flags it lists.
func binaryFlags(ctx context.Context, bin string) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-h")
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // -h exits 0 or 2 depending on the flag package's mode
	names := parseFlagNames(out.String())
	if len(names) == 0 {
		return nil, fmt.Errorf("%s -h listed no flags: %q", bin, out.String())
	}
	return names, nil
}

// node is one running application process of a target.
type node struct {
	name     string
	url      string // base URL of its HTTP server
	pprofURL string // base URL of its pprof server, or ""
	proc     *procs.Process
}

// running is a started target: its processes and the front.
type running struct {
	group    *procs.Group
	nodes    []*node
	proxy    *rrproxy.Proxy  // -front inprocess
	proxySrv *rrproxy.Server // -front inprocess
	nginx    *procs.Process  // -front nginx
	nginxURL string
}

// URL returns the base URL of the front.
func (r *running) URL() string {
	if r.nginx != nil {
		return r.nginxURL
	}
	return r.proxySrv.URL
}

// pids returns the process IDs of the target's processes (redis-server
// included, the front not).
func (r *running) pids() []int {
	var out []int
	for _, p := range r.group.Processes() {
		if p != r.nginx {
			out = append(out, p.Pid())
		}
	}
	return out
}

// frontPIDs returns the process IDs of nginx and its workers, if nginx is
// the front.
func (r *running) frontPIDs() []int {
	if r.nginx == nil {
		return nil
	}
	return append([]int{r.nginx.Pid()}, childPIDs(r.nginx.Pid())...)
}

// stop stops the proxy, then the processes (SIGTERM, SIGKILL after 5s).
func (r *running) stop() {
	if r.proxySrv != nil {
		_ = r.proxySrv.Close()
	}
	if r.proxy != nil {
		_ = r.proxy.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.group.Shutdown(ctx) // an error means some had to be killed: fine here
}

// startTarget starts t's processes in a group of their own (logs in
// logDir), waits until they are healthy and starts the proxy in front of
// them. On error everything started is stopped again.
func (c *comparison) startTarget(ctx context.Context, t *target, logDir string, profiled bool) (r *running, err error) {
	started := &running{group: procs.NewGroup(ctx, logDir)}
	defer func() {
		if err != nil {
			started.stop() // not r: a failing return has set it to nil
		}
	}()
	r = started
	// One call, so that all ports are distinct; gossip needs UDP too.
	addrs, err := procs.FreeAddrs("127.0.0.1", 3*t.nodes+1, procs.TCPAndUDP)
	if err != nil {
		return nil, err
	}
	httpAddrs, gossipAddrs, pprofAddrs, extra := addrs[:t.nodes], addrs[t.nodes:2*t.nodes], addrs[2*t.nodes:3*t.nodes], addrs[3*t.nodes]
	idle := c.o.idleTimeout.String()

	var redisAddr string
	if t.app == appSCSRedis {
		redisAddr = extra
		if err := c.startRedis(ctx, r.group, redisAddr); err != nil {
			return nil, err
		}
	}
	for i := range t.nodes {
		n := &node{url: "http://" + httpAddrs[i]}
		var spec procs.Spec
		switch t.app {
		case appMesh:
			n.name = "n" + strconv.Itoa(i+1)
			args := []string{"-name", n.name, "-http", httpAddrs[i], "-gossip", gossipAddrs[i],
				"-seeds", strings.Join(gossipAddrs, ","), "-idle-timeout", idle,
				"-throttle-addr", "0"} // every simulated user logs in from this one machine

			if profiled {
				args = append(args, "-pprof", pprofAddrs[i])
				n.pprofURL = "http://" + pprofAddrs[i]
			}
			args = append(args, t.args...)
			args = append(args, c.o.nodeArgs...)
			spec = procs.Spec{Name: n.name, Path: c.meshBin, Args: args}
			if c.meshFlags["secret"] {
				// Where examples/login takes its secret by default: the
				// environment keeps it out of ps.
				spec.Env = []string{secretEnv + "=" + c.secret}
			}
		case appSCSRedis, appSCSMemory, appSCSNATS, appCookie:
			n.name = "s" + strconv.Itoa(i+1)
			args := []string{"-name", n.name, "-http", httpAddrs[i], "-idle-timeout", idle}
			switch t.app {
			case appSCSRedis:
				args = append(args, "-store", "redis", "-redis", redisAddr, "-redis-pool", strconv.Itoa(2*max(c.o.concurrency, c.o.wrkConns)))
			case appSCSNATS: // the free ports meant for gossip serve the NATS routes
				args = append(args, "-store", "nats", "-nats-cluster", gossipAddrs[i],
					"-nats-routes", strings.Join(gossipAddrs, ","), "-nats-replicas", strconv.Itoa(t.nodes))
			case appCookie:
				args = append(args, "-store", "cookie")
				spec.Env = []string{cookieSecretEnv + "=" + c.secret}
			default:
				args = append(args, "-store", "memory")
			}
			if profiled {
				args = append(args, "-pprof", pprofAddrs[i])
				n.pprofURL = "http://" + pprofAddrs[i]
			}
			args = append(args, t.args...)
			spec.Name, spec.Path, spec.Args = n.name, c.scsBin, args
		}
		spec.HealthURL = n.url + "/healthz"
		if n.proc, err = r.group.Start(spec); err != nil {
			return nil, err
		}
		r.nodes = append(r.nodes, n)
	}
	hctx, cancel := context.WithTimeout(ctx, c.o.readyTimeout)
	defer cancel()
	errs := make([]error, len(r.nodes))
	var wg sync.WaitGroup
	for i, n := range r.nodes {
		wg.Go(func() {
			errs[i] = n.proc.WaitHealthy(hctx)
			if errs[i] == nil && t.app == appMesh {
				errs[i] = waitMembers(hctx, n.url+"/healthz", t.nodes)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var urls, hosts []string
	for _, n := range r.nodes {
		urls = append(urls, n.url)
		hosts = append(hosts, strings.TrimPrefix(n.url, "http://"))
	}
	if c.o.front == frontNginx {
		r.nginx, r.nginxURL, err = startNginx(hctx, r.group, c.nginxBin, filepath.Join(logDir, "nginx"), hosts)
		return r, err
	}
	if r.proxy, err = rrproxy.New(rrproxy.Config{Backends: urls}); err != nil {
		return nil, err
	}
	if r.proxySrv, err = rrproxy.ListenAndServe("127.0.0.1:0", r.proxy); err != nil {
		return nil, err
	}
	return r, nil
}

// waitMembers polls a sessionmesh node's /healthz until it lists n alive
// members, so that measuring starts with every node replicating to every
// other.
func waitMembers(ctx context.Context, url string, n int) error {
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var last string
	return poll(ctx, func() (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer resp.Body.Close()
		var h struct {
			Members []string `json:"members"`
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err := json.Unmarshal(body, &h); err != nil {
			last = fmt.Sprintf("bad /healthz body %q", body)
			return false, nil
		}
		last = fmt.Sprintf("members %v", h.Members)
		return resp.StatusCode == http.StatusOK && len(h.Members) >= n, nil
	}, func() string { return fmt.Sprintf("%s does not list %d members (last: %s)", url, n, last) })
}

// poll calls check, backing off from 10ms to 200ms, until it returns true
// or an error, or ctx ends (the error then quotes why()).
func poll(ctx context.Context, check func() (bool, error), why func() string) error {
	interval := 10 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", why(), ctx.Err())
		case <-timer.C:
		}
		done, err := check()
		if err != nil || done {
			return err
		}
		timer.Reset(interval)
		interval = min(2*interval, 200*time.Millisecond)
	}
}

// startRedis starts redis-server on addr, in memory only (no RDB
// snapshots, no AOF), and waits until it answers PING.
func (c *comparison) startRedis(ctx context.Context, g *procs.Group, addr string) error {
	host, port, _ := net.SplitHostPort(addr)
	p, err := g.Start(procs.Spec{Name: "redis", Path: c.redisBin, Args: []string{
		"--bind", host, "--port", port, "--save", "", "--appendonly", "no",
		"--protected-mode", "yes", "--daemonize", "no", "--logfile", "",
	}})
	if err != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, c.o.readyTimeout)
	defer cancel()
	var last string
	return poll(hctx, func() (bool, error) {
		if !p.Running() {
			return false, fmt.Errorf("redis-server exited: %v\n%s", p.ExitError(), p.LogTail(10))
		}
		ok, err := redisPing(hctx, addr)
		if err != nil {
			last = err.Error()
		}
		return ok, nil
	}, func() string { return "redis-server on " + addr + " does not answer PING (last: " + last + ")" })
}

// redisPing sends PING to the Redis server at addr and reports whether it
// answered PONG.
func redisPing(ctx context.Context, addr string) (bool, error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false, err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return false, err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return false, fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return true, nil
}
