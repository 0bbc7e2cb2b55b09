package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// FaultKind is a kind of fault the harness injects.
type FaultKind int

// The kinds of fault. Values are printed in schedules; append only.
const (
	// Kill sends SIGKILL to a node, leaves it down for the fault's Hold,
	// and starts it again with the same flags (a crash and a restart).
	Kill FaultKind = iota + 1
	// Freeze sends SIGSTOP to a node and SIGCONT after Hold: a process
	// that stops answering without closing a connection (a long GC pause,
	// a frozen VM). It stays in the load balancer's rotation, so requests
	// sent to it wait until it thaws.
	Freeze
	// Term sends SIGTERM (the node hands its sessions over and leaves the
	// cluster), waits for the exit, leaves the node down for Hold and
	// starts it again: one step of a rolling restart.
	Term
	// Partition cuts a node off from every other node (both directions,
	// packets dropped) for Hold. The load balancer drains the node first
	// and takes it back once the cluster has healed, as a load balancer
	// whose health check follows the cluster's membership does.
	Partition
	// Loss drops Loss percent of the packets between a node and every
	// other node, in each direction, for Hold. The node stays in the
	// load balancer's rotation.
	Loss
)

// AllKinds lists every FaultKind, in the order of their values.
var AllKinds = []FaultKind{Kill, Freeze, Term, Partition, Loss}

var kindNames = map[FaultKind]string{
	Kill: "kill", Freeze: "freeze", Term: "term", Partition: "partition", Loss: "loss",
}

// String returns the kind's name as ParseKinds accepts it.
func (k FaultKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("FaultKind(%d)", int(k))
}

// Network reports whether the kind is a network fault, which needs the
// network namespaces (see the package documentation).
func (k FaultKind) Network() bool { return k == Partition || k == Loss }

// ParseKinds parses a comma-separated list of fault kind names ("kill,
// freeze, term, partition, loss"; "all" for every kind).
func ParseKinds(s string) ([]FaultKind, error) {
	var out []FaultKind
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "all" {
			return slices.Clone(AllKinds), nil
		}
		found := false
		for k, name := range kindNames {
			if name == f {
				if !slices.Contains(out, k) {
					out = append(out, k)
				}
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("chaos: unknown fault kind %q (want kill, freeze, term, partition, loss or all)", f)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("chaos: no fault kind in %q", s)
	}
	slices.Sort(out)
	return out, nil
}

// Fault is one step of a schedule: a fault, how long it lasts, and the
// quiet time after the cluster has recovered from it.
type Fault struct {
	// Index numbers the faults of a schedule from 1.
	Index int
	// Kind is what happens.
	Kind FaultKind
	// Node is the node it happens to.
	Node string
	// Hold is how long the fault lasts: the time a killed or terminated
	// node stays down, a frozen node stays frozen, a partition or the
	// packet loss lasts.
	Hold time.Duration
	// Loss is the percentage of packets dropped in each direction (Loss
	// faults only).
	Loss int
	// Pause is the time between the cluster's recovery from this fault
	// (verified) and the next fault.
	Pause time.Duration
}

// String describes the fault on one line, such as
// "#3 kill n3: SIGKILL, down 1.6s, restart; pause 2.7s".
func (f Fault) String() string {
	var what string
	switch f.Kind {
	case Kill:
		what = fmt.Sprintf("SIGKILL, down %s, restart", f.Hold)
	case Freeze:
		what = fmt.Sprintf("SIGSTOP, frozen %s, SIGCONT", f.Hold)
	case Term:
		what = fmt.Sprintf("SIGTERM (graceful leave), down %s, restart", f.Hold)
	case Partition:
		what = fmt.Sprintf("drained, cut off from every other node for %s, healed", f.Hold)
	case Loss:
		what = fmt.Sprintf("%d%% packet loss to and from every other node for %s", f.Loss, f.Hold)
	default:
		what = f.Kind.String()
	}
	return fmt.Sprintf("#%d %s %s: %s; pause %s", f.Index, f.Kind, f.Node, what, f.Pause)
}

// holdRange is the range of Fault.Hold for each kind.
var holdRange = map[FaultKind][2]time.Duration{
	Kill:      {500 * time.Millisecond, 3 * time.Second},
	Freeze:    {time.Second, 5 * time.Second},
	Term:      {500 * time.Millisecond, 3 * time.Second},
	Partition: {2 * time.Second, 8 * time.Second},
	Loss:      {3 * time.Second, 8 * time.Second},
}

// Pause and loss ranges.
const (
	minPause, maxPause = time.Second, 3 * time.Second
	minLoss, maxLoss   = 10, 30
)

// Plan returns the first n faults of the schedule for seed: a pure
// function of its arguments, so the same seed, nodes, kinds and targets
// give the same schedule on every machine. Kinds are dealt like cards from
// a deck shuffled anew each round, so every kind occurs once in each
// len(kinds) consecutive faults (a short run sees every kind); each fault
// picks its node from targets (the nodes that may be faulted) uniformly,
// and its hold, loss and pause uniformly from their ranges, rounded to 100
// ms.
func Plan(seed uint64, targets []string, kinds []FaultKind, n int) []Fault {
	if len(targets) == 0 || len(kinds) == 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x5e55_1017_c4a0_5eed))
	between := func(lo, hi time.Duration) time.Duration {
		const step = 100 * time.Millisecond
		return lo + step*time.Duration(rng.Int64N(int64((hi-lo)/step)+1))
	}
	var deck []FaultKind
	out := make([]Fault, 0, n)
	for i := range n {
		if len(deck) == 0 {
			deck = slices.Clone(kinds)
			rng.Shuffle(len(deck), func(a, b int) { deck[a], deck[b] = deck[b], deck[a] })
		}
		k := deck[0]
		deck = deck[1:]
		f := Fault{Index: i + 1, Kind: k, Node: targets[rng.IntN(len(targets))]}
		r := holdRange[k]
		f.Hold = between(r[0], r[1])
		if k == Loss {
			f.Loss = minLoss + rng.IntN(maxLoss-minLoss+1)
		}
		f.Pause = between(minPause, maxPause)
		out = append(out, f)
	}
	return out
}

// Schedule returns the fault schedule a Run with cfg would follow (with
// cfg.Seed, which must be set): Plan of the nodes that are not protected,
// cfg.Kinds, and as many faults as cfg.Faults or cfg.Duration calls for.
func Schedule(cfg Config) ([]Fault, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return Plan(cfg.Seed, cfg.targets(), cfg.Kinds, cfg.planLength()), nil
}
