package sim

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sessionmesh/sessionmesh/internal/memnet"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// Options configures one history.
type Options struct {
	// Seed determines the history: its schedule, its workload's choices
	// and the network's losses.
	Seed uint64
	// Nodes is the cluster's size; 0 draws 3 or 5 from the seed.
	Nodes int
	// Duration is the virtual time the workload runs. Default 60s.
	Duration time.Duration
	// Trace, when set, receives every fault, view change and operation
	// as it happens.
	Trace func(format string, args ...any)
}

// Result is what one history did and found.
type Result struct {
	// Schedule is the history's schedule.
	Schedule *Schedule
	// Anomalies are the violated invariants; a correct store has none.
	Anomalies []Anomaly
	// Ops counts operations and their outcomes by kind.
	Ops map[string]int
	// Injected counts the faults injected by kind.
	Injected map[Kind]int
	// Converged is how long after the last fault's repair the cluster was
	// first seen converged (-1: not within ConvergeBound).
	Converged time.Duration
	// Virtual is the history's virtual time, setup and checks included.
	Virtual time.Duration
}

// Bounds of a history, in virtual time.
const (
	// ConvergeBound is how long after the last repair the cluster must
	// have converged.
	ConvergeBound = 20 * time.Second
	// pollEvery is how often convergence is looked for.
	pollEvery = 100 * time.Millisecond
)

// history is one run: the world, its checker and the driver's agenda.
type history struct {
	t        *testing.T
	sched    *Schedule
	queue    *queue
	world    *world
	check    *checker
	injected map[Kind]int
	// settledAt is when the cluster was seen converged after the last
	// repair; zero before.
	settledAt time.Duration
}

// Run runs one history inside a testing/synctest bubble of its own and
// returns what it found. Setup failures fail t; anomalies are returned
// for the caller to judge.
func Run(t *testing.T, opts Options) Result {
	var res Result
	synctest.Test(t, func(t *testing.T) { res = run(t, opts) })
	return res
}

// stream returns the seed's random stream called name: the schedule, the
// workload and the network draw from independent streams, so that a
// change in one leaves the others as they were.
func stream(seed uint64, name string) *rand.Rand {
	return rand.New(rand.NewPCG(seed, xxhash.Sum64String(name)))
}

func run(t *testing.T, opts Options) Result {
	start := time.Now()
	if opts.Duration <= 0 {
		opts.Duration = 60 * time.Second
	}
	sched := Plan(stream(opts.Seed, "schedule"), opts.Seed, opts.Nodes, opts.Duration)
	base := replication.DefaultLocalConfig()
	h := &history{t: t, sched: sched, queue: newQueue(), injected: map[Kind]int{},
		check: newChecker(sched.Concern, base)}
	net := memnet.New(int64(stream(opts.Seed, "memnet").Uint64()))
	h.world = newWorld(sched.Nodes, net, h.queue, opts.Trace)
	w := h.world
	logger := slog.New(slog.DiscardHandler)
	if os.Getenv("SESSIONMESH_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w.config = func(name string, now func() time.Time, m replication.Membership, tr *memnet.Node) (*replication.Store, error) {
		cfg := base
		cfg.Mode, cfg.WriteConcern = sched.Mode, sched.Concern
		cfg.Logger = logger.With("node", name)
		// Injecting the clock also spares each store a 10 ms ticker.
		cfg.Clock, cfg.Membership, cfg.Transport = replication.WallClock(now), m, tr
		return replication.New(cfg)
	}
	for n, off := range sched.Offsets {
		w.offsets[n].Store(int64(off))
	}
	defer w.closeAll() // inside the bubble, where the stores' goroutines live
	if err := w.startAll(); err != nil {
		t.Fatalf("start: %v", err)
	}
	if why := h.waitConverged(30 * time.Second); why != "" {
		t.Fatalf("the cluster did not form: %s", why)
	}
	h.queue.rebase()
	w.tracef("workload starts at %v of virtual time (store logs count from 2000-01-01T00:00:00Z plus the node's offset)", h.queue.start.Sub(start))
	h.queue.afterEach = w.refreshAgreement
	w.refreshAgreement()
	h.check.converged(w.owners())
	w.settled.Store(true)

	stop := make(chan struct{})
	var users sync.WaitGroup
	var stopOnce sync.Once
	stopUsers := func() {
		stopOnce.Do(func() { close(stop) })
		users.Wait()
	}
	defer stopUsers() // also when the history fails part way
	wl := stream(opts.Seed, "workload")
	for i := range sched.Users {
		u := &user{name: fmt.Sprintf("u%d", i+1), rng: rand.New(rand.NewPCG(wl.Uint64(), wl.Uint64())),
			w: w, c: h.check, async: sched.Concern == replication.Async}
		users.Go(func() { u.run(stop) })
	}
	for _, f := range sched.Faults {
		h.queue.at(f.At, func() { h.inject(f) })
		if f.Kind != ClockStep {
			h.queue.at(f.Repair(), func() { h.repair(f) })
		}
	}
	h.queue.at(pollEvery, h.watch)
	h.queue.runUntil(sched.Duration)
	stopUsers()

	// The bound runs from the last repair, workload or not.
	last := sched.LastRepair()
	for h.settledAt == 0 && w.now() < last+ConvergeBound {
		h.queue.runUntil(w.now() + pollEvery)
	}
	res := Result{Schedule: sched, Injected: h.injected, Converged: -1}
	if h.settledAt != 0 {
		res.Converged = h.settledAt - last
	} else {
		h.check.fail(NotConverged, w.now(), "not converged %v after the last repair: %s", ConvergeBound, h.why())
	}
	// With the workload stopped, wait for its last writes, then read every
	// session on every node.
	if why := h.waitConverged(ConvergeBound); why == "" {
		h.verify()
	} else if h.settledAt != 0 {
		h.check.fail(NotConverged, w.now(), "not converged again after the workload stopped: %s", why)
	}
	w.closeAll()
	w.bg.Wait()
	res.Anomalies = h.check.anomalies()
	res.Ops = h.check.countsCopy()
	res.Virtual = time.Since(start)
	return res
}

// watch runs every pollEvery on the driver: while the cluster is not
// settled, it looks for convergence; once found, no earlier fault can
// lose a write any more, and operations must succeed until the next.
func (h *history) watch() {
	last := h.sched.LastRepair()
	after := h.settledAt == 0 && h.world.now() >= last
	if (after || !h.world.settled.Load()) && h.why() == "" {
		h.check.converged(h.world.owners())
		h.world.settled.Store(true)
		if after {
			h.settledAt = max(h.world.now(), 1)
			h.world.tracef("converged %v after the last repair", h.settledAt-last)
		}
	}
	h.queue.after(pollEvery, h.watch)
}

// why returns why the cluster has not converged, or "".
func (h *history) why() string {
	if !h.world.quiet() {
		return "a fault is active, or views disagree"
	}
	ps := h.world.running()
	stores := make([]*replication.Store, len(ps))
	for i, p := range ps {
		stores[i] = p.store
	}
	return testcluster.Converged(stores)
}

// waitConverged runs the agenda until the cluster has converged, at most
// d; it returns why not, or "".
func (h *history) waitConverged(d time.Duration) string {
	deadline := h.world.now() + d
	for {
		why := h.why()
		if why == "" || h.world.now() >= deadline {
			return why
		}
		h.queue.runUntil(h.world.now() + pollEvery)
	}
}

// verify reads every session on every running node, with the workload
// stopped and the cluster converged: each must show exactly what was
// acknowledged, and all nodes the same.
func (h *history) verify() {
	procs := h.world.running()
	for _, s := range h.check.allSessions() {
		u := &user{name: s.user, w: h.world, c: h.check}
		answers := map[string][]string{}
		for _, p := range procs {
			e := u.do(p, opVerify, s)
			a := "not found"
			switch {
			case e.err != nil:
				a = "error"
			case e.found:
				a = fmt.Sprintf("visits=%d w=%d", e.visits, e.w)
			}
			answers[a] = append(answers[a], p.member.Name)
		}
		if len(answers) > 1 {
			var parts []string
			for a, ns := range answers {
				parts = append(parts, fmt.Sprintf("%v: %s", ns, a))
			}
			slices.Sort(parts)
			h.check.diverged(s.user, s, parts, h.world.now())
		}
	}
}
