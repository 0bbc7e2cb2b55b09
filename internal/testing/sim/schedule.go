package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/sessionmesh/sessionmesh/replication"
)

// Kind is a kind of fault.
type Kind int

// The kinds of fault. Every fault starts at its At and is repaired Hold
// later (ClockStep, which has no repair, excepted).
const (
	// Crash kills a node's process (its store is closed: calls to it are
	// refused) and starts a new incarnation, empty, Hold later. Each other
	// node declares the old one dead after its own Detect delay; a Hold
	// shorter than that is a restart that the failure detector does not
	// notice: the others see the old incarnation replaced by the new.
	Crash Kind = iota + 1
	// Freeze stops a node (SIGSTOP) for Hold: nothing reaches it or
	// leaves it, and its own membership view does not change. The others
	// declare it dead after their Detect delays if the freeze lasts that
	// long, and list it again (the same incarnation) after the thaw.
	Freeze
	// Suspect makes the Side nodes declare a live node dead (a false
	// suspicion) after their Detect delays, then list it again Hold later,
	// as when the node refutes the verdict. The network is untouched.
	Suspect
	// Partition cuts the Side nodes off from the others for Hold; each
	// node drops the members of the other side after its Detect delay, and
	// lists them again after the heal.
	Partition
	// Loss makes each request and each response between Node and Peer,
	// both ways, lost with probability Loss for Hold.
	Loss
	// Delay adds Lag to every call between Node and Peer, both ways, for
	// Hold.
	Delay
	// Leave stops a node gracefully (Store.Leave, then its removal from
	// the others' views after their Detect delays, then Close) and starts
	// a new incarnation Hold after the Leave began.
	Leave
	// ClockStep steps a node's wall clock by Step.
	ClockStep
)

var kindNames = map[Kind]string{
	Crash: "crash", Freeze: "freeze", Suspect: "suspect", Partition: "partition",
	Loss: "loss", Delay: "delay", Leave: "leave", ClockStep: "clock",
}

// AllKinds lists every Kind.
var AllKinds = []Kind{Crash, Freeze, Suspect, Partition, Loss, Delay, Leave, ClockStep}

// String returns the kind's name.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Fault is one fault of a schedule. Times are offsets from the start of
// the history's workload.
type Fault struct {
	Kind Kind
	At   time.Duration
	// Hold is how long the fault lasts, until its repair.
	Hold time.Duration
	// Node is the node the fault is about; Loss and Delay act on the
	// link between Node and Peer.
	Node, Peer string
	// Side is the cut-off side of a Partition, or the nodes that suspect
	// Node.
	Side []string
	// Loss is a Loss fault's probability of losing a request, and
	// separately a response.
	Loss float64
	// Lag is a Delay fault's added latency.
	Lag time.Duration
	// Step is a ClockStep's change of Node's clock.
	Step time.Duration
	// KeepState asks that a Crash's restart keep the process's state, as a
	// restart from a snapshot would. The store keeps nothing outside
	// memory today, so the new incarnation starts empty either way; the
	// flag keeps schedules stable for when snapshots exist.
	KeepState bool
	// Detect is, per observer, how long after At it drops the member(s)
	// concerned from its view: the failure detector's delay, or a leave
	// broadcast's (counted from the end of Store.Leave).
	Detect map[string]time.Duration
	// Rejoin is, per observer, how long after the repair it lists the
	// member(s) again; a restarted or thawed node's own view catches up
	// after its own entry.
	Rejoin map[string]time.Duration
}

// Repair returns the offset at which the fault ends.
func (f Fault) Repair() time.Duration { return f.At + f.Hold }

// String describes the fault on one line.
func (f Fault) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8.3fs %-9s", f.At.Seconds(), f.Kind)
	switch f.Kind {
	case Crash:
		fmt.Fprintf(&b, " %s, restarted after %v", f.Node, f.Hold)
		if f.KeepState {
			b.WriteString(" (keep state: starts empty, no snapshots yet)")
		}
	case Freeze, Leave:
		fmt.Fprintf(&b, " %s for %v", f.Node, f.Hold)
	case Suspect:
		fmt.Fprintf(&b, " %s by %s for %v", f.Node, strings.Join(f.Side, ","), f.Hold)
	case Partition:
		fmt.Fprintf(&b, " %s cut off for %v", strings.Join(f.Side, ","), f.Hold)
	case Loss:
		fmt.Fprintf(&b, " %s<->%s %.0f%% for %v", f.Node, f.Peer, 100*f.Loss, f.Hold)
	case Delay:
		fmt.Fprintf(&b, " %s<->%s +%v for %v", f.Node, f.Peer, f.Lag, f.Hold)
	case ClockStep:
		fmt.Fprintf(&b, " %s %+v", f.Node, f.Step)
	}
	if len(f.Detect) > 0 {
		b.WriteString("; detect " + delays(f.Detect))
	}
	if len(f.Rejoin) > 0 {
		b.WriteString("; rejoin " + delays(f.Rejoin))
	}
	return b.String()
}

func delays(m map[string]time.Duration) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s+%.2fs", n, m[n].Seconds())
	}
	return strings.Join(parts, " ")
}

// Schedule is everything a history does that does not depend on how the
// stores answer: the cluster's shape, the clocks and the faults.
type Schedule struct {
	Seed     uint64
	Nodes    []string
	Mode     replication.Mode
	Concern  replication.WriteConcern
	Users    int
	Duration time.Duration
	// Offsets are the nodes' initial clock offsets.
	Offsets map[string]time.Duration
	// Faults are ordered by At.
	Faults []Fault
}

// String lists the schedule, one fault a line.
func (s *Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d nodes, %s, %s writes, %d users, %v; clock offsets %s\n",
		s.Seed, len(s.Nodes), s.Mode, s.Concern, s.Users, s.Duration, delays(s.Offsets))
	for _, f := range s.Faults {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// LastRepair returns the offset of the last fault's repair (0 with no
// faults).
func (s *Schedule) LastRepair() time.Duration {
	var last time.Duration
	for _, f := range s.Faults {
		last = max(last, f.Repair())
	}
	return last
}

// Schedule shape.
const (
	// quietTail is how long before the end of a history the last fault
	// is repaired, so that convergence is checked inside the history.
	quietTail = 15 * time.Second
	// settle is how long a node stays exempt from new faults after a
	// repair.
	settle = 2 * time.Second
	// maxOffset bounds every clock offset, well inside MaxClockOffset.
	maxOffset = 5 * time.Second
)

// weights says how often each kind is drawn.
var weights = []struct {
	kind Kind
	w    int
}{{Crash, 20}, {Freeze, 12}, {Suspect, 10}, {Partition, 10}, {Loss, 12}, {Delay, 8}, {Leave, 10}, {ClockStep, 8}}

// Plan draws a history's schedule from rng: nodes (3 or 5 unless given),
// mode, write concern, clock offsets and faults, a new fault every 1-10 s
// from the second second until quietTail before the end. At most a
// minority of the nodes is crashed, frozen, suspected, leaving or cut off
// at once, so a majority always serves.
func Plan(rng *rand.Rand, seed uint64, nodes int, d time.Duration) *Schedule {
	if nodes <= 0 {
		nodes = []int{3, 5}[rng.IntN(2)]
	}
	s := &Schedule{Seed: seed, Duration: d, Users: 2 * nodes, Offsets: map[string]time.Duration{}}
	for i := range nodes {
		s.Nodes = append(s.Nodes, fmt.Sprintf("n%d", i+1))
	}
	s.Mode = []replication.Mode{replication.AllToAll, replication.Backups(1)}[rng.IntN(2)]
	s.Concern = []replication.WriteConcern{replication.Sync, replication.Async}[rng.IntN(2)]
	offsets := map[string]time.Duration{}
	for _, n := range s.Nodes {
		offsets[n] = uniform(rng, -3*time.Second, 3*time.Second).Round(time.Millisecond)
		s.Offsets[n] = offsets[n]
	}
	busy := map[string]time.Duration{} // node -> until when it is faulted
	var partitionUntil time.Duration
	total := 0
	for _, w := range weights {
		total += w.w
	}
	end := d - quietTail
	for t := 2*time.Second + uniform(rng, 0, 3*time.Second); t < end-time.Second; t += uniform(rng, time.Second, 10*time.Second) {
		t = t.Round(time.Millisecond)
		free := func() []string {
			var out []string
			for _, n := range s.Nodes {
				if busy[n] <= t {
					out = append(out, n)
				}
			}
			return out
		}()
		room := nodes/2 - (nodes - len(free)) // more nodes that may be faulted now
		r := rng.IntN(total)
		kind := weights[0].kind
		for _, w := range weights {
			if r < w.w {
				kind = w.kind
				break
			}
			r -= w.w
		}
		f := Fault{Kind: kind, At: t}
		hold := func(lo, hi time.Duration) time.Duration {
			return min(uniform(rng, lo, hi), end-t).Round(time.Millisecond)
		}
		switch kind {
		case Crash, Freeze, Suspect, Leave:
			if room < 1 {
				continue
			}
			f.Node = free[rng.IntN(len(free))]
			others := without(s.Nodes, f.Node)
			f.Detect = detectDelays(rng, others)
			switch kind {
			case Crash:
				if rng.IntN(10) < 4 {
					f.Hold = hold(100*time.Millisecond, 600*time.Millisecond) // back before anyone noticed
				} else {
					f.Hold = hold(2*time.Second, 10*time.Second)
				}
				f.KeepState = rng.IntN(10) < 3
			case Freeze:
				f.Hold = hold(300*time.Millisecond, 8*time.Second)
			case Suspect:
				f.Hold = hold(2500*time.Millisecond, 6*time.Second)
				f.Side = pick(rng, others, 1+rng.IntN(len(others)))
				for n := range f.Detect {
					if !slices.Contains(f.Side, n) {
						delete(f.Detect, n)
					}
				}
			case Leave:
				f.Hold = hold(3*time.Second, 9*time.Second)
				f.Detect = spread(rng, others, 100*time.Millisecond, 400*time.Millisecond)
			}
			f.Rejoin = spread(rng, s.Nodes, 50*time.Millisecond, 600*time.Millisecond)
			busy[f.Node] = f.Repair() + settle
		case Partition:
			if partitionUntil > t || room < 1 {
				continue
			}
			f.Side = pick(rng, free, 1+rng.IntN(room))
			f.Hold = hold(3*time.Second, 12*time.Second)
			f.Detect = detectDelays(rng, s.Nodes)
			f.Rejoin = spread(rng, s.Nodes, 50*time.Millisecond, 600*time.Millisecond)
			for _, n := range f.Side {
				busy[n] = f.Repair() + settle
			}
			partitionUntil = f.Repair() + settle
		case Loss, Delay:
			pair := pick(rng, s.Nodes, 2)
			f.Node, f.Peer = pair[0], pair[1]
			f.Hold = hold(3*time.Second, 12*time.Second)
			if kind == Loss {
				f.Loss = float64(10+rng.IntN(21)) / 100
			} else {
				f.Lag = uniform(rng, 5*time.Millisecond, 200*time.Millisecond).Round(time.Millisecond)
			}
		case ClockStep:
			f.Node = s.Nodes[rng.IntN(nodes)]
			step := uniform(rng, time.Second, 3*time.Second).Round(time.Millisecond)
			if rng.IntN(2) == 0 {
				step = -step
			}
			if o := offsets[f.Node] + step; o > maxOffset || o < -maxOffset {
				step = -step
			}
			offsets[f.Node] += step
			f.Step = step
		}
		s.Faults = append(s.Faults, f)
	}
	return s
}

// detectDelays draws a failure detector's verdicts: the first observer
// after about a probe interval and a suspicion timeout (0.5-1.5 s), the
// others later by a gossip delay of up to 2.5 s.
func detectDelays(rng *rand.Rand, observers []string) map[string]time.Duration {
	out := map[string]time.Duration{}
	if len(observers) == 0 {
		return out
	}
	first := uniform(rng, 500*time.Millisecond, 1500*time.Millisecond)
	lead := observers[rng.IntN(len(observers))]
	for _, o := range observers {
		d := first
		if o != lead {
			d += uniform(rng, 50*time.Millisecond, 2500*time.Millisecond)
		}
		out[o] = d.Round(time.Millisecond)
	}
	return out
}

// spread draws an independent delay in [lo, hi] per node.
func spread(rng *rand.Rand, nodes []string, lo, hi time.Duration) map[string]time.Duration {
	out := map[string]time.Duration{}
	for _, n := range nodes {
		out[n] = uniform(rng, lo, hi).Round(time.Millisecond)
	}
	return out
}

func uniform(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// pick returns k distinct elements of from, in from's order.
func pick(rng *rand.Rand, from []string, k int) []string {
	idx := rng.Perm(len(from))[:min(k, len(from))]
	slices.Sort(idx)
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = from[j]
	}
	return out
}

func without(from []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(from), func(n string) bool { return n == name })
}
