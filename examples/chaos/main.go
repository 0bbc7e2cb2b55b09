// Command chaos is sessionmesh's reliability harness: it starts real
// examples/login servers behind a non-sticky round-robin proxy, drives
// simulated users through it (login, visits with exact counters, logout,
// login again), injects faults from a seeded schedule (SIGKILL and
// restart, SIGSTOP/SIGCONT, SIGTERM and restart, network partitions and
// packet loss between nodes), checks every acknowledged answer and prints
// a report. It exits 0 when the run found no anomaly, 1 when it found
// some, 2 on bad flags and 130 when interrupted.
//
//	go run ./examples/chaos                          # 5 nodes, backups 1, 2 minutes of faults
//	sudo go run ./examples/chaos -duration 20m       # with network faults (root: network namespaces)
//	go run ./examples/chaos -seed 42 -schedule-only  # print the fault schedule of seed 42
//
// Network faults need root, iproute2 and nftables (each node then runs in a
// network namespace of its own); without them they are skipped with a
// message. See examples/internal/chaos for what is checked and how, and
// docs/reliability.md for the documented long run.
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

	"github.com/sessionmesh/sessionmesh/examples/internal/chaos"
)

// Exit statuses.
const (
	exitOK          = 0
	exitAnomalies   = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	cfg, scheduleOnly, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "chaos:", err)
		return exitUsage
	}
	if scheduleOnly {
		return printSchedule(cfg, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first Ctrl-C a second one ends the harness at once (the
	// nodes still die with it: they get SIGKILL when their parent dies).
	context.AfterFunc(ctx, stop)
	cfg.Out = stdout
	rep, err := chaos.Run(ctx, cfg)
	switch {
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(stdout, "chaos: interrupted; every process the harness started has ended")
		return exitInterrupted
	case err != nil:
		fmt.Fprintln(stderr, "chaos:", err)
		return exitAnomalies
	}
	fmt.Fprintln(stdout)
	if err := rep.WriteText(stdout); err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
	}
	if !rep.OK() {
		fmt.Fprintf(stdout, "FAIL: %d anomalies (seed %d)\n", len(rep.Anomalies), rep.Seed)
		return exitAnomalies
	}
	fmt.Fprintf(stdout, "PASS: %d faults injected, %d requests, 0 anomalies (seed %d)\n", len(rep.Injected()), rep.Requests, rep.Seed)
	return exitOK
}

// printSchedule prints the fault schedule of the flags' seed and exits.
func printSchedule(cfg chaos.Config, stdout, stderr io.Writer) int {
	if cfg.Seed == 0 {
		fmt.Fprintln(stderr, "chaos: -schedule-only needs -seed")
		return exitUsage
	}
	plan, err := chaos.Schedule(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return exitUsage
	}
	for _, f := range plan {
		fmt.Fprintln(stdout, f)
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (chaos.Config, bool, error) {
	var c chaos.Config
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.Nodes, "nodes", 5, "login servers")
	fs.IntVar(&c.Backups, "backups", 1, "backup copies of each session (-1: every node holds every session)")
	fs.BoolVar(&c.Async, "async", false, "start the servers with -async")
	fs.IntVar(&c.Users, "users", 200, "simulated users")
	fs.IntVar(&c.Concurrency, "concurrency", 16, "workers driving the users (one request at a time per user)")
	fs.IntVar(&c.Rate, "rate", 300, "requests per second of all users together (-1: no cap)")
	fs.DurationVar(&c.Duration, "duration", 2*time.Minute, "how long faults are injected")
	fs.IntVar(&c.Faults, "faults", 0, "stop after this many faults (0: as many as fit the duration)")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed of the fault schedule (0: random, printed)")
	kinds := fs.String("kinds", "all", "fault kinds, comma-separated: kill, freeze, term, partition, loss, or all")
	protect := fs.String("protect", "n1", "comma-separated nodes never faulted (the soak's observer); empty for none")
	fs.StringVar(&c.Network, "net", chaos.NetworkAuto, "auto (network namespaces when root, else loopback), netns (required) or loopback")
	fs.StringVar(&c.Bin, "bin", "", "a built examples/login binary (default: build one)")
	fs.BoolVar(&c.Race, "race", false, "build the login servers with the race detector")
	fs.StringVar(&c.LogDir, "logs", "", "directory for the node logs, kept (default: a temporary one, removed after a clean run)")
	fs.DurationVar(&c.SessionLifetime, "lifetime", time.Minute, "the servers' session lifetime; users log in again before half of it")
	fs.DurationVar(&c.RecoveryTimeout, "recovery-timeout", time.Minute, "longest wait for the cluster to recover from a fault")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 30*time.Second, "the users' HTTP timeout")
	nodeArgs := fs.String("node-args", "", "extra flags for every login server, space-separated")
	scheduleOnly := fs.Bool("schedule-only", false, "print the fault schedule of -seed and exit")
	if err := fs.Parse(args); err != nil {
		return c, false, err
	}
	if fs.NArg() > 0 {
		return c, false, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.Kinds, err = chaos.ParseKinds(*kinds); err != nil {
		return c, false, err
	}
	c.Protect = []string{}
	for _, p := range strings.Split(*protect, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.Protect = append(c.Protect, p)
		}
	}
	c.NodeArgs = strings.Fields(*nodeArgs)
	return c, *scheduleOnly, nil
}
