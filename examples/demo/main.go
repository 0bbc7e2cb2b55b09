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
)

// config holds the command-line flags.
type config struct {
	scenario       string
	nodes          int
	users          int
	visits         int
	concurrency    int
	kill           string
	keep           bool
	nodeArgs       []string
	bin            string
	race           bool
	host           string
	proxyAddr      string
	logDir         string
	timeout        time.Duration
	readyTimeout   time.Duration
	requestTimeout time.Duration
	verbose        bool
	noSecret       bool
	previous       string

	snapshotInterval time.Duration // fleet-restart: the nodes' -snapshot-interval
}

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func mainExit(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "demo:", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl-C a second one ends the demo at once (the
	// children still die with it: they get SIGKILL when their parent dies).
	context.AfterFunc(ctx, stop)

	d := newDemo(cfg, stdout)
	err = d.run(ctx)
	switch {
	case err != nil && ctx.Err() != nil:
		d.printf("interrupted: every process the demo started has been ended")
		return exitInterrupted
	case err != nil: // run has reported it
		return exitFailed
	case ctx.Err() != nil: // Ctrl-C ends -keep
		d.printf("stopped: every process the demo started has been ended")
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var nodeArgs string
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./examples/demo [flags]")
		fmt.Fprintln(stderr, "Starts login servers behind a round-robin proxy, logs users in, SIGKILLs one server and checks nobody was logged out.")
		fmt.Fprintln(stderr, "Scenarios (-scenario):")
		fmt.Fprintln(stderr, "  kill     3 nodes, every node holds every session: SIGKILL one, check every user, restart it (the default)")
		fmt.Fprintln(stderr, "  backups  5 nodes with -backups 1: SIGKILL one, wait until every survivor reports fully replicated,")
		fmt.Fprintln(stderr, "           SIGKILL another (the node after -kill), check every user through the proxy and on each survivor")
		fmt.Fprintln(stderr, "  rolling  5 nodes with -backups 0: graceful rolling restart of every node (SIGTERM, restart, wait until")
		fmt.Fprintln(stderr, "           healthy and fully replicated) under a background load of visits; no acknowledged visit may be lost")
		fmt.Fprintln(stderr, "  upgrade  3 nodes of the previous release (-previous) with -backups 0, rolled to this build and back")
		fmt.Fprintln(stderr, "           under a background load of visits; no logout, no lost visit and no failed request")
		fmt.Fprintln(stderr, "  fleet-restart  3 nodes with -snapshot-dir: some users log out, SIGTERM to every node at once (each exits")
		fmt.Fprintln(stderr, "           within 3s), restart all, check every session and logout; visit, wait a snapshot interval,")
		fmt.Fprintln(stderr, "           SIGKILL every node at once, restart all, check again")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.scenario, "scenario", scenarioKill, "kill, backups, rolling, upgrade or fleet-restart (see above)")
	fs.IntVar(&c.nodes, "nodes", 3, "number of login servers (at least 2; default 5 for -scenario backups and rolling)")
	fs.IntVar(&c.users, "users", 300, "number of users to log in")
	fs.IntVar(&c.visits, "visits", 5, "visits per user before the kill (or the rolling restart)")
	fs.IntVar(&c.concurrency, "concurrency", 32, "users served at the same time (rolling: also the users visiting during the restart)")
	fs.StringVar(&c.kill, "kill", "", "name of the node to SIGKILL (default: the second, n2; backups: the first of two, the second is the next node)")
	fs.BoolVar(&c.keep, "keep", false, "leave the cluster and proxy running after the scenario, until Ctrl-C")
	fs.StringVar(&nodeArgs, "node-args", "", `extra flags for every login server, split like a shell would (e.g. "-log-level debug")`)
	fs.StringVar(&c.bin, "bin", "", "run this login binary instead of building examples/login")
	fs.BoolVar(&c.race, "race", false, "build examples/login with the race detector")
	fs.StringVar(&c.host, "host", "127.0.0.1", "IP address the servers listen on")
	fs.StringVar(&c.proxyAddr, "proxy", "127.0.0.1:0", "listen address of the round-robin proxy (port 0: any free port)")
	fs.StringVar(&c.logDir, "logs", "", "directory for the node logs (default: a new temporary directory)")
	fs.DurationVar(&c.timeout, "timeout", 3*time.Minute, "give up on the whole scenario after this long")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 30*time.Second, "how long a node may take to answer /healthz with 200 (backups, rolling: also the cluster to be fully replicated again)")
	fs.DurationVar(&c.requestTimeout, "request-timeout", 10*time.Second, "timeout of one HTTP request")
	fs.BoolVar(&c.verbose, "v", false, "print every failed check as it happens")
	fs.DurationVar(&c.snapshotInterval, "snapshot-interval", time.Second, "fleet-restart: how often each node writes its snapshot")
	fs.StringVar(&c.previous, "previous", previousRelease, "upgrade: git revision of the previous release, built from this repository's history")
	fs.BoolVar(&c.noSecret, "no-secret", false, "run the nodes without a cluster secret (clear-text cluster traffic); by default each run makes a random one")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q (flags go before them? see -h)", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	if c.nodeArgs, err = splitArgs(nodeArgs); err != nil {
		return c, fmt.Errorf("-node-args: %w", err)
	}
	// The scenario's node flags go first, so that -node-args can override
	// them (the last occurrence of a flag wins).
	switch c.scenario {
	case scenarioKill:
	case scenarioBackups:
		c.nodeArgs = append([]string{"-backups", "1"}, c.nodeArgs...)
	case scenarioRolling, scenarioUpgrade:
		c.nodeArgs = append([]string{"-backups", "0"}, c.nodeArgs...)
		if set["kill"] {
			return c, fmt.Errorf("-kill: the %s scenario kills no node (it restarts every node gracefully)", c.scenario)
		}
	case scenarioFleetRestart:
		c.nodeArgs = append([]string{"-backups", "1"}, c.nodeArgs...)
		if c.snapshotInterval <= 0 {
			return c, errors.New("-snapshot-interval must be positive")
		}
	default:
		return c, fmt.Errorf("-scenario %q: want %s, %s, %s, %s or %s", c.scenario, scenarioKill, scenarioBackups, scenarioRolling, scenarioUpgrade, scenarioFleetRestart)
	}
	if (c.scenario == scenarioBackups || c.scenario == scenarioRolling) && !set["nodes"] {
		c.nodes = 5
	}
	switch {
	case c.scenario == scenarioBackups && c.nodes < 3:
		return c, errors.New("-nodes must be at least 3 for -scenario backups: two are killed and another must keep the sessions")
	case c.nodes < 2:
		return c, errors.New("-nodes must be at least 2: one is killed and another must keep the sessions")
	case c.users < 1:
		return c, errors.New("-users must be at least 1")
	case c.visits < 1:
		return c, errors.New("-visits must be at least 1")
	case c.concurrency < 1:
		return c, errors.New("-concurrency must be at least 1")
	case c.timeout <= 0 || c.readyTimeout <= 0 || c.requestTimeout <= 0:
		return c, errors.New("timeouts must be positive")
	}
	if c.kill == "" {
		c.kill = nodeName(1)
	}
	valid := false
	for i := range c.nodes {
		valid = valid || c.kill == nodeName(i)
	}
	if !valid {
		return c, fmt.Errorf("-kill %q: no such node (nodes are n1..n%d)", c.kill, c.nodes)
	}
	return c, nil
}

// The scenarios.
const (
	scenarioKill    = "kill"
	scenarioBackups = "backups"
	scenarioRolling = "rolling"
	scenarioUpgrade = "upgrade"

	scenarioFleetRestart = "fleet-restart"
)

// nodeName returns the name of the i-th node (from 0): n1, n2, ...
func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }

// splitArgs splits s into words like a POSIX shell does, honouring single
// quotes, double quotes and backslash escapes, without expansions.
func splitArgs(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("unterminated quote or escape in %q", s)
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}
