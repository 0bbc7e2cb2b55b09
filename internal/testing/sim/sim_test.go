package sim_test

import (
	"cmp"
	"flag"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sessionmesh/sessionmesh/internal/testing/sim"
)

var (
	histories = flag.Int("sim.histories", 0, "histories to run, seeds 1 to n (default 1000; 50 under -race, about 10 times slower)")
	seedFlag  = flag.Uint64("sim.seed", 0, "run only this seed")
	nodes     = flag.Int("sim.nodes", 0, "nodes per history (default: 3 or 5, drawn from the seed)")
	duration  = flag.Duration("sim.duration", 60*time.Second, "virtual time of each history's workload")
	trace     = flag.Bool("sim.trace", false, "log every fault, view change and operation")
	knownFail = flag.String("sim.known", "", "comma-separated known issues to fail on too, or \"all\" (see sim.KnownIssues)")
)

// TestMain runs the tests with the garbage collector at a quarter of its
// default pace: a history allocates a lot and keeps little (the run stays
// under 120 MB), and collections took about a fifth of the CPU. 300
// histories, alternating runs on 2 cores: 44 and 40 s of wall time at the
// default pace, 33 and 29 s at this one.
func TestMain(m *testing.M) {
	debug.SetGCPercent(400)
	goleak.VerifyTestMain(m)
}

// TestSim runs seeded histories of a simulated cluster in virtual time
// and fails on every anomaly the checker finds, except those of the known
// issues (sim.KnownIssues: mechanisms understood, fixes due in package
// replication), which it reports with their seeds in its summary (-v)
// and fails on only when -sim.known names them.
func TestSim(t *testing.T) {
	n := *histories
	if n <= 0 {
		n = 1000
		if raceEnabled {
			n = 50
		}
	}
	seeds := make([]uint64, 0, n)
	for s := uint64(1); s <= uint64(n); s++ {
		seeds = append(seeds, s)
	}
	if *seedFlag != 0 {
		seeds = []uint64{*seedFlag}
	}
	tl := newTally()
	t.Cleanup(func() { tl.log(t) })
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			opts := sim.Options{Seed: seed, Nodes: *nodes, Duration: *duration}
			if *trace {
				opts.Trace = t.Logf
			}
			res := sim.Run(t, opts)
			failing, known := tl.add(seed, res)
			switch {
			case len(failing) > 0:
				t.Error(report(res, failing, seed))
			case len(known) > 0 && *trace:
				t.Logf("known issues only:\n%s", report(res, known, seed))
			}
		})
	}
}

// tally sums up the histories of one TestSim.
type tally struct {
	start time.Time
	cpu0  time.Duration

	mu         sync.Mutex
	ran        int                 // guards
	failed     []uint64            // guards: seeds of the failed histories
	worst      time.Duration       // guards: the slowest convergence after the last repair
	injected   map[sim.Kind]int    // guards
	ops        map[string]int      // guards
	anomalies  map[string]int      // guards: by kind and known issue
	knownSeeds map[string][]uint64 // guards: histories showing each known issue
}

func newTally() *tally {
	return &tally{start: time.Now(), cpu0: cpuTime(), injected: map[sim.Kind]int{}, ops: map[string]int{},
		anomalies: map[string]int{}, knownSeeds: map[string][]uint64{}}
}

// add counts one history and returns the anomalies it must fail on, and
// one of each known issue it showed otherwise.
func (tl *tally) add(seed uint64, res sim.Result) (failing, known []sim.Anomaly) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.ran++
	for k, v := range res.Injected {
		tl.injected[k] += v
	}
	for k, v := range res.Ops {
		tl.ops[k] += v
	}
	tl.worst = max(tl.worst, res.Converged)
	seen := map[string]bool{}
	for _, a := range res.Anomalies {
		tl.anomalies[fmt.Sprintf("%v [%s]", a.Kind, cmp.Or(a.Known, "unknown"))]++
		switch {
		case a.Known == "" || failOn(a.Known):
			failing = append(failing, a)
		case !seen[a.Known]:
			seen[a.Known] = true
			tl.knownSeeds[a.Known] = append(tl.knownSeeds[a.Known], seed)
			known = append(known, a)
		}
	}
	if len(failing) > 0 {
		tl.failed = append(tl.failed, seed)
	}
	return failing, known
}

// log reports the measurements and the known issues seen.
func (tl *tally) log(t *testing.T) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.ran == 0 {
		return
	}
	wall, cpu := time.Since(tl.start), cpuTime()-tl.cpu0
	slices.Sort(tl.failed)
	t.Logf("%d histories (%d failed: seeds %v) in %v wall, %v CPU (%v/history, %.0f histories/min); worst convergence after the last repair %v",
		tl.ran, len(tl.failed), tl.failed, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), (cpu / time.Duration(tl.ran)).Round(time.Millisecond),
		float64(tl.ran)/wall.Minutes(), tl.worst)
	t.Logf("faults: %s", formatCounts(tl.injected))
	t.Logf("operations: %s", formatCounts(tl.ops))
	t.Logf("anomalies: %s", formatCounts(tl.anomalies))
	names := make([]string, 0, len(tl.knownSeeds))
	for k := range tl.knownSeeds {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		seeds := tl.knownSeeds[k]
		slices.Sort(seeds)
		t.Logf("known issue %s in %d histories (seeds %v): %s", k, len(seeds), seeds[:min(len(seeds), 30)], sim.KnownIssues[k])
	}
}

// cpuTime returns the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// failOn reports whether -sim.known asks to fail on known issue k.
func failOn(k string) bool {
	return *knownFail == "all" || slices.Contains(strings.Split(*knownFail, ","), k)
}

// report describes a failed history: its schedule, its first anomalies
// with their evidence, and the command that replays it.
func report(res sim.Result, as []sim.Anomaly, seed uint64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d anomalies; schedule:\n%s", len(as), res.Schedule)
	for i, a := range as {
		if i == 10 {
			fmt.Fprintf(&b, "... and %d more\n", len(as)-i)
			break
		}
		b.WriteString(a.String() + "\n")
	}
	fmt.Fprintf(&b, "replay: %s", replay(seed))
	return b.String()
}

// replay returns the command that runs exactly this history again.
func replay(seed uint64) string {
	cmd := fmt.Sprintf("go test ./internal/testing/sim -run 'TestSim/seed=%d$' -sim.seed=%d", seed, seed)
	if *nodes != 0 {
		cmd += fmt.Sprintf(" -sim.nodes=%d", *nodes)
	}
	if *duration != 60*time.Second {
		cmd += fmt.Sprintf(" -sim.duration=%v", *duration)
	}
	if *knownFail != "" {
		cmd += fmt.Sprintf(" -sim.known=%s", *knownFail)
	}
	return cmd + " -sim.trace -v"
}

func formatCounts[K comparable](m map[K]int) string {
	parts := make([]string, 0, len(m))
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%v %d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// TestSim_FixedIssues replays the seeds that showed issues since fixed in
// package replication, and fails on any anomaly of those kinds:
//   - version-inversion (seeds 24, 25: 5 of 9 runs before the fix): a
//     blind write on an owner that was not authoritative built on its own
//     copy, which its hybrid clock had not seen; it now reads from the
//     owners first (replication/read.go writeBase);
//   - update-deadline-clock (seed 2): Update's deadline on the caller's
//     wall clock (now judged on the coordinator's monotonic clock);
//   - non-owner-write (seed 78): an asynchronous write on a node that does
//     not own the session sat in a background queue and was dropped when
//     the send failed (now it waits for an owner: replication/write.go);
//   - async-update-without-version (seeds 171, 182): with asynchronous
//     writes, an Update was coordinated by an owner that lacked the
//     user's last write and answered that the session had ended (now
//     UpdateAtLeast: only an owner that has it coordinates);
//   - owners-disagree (seed 87): a node that the others had wrongly
//     declared dead acknowledged a write that its co-owner took without
//     listing it, and a read on the co-owner's other owner missed it (now
//     the co-owner says it does not list the writer, and the write fails:
//     replication/write.go errNotListed);
//   - owners-disagree (seed 211): a node that had declared every other
//     dead, alone in its view and so authoritative, coordinated an update
//     from a caller it did not list and answered that the session had
//     ended (now a coordinator that does not list the caller answers "not
//     ready": replication/handler.go);
//   - owners-disagree (seeds 642, 707): the same lone node answered a read
//     of a reader it did not list, as authoritative, that there was no
//     such session (now a read names its reader, and such a node answers
//     "not ready"; a peer that joins the view again is greeted again, so
//     that its version, and what it understands, is known);
//   - owners-disagree (seed 743: 1 of 10 runs before, 0 of 20 after): a
//     node restarted empty answered from its copy while a peer that did
//     not list it yet wrote without it (a peer that answers a lease request
//     with "unknown" is now required until it grants one:
//     replication/leasetable.go);
//   - scalar-version (seed 597: 1 of 5 runs before, 0 of 30 after): with
//     asynchronous writes, a replica took an Update without an earlier
//     write still on its way, and passed GetAtLeast (the update copy now
//     carries the session it was built on: replication/update.go);
//   - owners-disagree (seeds 904, 975: 6 and 9 of 20 runs before, 0 of 40
//     after): a node the others had wrongly declared dead acknowledged a
//     login without its co-owner, which missed it over a lossy link and,
//     not listing the writer, was not fenced by it (now a write that
//     misses an owner that answered its last lease request with "unknown"
//     fails: replication/write.go); and a node that had just started
//     acknowledged a login with an owner that listed it while a node that
//     did not list it yet read under that owner's lease (now an owner's
//     acknowledgement carries its fences, which the writer waits out:
//     replication/lease.go fenceRemaining);
//   - owners-disagree (seeds 111, 748: 9 and 3 of 20 runs before, 0 of 20
//     after): a node that had not heard of two members back from a
//     partition read a session from the owners of its view, which had
//     already handed the partition over to them and dropped it, and took
//     their answer for "no such session" (now a node answers a read of a
//     partition it does not own as such, and a reader whose owners all
//     say so asks again until an owner answers: replication/read.go);
//   - seed 18694 (7 of 10 runs before, 1 of 20 after, and that one
//     owners-disagree): a login acknowledged by one node while both others
//     were degraded there was read as missing on one of them, which
//     reached the other and not the writer (now a read fails while an
//     owner that said this node missed its writes is unheard);
//   - seed 905 (about 1 in 40 runs before, 0 of 200 after): a login on a
//     node that does not own the session, acknowledged by one owner and
//     missed by the other over a lossy link, died with the first, which
//     crashed 27 ms later: a double fault (the checker now counts a crash
//     during a login in flight as it counts one after it);
//   - scalar-version (seed 2064, 3 of 3000 histories before): with
//     asynchronous writes, a write made on one node after a login made on
//     another reached a replica before the login, which a link delayed,
//     and that copy passed GetAtLeast at the write's version without the
//     login's attributes (now an asynchronous write carries its base's
//     recent attributes: replication/write.go recentAttrs);
//   - owners-disagree (seed 4313, every run before, 0 of 6 after): during
//     a false suspicion, a node the others had just dropped coordinated a
//     visit, and its co-owner, which no longer listed it, applied the
//     copy; the partition's new co-owner in that node's view had copied the
//     partition before and answered a read without the visit (now an
//     update copy names its coordinator, and a replica that does not list
//     it refuses it: replication/update.go errCopyNotListed).
//   - update-failover (seed 4729): during a false suspicion the suspected
//     node coordinated two visits that its co-owner refused; they stayed on
//     its copy and, pushed later by its anti-entropy, won by version over
//     an acknowledged visit (now a coordinator takes back an update no
//     other owner took: replication/update.go undoUpdate);
//   - owners-disagree (seed 1947): after a heal, a node restarted meanwhile
//     reached the node that had been cut off alone first, and read its
//     copies' "no such session" for a login made on the other side (now a
//     node in a minority refuses: replication/minority.go);
//   - owners-disagree (seed 1829: 17 of 60 runs before, 0 of 120 after): a
//     visit begun while its node wrongly suspected the session's other
//     owner was sent by the view without that owner and acknowledged just
//     after the suspicion ended; the owner, merged and leased a moment
//     before, read it as missing (now a write reaches the owners its view
//     gained meanwhile before it is acknowledged: replication/write.go
//     reachLaterOwners);
//   - owners-disagree (seed 1676: 9 of 60 runs before, 0 of 60 after): an
//     asynchronous login on a node the others had wrongly declared dead
//     was answered "session ended" by an Update on another node 74 ms
//     later, whose clock was 3.7 s ahead, so it did not even wait for the
//     login's version (now a read waits for versions up to MaxClockOffset/2
//     older, and one that finds no copy at all fails instead of answering
//     "no such session": replication/read.go catchUpRead).
func TestSim_FixedIssues(t *testing.T) {
	fixed := map[uint64]string{
		2:     sim.KnownUpdateDeadline,
		24:    sim.KnownVersionInversion,
		25:    sim.KnownVersionInversion,
		1053:  sim.KnownVersionInversion, // a blind write built on its own copy while the owner ahead of it was silent
		78:    sim.KnownNonOwnerWrite,    // an asynchronous write on a non-owner, queued and dropped
		171:   sim.KnownAsyncUpdate,      // Update coordinated by an owner without the user's last write
		182:   sim.KnownAsyncUpdate,
		87:    sim.KnownOwnersDisagree, // a write of a node the others wrongly declared dead
		211:   sim.KnownOwnersDisagree, // an update coordinated by a node alone in its view
		642:   sim.KnownOwnersDisagree, // a read answered by a node alone in its view
		707:   sim.KnownOwnersDisagree,
		743:   sim.KnownOwnersDisagree, // a restarted node read under "unknown" from a peer writing without it
		597:   sim.KnownScalarVersion,  // an Update copied without the write it was built on
		904:   sim.KnownOwnersDisagree, // a write skipped an owner that did not list its writer; a newcomer's login
		975:   sim.KnownOwnersDisagree,
		111:   sim.KnownOwnersDisagree, // a read with a view behind the owners', which had handed the partition over
		748:   sim.KnownOwnersDisagree,
		18694: "",                      // a read answered by an owner that had missed a write, while the writer was unheard
		905:   "",                      // a login one owner missed over a lossy link, on the other alone when it crashed
		2064:  sim.KnownScalarVersion,  // an async write reached a replica before the login it built on
		4313:  sim.KnownOwnersDisagree, // a visit coordinated by a node its co-owner had just dropped, copied there
		4570:  sim.KnownOwnersDisagree, // a failed write on one owner outranked the next, acknowledged one, made on a node whose clock is behind
		4729:  sim.KnownUpdateFailover, // visits that failed on a suspected node, counted there, pushed later over an acknowledged one
		1947:  sim.KnownOwnersDisagree, // a node restarted during a heal read the copies of the node that had been cut off alone
		1829:  sim.KnownOwnersDisagree, // a visit sent by the view before a false suspicion ended, acknowledged after it without the returning owner
		1676:  sim.KnownOwnersDisagree, // an async login on a node wrongly declared dead, read as ended elsewhere at once
	}
	// Seeds whose failure depended on interleavings within one virtual
	// instant run several times.
	runs := map[uint64]int{1829: 10, 1676: 20}
	for seed, known := range fixed {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			for range max(1, runs[seed]) {
				res := sim.Run(t, sim.Options{Seed: seed, Duration: 60 * time.Second})
				for _, a := range res.Anomalies {
					if a.Known == known || a.Known == sim.KnownVersionInversion || a.Known == sim.KnownUpdateDeadline {
						t.Errorf("seed %d: %s", seed, a)
					}
				}
			}
		})
	}
}
