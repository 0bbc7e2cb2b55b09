package chaos

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Network modes of Config.Network.
const (
	// NetworkAuto runs each node in a network namespace of its own when
	// the host allows it (root, iproute2, nftables), and on loopback
	// without network faults otherwise, saying why.
	NetworkAuto = "auto"
	// NetworkNamespaces requires the network namespaces: Run fails if
	// they cannot be made.
	NetworkNamespaces = "netns"
	// NetworkLoopback runs every node on 127.0.0.1; network faults are
	// skipped.
	NetworkLoopback = "loopback"
)

// Config configures a chaos run. The zero value of a field takes the
// documented default.
type Config struct {
	// Nodes is the number of login servers. Default 5.
	Nodes int
	// Backups is the login servers' -backups flag: the backup copies of
	// each session besides its primary. Default (0) 1; negative makes
	// every node hold every session (all-to-all). Zero backups is not
	// offered: a SIGKILL then loses sessions by design, which the checker
	// would report.
	Backups int
	// Async starts the servers with -async (writes acknowledged before
	// the other owners have them).
	Async bool
	// Users is the number of simulated users. Default 200.
	Users int
	// Concurrency is the number of workers driving the users; each owns
	// a fixed share of them, so one user never has two requests in
	// flight. Default 16.
	Concurrency int
	// Rate caps the requests per second of all users together, so that
	// the harness leaves the nodes CPU for failure detection on a small
	// machine. Default 300; negative means no cap.
	Rate int
	// Duration is how long faults are injected: no fault starts after
	// it. Default 2 minutes.
	Duration time.Duration
	// Faults, when positive, stops after that many faults even if
	// Duration is not over.
	Faults int
	// Seed makes the fault schedule (see Plan). Default: a random seed,
	// printed so the run can be repeated.
	Seed uint64
	// Kinds are the kinds of fault to inject. Default: all (AllKinds).
	// Network faults are skipped, with a message, when the nodes run on
	// loopback; they stay in the schedule, so a seed gives the same
	// schedule everywhere.
	Kinds []FaultKind
	// Protect names nodes that are never faulted. Default ["n1"]: the
	// soak's observer, whose heap and goroutines are followed for the
	// whole run while its peers crash and come back. Use a non-nil empty
	// slice to fault every node.
	Protect []string
	// Network is NetworkAuto (the default), NetworkNamespaces or
	// NetworkLoopback.
	Network string
	// Bin is a built examples/login binary. Default: build it into a
	// temporary directory (the working directory must be in the module).
	Bin string
	// Race builds the login binary with the race detector.
	Race bool
	// LogDir receives the node logs (<node>.log) and is kept. Default: a
	// temporary directory, removed after a run without anomalies.
	LogDir string
	// SessionLifetime is the servers' -lifetime flag. Users log out and
	// in again before half of it has passed, so sessions and their
	// tombstones turn over and a long run reaches a steady state.
	// Default 60s.
	SessionLifetime time.Duration
	// RecoveryTimeout bounds the wait for the cluster to recover from a
	// fault (every node ready and fully replicated), and for every user
	// to be verified after it. Default 60s.
	RecoveryTimeout time.Duration
	// RequestTimeout is the users' HTTP client timeout. It must exceed
	// the longest freeze plus the servers' write timeout: a request that
	// times out may still be processed later, concurrently with the
	// user's next one. Default 30s.
	RequestTimeout time.Duration
	// SlowThreshold is the latency above which an answer counts as a
	// failover symptom (for the "served again" time). Default 1s.
	SlowThreshold time.Duration
	// Soak holds the bounds of the heap and goroutine check.
	Soak SoakLimits
	// NodeArgs are extra flags for every login server, after the
	// harness's own (so they win).
	NodeArgs []string
	// Out receives progress lines. Default: discarded.
	Out io.Writer
}

// SoakLimits bound the growth of each node's goroutines and heap between
// the start of the run (after warm-up) and its end. Samples are taken at
// quiet points: after the cluster has recovered from each fault.
type SoakLimits struct {
	// Goroutines is the growth allowed, in goroutines, on top of 10% of
	// the start. Default 25.
	Goroutines int
	// HeapBytes is the growth of the live heap allowed, on top of 25% of
	// the start. Default 16 MiB.
	HeapBytes int64
	// MinSamples is the fewest samples of one node process needed to
	// judge it. Default 6.
	MinSamples int
}

// withDefaults returns c with every default filled in, or an error.
func (c Config) withDefaults() (Config, error) {
	if c.Nodes == 0 {
		c.Nodes = 5
	}
	switch {
	case c.Backups == 0:
		c.Backups = 1
	case c.Backups < 0:
		c.Backups = -1
	}
	if c.Users == 0 {
		c.Users = 200
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Rate == 0 {
		c.Rate = 300
	}
	if c.Duration == 0 {
		c.Duration = 2 * time.Minute
	}
	if c.Kinds == nil {
		c.Kinds = slices.Clone(AllKinds)
	}
	if c.Protect == nil {
		c.Protect = []string{"n1"}
	}
	if c.Network == "" {
		c.Network = NetworkAuto
	}
	if c.SessionLifetime == 0 {
		c.SessionLifetime = time.Minute
	}
	if c.RecoveryTimeout == 0 {
		c.RecoveryTimeout = time.Minute
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.SlowThreshold == 0 {
		c.SlowThreshold = time.Second
	}
	if c.Soak.Goroutines == 0 {
		c.Soak.Goroutines = 25
	}
	if c.Soak.HeapBytes == 0 {
		c.Soak.HeapBytes = 16 << 20
	}
	if c.Soak.MinSamples == 0 {
		c.Soak.MinSamples = 6
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	var errs []error
	if c.Nodes < 2 {
		errs = append(errs, errors.New("at least 2 nodes"))
	}
	if c.Users < 1 || c.Concurrency < 1 {
		errs = append(errs, errors.New("at least 1 user and 1 worker"))
	}
	if c.Duration < 0 || c.Faults < 0 {
		errs = append(errs, errors.New("negative Duration or Faults"))
	}
	if c.SessionLifetime < 10*time.Second {
		errs = append(errs, errors.New("SessionLifetime must be at least 10s"))
	}
	switch c.Network {
	case NetworkAuto, NetworkNamespaces, NetworkLoopback:
	default:
		errs = append(errs, fmt.Errorf("Network %q: want %s, %s or %s", c.Network, NetworkAuto, NetworkNamespaces, NetworkLoopback))
	}
	for _, k := range c.Kinds {
		if _, ok := kindNames[k]; !ok {
			errs = append(errs, fmt.Errorf("unknown fault kind %d", int(k)))
		}
	}
	if len(c.targets()) == 0 && len(c.Kinds) > 0 {
		errs = append(errs, errors.New("every node is protected: nothing to fault"))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("chaos: %w", err)
	}
	return c, nil
}

// names returns the node names n1..nN.
func (c Config) names() []string {
	out := make([]string, c.Nodes)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i+1)
	}
	return out
}

// targets returns the nodes that may be faulted.
func (c Config) targets() []string {
	return slices.DeleteFunc(c.names(), func(n string) bool { return slices.Contains(c.Protect, n) })
}

// planLength is how many faults to plan: Faults, or as many as could fit
// in Duration if every fault and its recovery took 3 seconds.
func (c Config) planLength() int {
	if c.Faults > 0 {
		return c.Faults
	}
	return int(c.Duration/(3*time.Second)) + len(c.Kinds)
}
