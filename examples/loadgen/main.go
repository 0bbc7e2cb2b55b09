// Command loadgen is the load generator and benchmark harness of
// sessionmesh. It drives the HTTP contract of the login example
// (examples/login, and examples/scslogin, the same application on
// alexedwards/scs) the way browsers do: every simulated user has a cookie
// jar of its own, logs in, then sends a mix of GET /me (session reads) and
// POST /visit (session writes), one request at a time. It prints
// requests/s, latency percentiles (p50/p90/p99/max), errors and
// mismatches (answers that forgot an earlier write of the same user).
//
// # Against a running server
//
//	go run ./examples/loadgen -url http://127.0.0.1:8080 -mix read-heavy -duration 10s
//
// -mix is read-heavy (90% GET /me, 10% POST /visit), write-heavy (every
// request a POST /visit), writes=N (N% writes), or a comma-separated list
// run one after the other. -users (default 1000) and -concurrency (default
// 32) set the number of users and of requests in flight; -warmup runs the
// mix before measuring.
//
// # The comparison
//
//	go run ./examples/loadgen -compare -out docs/benchmarks.md
//
// (or docs/bench.sh, which first installs redis-server, nginx and wrk
// from Debian's packages if they are missing) runs, in one invocation and
// on this machine:
//
//  1. the micro-benchmarks of ./replication and ./httpsession (go test
//     -bench), whose baselines are measured in the same run: a 64-shard map
//     read next to a local session read, a raw loopback TCP request/ack
//     next to a synchronous replicated write;
//  2. the same HTTP workload, both mixes, against each target: sessionmesh
//     with 3 examples/login nodes (all-to-all, sync), 3 and 5 nodes with
//     -backups 1, scs with its redisstore on a local redis-server started
//     in memory only, scs on a NATS JetStream cluster embedded in its 3
//     app processes (KeyValue, R3, memory storage), stateless encrypted
//     cookies (3 processes, no server state), and scs with its memstore
//     (1 process: no replication, the upper bound). By default (-front
//     nginx) every target sits behind its own stock nginx round robin (a
//     child process with a generated configuration, not sticky) and wrk
//     (-wrk-threads 2, -wrk-connections 64, the Lua script bench.lua)
//     loads it: the harness logs -users users in through the front (their
//     login latency is reported on its own), the script sends each user's
//     requests one at a time and counts stale reads, and after each mix
//     the harness reads every user's final count and counts lost
//     increments. -front inprocess puts examples/internal/rrproxy in this
//     process in front instead and loads it with the Go client
//     (examples/internal/loadgen); -front client lets that client rotate
//     over the nodes itself. All targets run at once and take turns: each
//     mix runs in -rounds rounds, each giving every target
//     -duration/rounds, so that load from elsewhere on a shared machine
//     spreads over all of them;
//  3. a CPU and allocation profile of the sessionmesh nodes under each mix
//     (in a separate, unmeasured pass, with the Go client through the
//     front), which the report links from every missed target.
//
// It prints a table of requests/s, p50 and p99, errors, stale reads and
// lost increments with the ratios to scs+Redis and to stateless cookies,
// the login latency, and the CPU time the servers spent per request (from
// /proc, Linux) with the share of the machine taken by the servers, by the
// front with the load generator and by everything else; it checks the
// targets of the performance issue, and with -out writes all of it, the
// exact command, the date, the machine and the versions of nginx, wrk,
// redis-server and the embedded nats-server to a Markdown file (keeping
// what follows its hand-written-notes marker). -targets picks targets by
// key (loadgen -compare -list shows them). Everything it starts (servers,
// redis-server, nginx) is stopped when it ends, also on Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/loadgen"
)

// options are the command-line flags.
type options struct {
	// One run.
	url         string
	mixes       []loadgen.Mix
	users       int
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration

	// The comparison.
	compare         bool
	list            bool
	targets         []string
	out             string
	micro           bool
	microBenchtime  string
	profile         []string
	profileDuration time.Duration
	idleTimeout     time.Duration
	redisServer     string
	nodeArgs        []string
	secret          string
	keep            bool
	readyTimeout    time.Duration
	rounds          int
	front           string
	nginxBin        string
	wrkBin          string
	wrkThreads      int
	wrkConns        int

	args []string // the command line, for the report
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.compare || o.list {
		err = runCompare(ctx, o, os.Stdout)
	} else {
		err = runOnce(ctx, o, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{args: args}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mixes, targets, profile, nodeArgs string
	fs.StringVar(&o.url, "url", "", "base URL of the application (or its load balancer) to load; not with -compare")
	fs.StringVar(&mixes, "mix", "", `comma-separated mixes: read-heavy (90% GET /me, 10% POST /visit), write-heavy (100% POST /visit), writes=N (default: read-heavy; both with -compare)`)
	fs.IntVar(&o.users, "users", 1000, "simulated users, each with its own cookie jar (at least -concurrency)")
	fs.IntVar(&o.concurrency, "concurrency", 32, "requests in flight")
	fs.DurationVar(&o.duration, "duration", -1, "measured time per mix (default 10s; 15s per target and mix with -compare)")
	fs.DurationVar(&o.warmup, "warmup", -1, "time each mix runs before measuring (default 0; with -compare 1s, in every round)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "timeout of one request")

	fs.BoolVar(&o.compare, "compare", false, "run the comparison: micro-benchmarks, then every target with every mix behind the same proxy")
	fs.BoolVar(&o.list, "list", false, "with -compare: list the targets and exit")
	fs.StringVar(&targets, "targets", "", "with -compare: comma-separated target keys (default: all; see -list)")
	fs.StringVar(&o.out, "out", "", "with -compare: write the report as Markdown to this file (e.g. docs/benchmarks.md)")
	fs.BoolVar(&o.micro, "micro", true, "with -compare: run the go test micro-benchmarks")
	fs.StringVar(&o.microBenchtime, "micro-benchtime", "1s", "with -compare: -benchtime of the micro-benchmarks")
	fs.StringVar(&profile, "profile", "mesh3,mesh3-b1,mesh5-b1", "with -compare: comma-separated keys of sessionmesh targets to profile under each mix (empty: none)")
	fs.DurationVar(&o.profileDuration, "profile-duration", 10*time.Second, "with -compare: length of each CPU profile")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 30*time.Minute, "with -compare: -idle-timeout of every application (examples/login's default; 0: none)")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "with -compare: the redis-server executable (the scs+Redis target is skipped if missing)")
	fs.StringVar(&nodeArgs, "node-args", "", "with -compare: extra flags for every sessionmesh node, e.g. \"-log-level warn\"")
	fs.StringVar(&o.secret, "secret", "", "with -compare: cluster secret given to the sessionmesh nodes (in $SESSIONMESH_SECRET) when they have a -secret flag (default: 32 random bytes in hex)")
	fs.BoolVar(&o.keep, "keep", false, "with -compare: keep the logs and profiles directory")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", 60*time.Second, "with -compare: how long a target may take to become healthy")
	fs.StringVar(&o.front, "front", frontNginx, `with -compare: the load balancer and load generator: "nginx" (stock nginx round robin in a process of its own, loaded by wrk with -wrk-threads and -wrk-connections), "inprocess" (examples/internal/rrproxy in this process, loaded by this program's Go client with -concurrency) or "client" (the Go client rotates the requests over the nodes itself: no proxy hop)`)
	fs.StringVar(&o.nginxBin, "nginx", "nginx", "with -compare -front nginx: the nginx executable")
	fs.StringVar(&o.wrkBin, "wrk", "wrk", "with -compare -front nginx: the wrk executable")
	fs.IntVar(&o.wrkThreads, "wrk-threads", 2, "with -front nginx: wrk's -t")
	fs.IntVar(&o.wrkConns, "wrk-connections", 64, "with -front nginx: wrk's -c, the requests in flight")
	fs.IntVar(&o.rounds, "rounds", 5, "with -compare: each mix runs in this many rounds, each giving every target -duration/rounds in turn")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if mixes == "" {
		mixes = "read-heavy"
		if o.compare {
			mixes = "read-heavy,write-heavy"
		}
	}
	for _, s := range splitList(mixes) {
		m, err := loadgen.ParseMix(s)
		if err != nil {
			return o, err
		}
		o.mixes = append(o.mixes, m)
	}
	if o.duration == -1 { // not given
		o.duration = 10 * time.Second
		if o.compare {
			o.duration = 15 * time.Second
		}
	}
	if o.warmup == -1 {
		o.warmup = 0
		if o.compare {
			o.warmup = time.Second
		}
	}
	o.targets = splitList(targets)
	o.profile = splitList(profile)
	o.nodeArgs = strings.Fields(nodeArgs)
	switch {
	case o.compare && o.url != "":
		return o, errors.New("-url and -compare exclude each other")
	case !o.compare && !o.list && o.url == "":
		return o, errors.New("give -url (a server to load) or -compare (see -h)")
	case o.front != frontNginx && o.front != frontInProcess && o.front != frontClient:
		return o, fmt.Errorf(`-front must be %q, %q or %q, not %q`, frontNginx, frontInProcess, frontClient, o.front)
	case o.front == frontNginx && (o.wrkThreads < 1 || o.wrkConns < o.wrkThreads || o.users < o.wrkConns):
		return o, fmt.Errorf("-wrk-threads %d, -wrk-connections %d and -users %d must grow in that order: a user waits for each response", o.wrkThreads, o.wrkConns, o.users)
	case o.users < o.concurrency:
		return o, fmt.Errorf("-users %d must be at least -concurrency %d: a user waits for each response", o.users, o.concurrency)
	case o.concurrency < 1 || o.duration <= 0 || o.warmup < 0 || o.timeout <= 0 || o.rounds < 1:
		return o, errors.New("-concurrency, -duration, -timeout and -rounds must be positive")
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// runOnce runs each mix against o.url and prints the results.
func runOnce(ctx context.Context, o options, out io.Writer) error {
	for i, m := range o.mixes {
		res, err := loadgen.Run(ctx, loadgen.Config{
			BaseURL:     o.url,
			Users:       o.users,
			Concurrency: o.concurrency,
			Duration:    o.duration,
			Warmup:      o.warmup,
			Mix:         m,
			Timeout:     o.timeout,
			UserPrefix:  fmt.Sprintf("lg%d-%d", time.Now().UnixNano()%1e6, i),
		})
		if res != nil && res.Elapsed > 0 {
			if werr := res.WriteText(out); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}
