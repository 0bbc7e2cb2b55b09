package sim

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/memnet"
	"github.com/sessionmesh/sessionmesh/replication"
)

// process is one life of a node: a store with its own incarnation, view
// and memnet node.
type process struct {
	member replication.Member
	view   *membership
	store  *replication.Store
}

// world is the ground truth of one history, and what each node believes
// of it. The driver goroutine alone changes it; users read it under mu.
type world struct {
	names  []string
	net    *memnet.Network
	config func(name string, now func() time.Time, m replication.Membership, tr *memnet.Node) (*replication.Store, error)
	trace  func(format string, args ...any)
	q      *queue
	bg     sync.WaitGroup // Leave calls under way

	// offsets are the machines' clock offsets in nanoseconds; they
	// outlive processes. The map is fixed at creation.
	offsets map[string]*atomic.Int64

	// agree is set while every running node lists the same members
	// (itself included) at the same incarnations and no node is leaving;
	// disagreements counts the times it turned false. The driver
	// refreshes both after each of its actions.
	agree         atomic.Bool
	disagreements atomic.Uint64
	// settled is set while the cluster is settled: converged with no
	// fault active since (clock steps and link delays aside); unsettles
	// counts the times it was cleared.
	settled   atomic.Bool
	unsettles atomic.Uint64

	mu          sync.Mutex
	procs       map[string]*process      // guards: running processes by name
	incarnation uint64                   // guards: the last one handed out
	frozen      map[string]bool          // guards
	cut         []string                 // guards: the cut-off side of a partition, nil when healed
	suspected   map[pair]bool            // guards: observer wrongly declares member dead
	leaving     map[string]bool          // guards: Store.Leave running
	lossy       map[[2]string]bool       // guards: links that lose messages
	back        map[string]time.Time     // guards: out of the load balancer's rotation until then
	isolations  map[string]uint64        // guards: times the node was cut off from the serving side
	pending     map[pair]*viewChange     // guards: view changes on their way
	listedAt    map[string]time.Duration // guards: when a peer last began to list the node's current incarnation
	netChanges  uint64                   // guards: changes of who reaches whom
	stores      []*replication.Store     // guards: every store ever started, closed at the end
}

func newWorld(names []string, net *memnet.Network, q *queue, trace func(string, ...any)) *world {
	w := &world{
		names: names, net: net, q: q, trace: trace,
		offsets: map[string]*atomic.Int64{}, procs: map[string]*process{}, frozen: map[string]bool{},
		suspected: map[pair]bool{}, leaving: map[string]bool{}, lossy: map[[2]string]bool{},
		back: map[string]time.Time{}, isolations: map[string]uint64{}, pending: map[pair]*viewChange{},
		listedAt: map[string]time.Duration{},
	}
	for _, n := range names {
		w.offsets[n] = new(atomic.Int64)
	}
	return w
}

// now returns the time since the history's start.
func (w *world) now() time.Duration { return time.Since(w.q.start) }

// clock returns node name's wall clock: virtual time plus its offset.
func (w *world) clock(name string) func() time.Time {
	off := w.offsets[name]
	return func() time.Time { return time.Now().Add(time.Duration(off.Load())) }
}

// startAll starts the first incarnation of every node, each listing all
// the others: a cluster that has formed before the history begins.
func (w *world) startAll() error {
	w.mu.Lock()
	var members []replication.Member
	for _, n := range w.names {
		w.incarnation++
		members = append(members, replication.Member{Name: n, Incarnation: w.incarnation, Addr: n})
	}
	w.mu.Unlock()
	for _, m := range members {
		if err := w.launch(m, members); err != nil {
			return err
		}
	}
	return nil
}

// startProcess starts a new incarnation of name. Its view is its seed's:
// the first running node on its side of the network, which tells it
// whatever it lists, suspect members included. The others list it after
// their rejoin delays.
func (w *world) startProcess(name string, rejoin map[string]time.Duration) error {
	w.mu.Lock()
	if w.procs[name] != nil {
		w.mu.Unlock()
		return nil // never stopped (a Leave that did not begin)
	}
	w.incarnation++
	m := replication.Member{Name: name, Incarnation: w.incarnation, Addr: name}
	var others []replication.Member
	if seed := w.seedLocked(name); seed != nil {
		others = seed.view.Members()
	}
	for pr := range w.pending {
		if pr.observer == name {
			delete(w.pending, pr) // the old life's
		}
	}
	w.mu.Unlock()
	if err := w.launch(m, others); err != nil {
		return err
	}
	w.reconcile(rejoin)
	return nil
}

// launch starts the store of m, listing others.
func (w *world) launch(m replication.Member, others []replication.Member) error {
	others = slices.DeleteFunc(slices.Clone(others), func(o replication.Member) bool { return o.Name == m.Name })
	p := &process{member: m, view: newMembership(m, others)}
	s, err := w.config(m.Name, w.clock(m.Name), p.view, w.net.Node(m.Name))
	if err != nil {
		return err
	}
	p.store = s
	w.mu.Lock()
	w.procs[m.Name] = p
	delete(w.listedAt, m.Name)
	w.stores = append(w.stores, s)
	w.netChanges++
	w.mu.Unlock()
	w.tracef("start %s#%d (view %v)", m.Name, m.Incarnation, names(others))
	return nil
}

// seedLocked returns the running, unfrozen node that a starting name
// would join through, or nil.
func (w *world) seedLocked(name string) *process {
	for _, n := range w.names {
		if p := w.procs[n]; p != nil && n != name && !w.frozen[n] && w.sideLocked(n) == w.sideLocked(name) {
			return p
		}
	}
	return nil
}

// kill crashes name's process: its store is closed at once, as a killed
// process's connections fail.
func (w *world) kill(name string, detect map[string]time.Duration) *process {
	w.mu.Lock()
	p := w.procs[name]
	delete(w.procs, name)
	w.isolations[name]++
	w.netChanges++
	for pr := range w.pending {
		if pr.observer == name {
			delete(w.pending, pr)
		}
	}
	w.mu.Unlock()
	if p == nil {
		return nil
	}
	w.tracef("kill %s#%d", name, p.member.Incarnation)
	_ = p.store.Close()
	w.reconcile(detect)
	return p
}

// stepClock changes name's clock offset by d.
func (w *world) stepClock(name string, d time.Duration) {
	w.offsets[name].Add(int64(d))
	w.tracef("clock %s %+v (offset %v)", name, d, time.Duration(w.offsets[name].Load()))
}

// beginLeave takes name out of the rotation and runs Store.Leave on a
// goroutine of its own; done runs on the driver when Leave has returned.
func (w *world) beginLeave(name string, done func(*process)) bool {
	w.mu.Lock()
	p := w.procs[name]
	if p == nil || w.leaving[name] {
		w.mu.Unlock()
		return false
	}
	w.leaving[name] = true
	w.mu.Unlock()
	w.tracef("leave %s#%d begins", name, p.member.Incarnation)
	w.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.store.Leave(ctx)
		cancel()
		w.q.post(func() {
			w.tracef("leave %s#%d returned: %v", name, p.member.Incarnation, err)
			done(p)
		})
	})
	return true
}

// endLeave removes a node that has left: its process ends, and the others
// drop it after their delays (the leave broadcast).
func (w *world) endLeave(p *process, delays map[string]time.Duration) {
	name := p.member.Name
	w.mu.Lock()
	if w.procs[name] == p {
		delete(w.procs, name)
	}
	delete(w.leaving, name)
	w.netChanges++
	w.mu.Unlock()
	_ = p.store.Close()
	w.reconcile(delays)
}

// isLeaving reports whether name is still leaving.
func (w *world) isLeaving(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.leaving[name]
}

// running returns the running processes sorted by name.
func (w *world) running() []*process {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*process, 0, len(w.procs))
	for _, n := range w.names {
		if p := w.procs[n]; p != nil {
			out = append(out, p)
		}
	}
	return out
}

// owners returns each partition's owners as the first running node sees
// them.
func (w *world) owners() [replication.Partitions][]string {
	var out [replication.Partitions][]string
	if ps := w.running(); len(ps) > 0 {
		for _, p := range ps[0].store.Partitions() {
			out[p.Partition] = p.Owners
		}
	}
	return out
}

// closeAll closes every store ever started (closing twice is harmless).
func (w *world) closeAll() {
	w.mu.Lock()
	stores := w.stores
	w.procs = map[string]*process{}
	w.mu.Unlock()
	for _, s := range stores {
		_ = s.Close()
	}
}

func (w *world) tracef(format string, args ...any) {
	if w.trace != nil {
		w.trace("%9.3fs "+format, append([]any{w.now().Seconds()}, args...)...)
	}
}

func names(ms []replication.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Name + "#" + strconv.FormatUint(m.Incarnation, 10)
	}
	return out
}
