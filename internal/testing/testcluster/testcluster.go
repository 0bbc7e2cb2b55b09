// Package testcluster runs several replication stores in one process over
// an in-memory network (internal/memnet) with a membership the test
// controls, for multi-node tests with fault injection:
//
//	c := testcluster.New(t, testcluster.Options{Seed: 1})
//	a, b, _ := c.Start("a"), c.Start("b"), c.Start("c")
//	c.WaitReady(t)
//	a.Store.Save(ctx, "s1", changes)
//	c.Kill("b")                          // a crash: connections fail at once
//	c.Partition([]string{"a"}, []string{"c"})
//	c.Heal()
//	c.WaitConverged(t)                   // every live store holds the same sessions
//
// Membership changes are instantaneous and agreed by every node (the
// failure detector is not under test here), except while partitioned: then
// each node sees only the members of its own side, as memberlist ends up
// reporting.
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/memnet"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/transport"
	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

// Options configures a Cluster.
type Options struct {
	// Seed drives the network's fault injection.
	Seed int64
	// Config returns the base store configuration for a node; Membership
	// and Transport are filled in. Default: replication.DefaultLocalConfig
	// with a short anti-entropy interval.
	Config func(name string) replication.Config
	// Logger receives the stores' logs when their Config sets none.
	// Default: discarded, or stderr at debug level when the environment
	// variable SESSIONMESH_TEST_LOG is set.
	Logger *slog.Logger
	// Zone returns a node's zone (replication.Member.Zone). Default: none.
	Zone func(name string) string
	// TCP makes every node use a tcp.Transport on a free
	// 127.0.0.1 port instead of the in-memory network (for benchmarks over
	// real loopback). Net's fault injection then does not apply; Partition
	// still splits the membership views.
	TCP bool
}

// Cluster is a set of stores on one in-memory network.
type Cluster struct {
	t    testing.TB
	opts Options
	// Net is the network, for fault injection.
	Net *memnet.Network

	mu          sync.Mutex
	nodes       map[string]*Node // guards: live nodes by name
	groups      [][]string       // guards: the partition, nil when healed
	incarnation uint64           // guards: the last incarnation handed out
}

// Node is one member of the cluster.
type Node struct {
	// Name is the node's name and address.
	Name string
	// Store is the node's store.
	Store *replication.Store

	member replication.Member
	view   *membership
}

// New returns an empty cluster; everything it starts is closed when the
// test ends.
func New(t testing.TB, opts Options) *Cluster {
	if opts.Config == nil {
		opts.Config = func(string) replication.Config {
			cfg := replication.DefaultLocalConfig()
			cfg.AntiEntropyInterval = 50 * time.Millisecond
			return cfg
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
		if os.Getenv("SESSIONMESH_TEST_LOG") != "" {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	c := &Cluster{
		t:     t,
		opts:  opts,
		Net:   memnet.New(opts.Seed),
		nodes: map[string]*Node{},
	}
	t.Cleanup(c.Close)
	return c
}

// Start starts a node called name (a new incarnation if one ran before)
// and tells every node about it.
func (c *Cluster) Start(name string) *Node {
	// The transport listens before the node joins the others'
	// membership, as a real node's does: a member whose address refuses
	// connections is taken for gone.
	var tr transport.Transport
	addr := name
	if c.opts.TCP {
		lt, err := tcp.Listen(tcp.Config{BindAddr: "127.0.0.1:0"})
		require.NoError(c.t, err)
		tr, addr = lt, lt.Addr()
	}
	c.mu.Lock()
	if _, ok := c.nodes[name]; ok {
		c.mu.Unlock()
		if tr != nil {
			_ = tr.Close()
		}
		c.t.Fatalf("testcluster: node %q already running", name)
	}
	if tr == nil {
		tr = c.Net.Node(name)
	}
	c.incarnation++
	n := &Node{
		Name:   name,
		member: replication.Member{Name: name, Addr: addr, Incarnation: c.incarnation},
	}
	if c.opts.Zone != nil {
		n.member.Zone = c.opts.Zone(name)
	}
	n.view = newMembership(n.member)
	c.nodes[name] = n
	c.refreshLocked()
	c.mu.Unlock()

	cfg := c.opts.Config(name)
	if cfg.Logger == nil {
		cfg.Logger = c.opts.Logger.With("node", name)
	}
	cfg.Membership = n.view
	cfg.Transport = tr
	s, err := replication.New(cfg)
	require.NoError(c.t, err)
	n.Store = s
	return n
}

// Kill stops node name as a crash would: the process is gone first (its
// connections fail at once), and the others drop it from their membership
// after, as a failure detector does.
//
// Several names crash together, as a zone or a rack does: all are gone
// before the others see one membership change without any of them.
func (c *Cluster) Kill(names ...string) {
	for _, name := range names {
		n := c.Node(name)
		if n == nil {
			c.t.Fatalf("testcluster: no node %q", name)
		}
		require.NoError(c.t, n.Store.Close())
	}
	c.mu.Lock()
	for _, name := range names {
		delete(c.nodes, name)
	}
	c.refreshLocked()
	c.mu.Unlock()
}

// KillUnnoticed stops node name as a crash would, and the failure
// detector never notices: the others keep it in their membership, and only
// their calls to it (refused) tell them it is gone.
func (c *Cluster) KillUnnoticed(name string) {
	n := c.Node(name)
	if n == nil {
		c.t.Fatalf("testcluster: no node %q", name)
	}
	require.NoError(c.t, n.Store.Close())
}

// Restart crashes node name and starts a new incarnation of it before the
// others have dropped the old one, as when a restarted process rejoins
// faster than the failure detector notices the crash: the others see the
// old incarnation replaced by the new one in one membership change.
func (c *Cluster) Restart(name string) *Node {
	n := c.Node(name)
	if n == nil {
		c.t.Fatalf("testcluster: no node %q", name)
	}
	require.NoError(c.t, n.Store.Close())
	c.mu.Lock()
	delete(c.nodes, name) // the others' views change in Start
	c.mu.Unlock()
	return c.Start(name)
}

// Node returns the live node called name, or nil.
func (c *Cluster) Node(name string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// Nodes returns the live nodes sorted by name.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *Node) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Partition splits the network into groups of node names (names not listed
// form one more group): calls across groups fail, and each node sees only
// the members of its own group.
func (c *Cluster) Partition(groups ...[]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups = groups
	c.Net.Partition(groups...)
	c.refreshLocked()
}

// Heal ends the partition and faults of the network.
func (c *Cluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.groups = nil
	c.Net.Heal()
	c.refreshLocked()
}

// groupOf returns the index of the group holding name; names not listed
// share the group len(c.groups).
func (c *Cluster) groupOf(name string) int {
	for i, g := range c.groups {
		if slices.Contains(g, name) {
			return i
		}
	}
	return len(c.groups)
}

// refreshLocked recomputes every node's view and notifies it.
func (c *Cluster) refreshLocked() {
	for _, n := range c.nodes {
		var members []replication.Member
		for _, m := range c.nodes {
			if c.groupOf(m.Name) == c.groupOf(n.Name) {
				members = append(members, m.member)
			}
		}
		n.view.set(members)
	}
}

// WaitReady waits until every live store is ready.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, n := range c.Nodes() {
			if !n.Store.IsReady() {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "stores not ready")
}

// WaitConverged waits until the cluster is at rest: every live store is
// ready and fully replicated, holds records only of partitions it owns, and
// the owners of every partition (all nodes in AllToAll mode, n+1 of them
// with Backups(n)) hold it completely with equal digests.
func (c *Cluster) WaitConverged(t testing.TB) {
	t.Helper()
	var why string
	ok := waitFor(30*time.Second, func() bool {
		why = c.converged()
		return why == ""
	})
	require.True(t, ok, "stores did not converge: %s", why)
}

// converged returns why the cluster has not converged, or "".
func (c *Cluster) converged() string {
	nodes := c.Nodes()
	stores := make([]*replication.Store, len(nodes))
	for i, n := range nodes {
		stores[i] = n.Store
	}
	return Converged(stores)
}

// askForLeases makes s, an idle store, ask its peers for leases again:
// a read does, before it goes to the owners. The read is given up at once;
// its answer does not matter.
func askForLeases(s *replication.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, _ = s.Get(ctx, "testcluster-lease-probe-xxxxxxxxxxxxxxx")
}

// Converged returns why stores, the live stores of one cluster, have not
// converged, or "" when they have: every store is ready, fully
// replicated and authoritative, holds records only of partitions it owns,
// and the owners of every partition (as the first store sees them) hold
// it completely with equal digests. It does not check that the stores'
// views agree. An idle store's leases lapse between its renewals, and
// Stats asks for none: Converged asks for them with a read, as a user's
// first request would, and a later call sees them.
func Converged(stores []*replication.Store) string {
	if len(stores) == 0 {
		return ""
	}
	type copyOf struct {
		node   string
		digest uint64
	}
	copies := map[int][]copyOf{}
	addrs := make([]string, len(stores))
	for i, s := range stores {
		st := s.Stats()
		addrs[i] = st.Addr
		switch {
		case !st.Ready:
			return st.Addr + " is not ready"
		case !s.FullyReplicated():
			return fmt.Sprintf("%s reports %d partitions under-replicated", st.Addr, st.UnderReplicated)
		case !st.Authoritative:
			if st.Idle {
				askForLeases(s)
			}
			return st.Addr + " does not answer from its copies yet (leases, or a merge after a view change)"
		case st.HeldPartitions > 0:
			return fmt.Sprintf("%s still holds %d partitions it does not own", st.Addr, st.HeldPartitions)
		}
	}
	for i, s := range stores {
		for _, p := range s.Partitions() {
			if p.Owned && p.Complete {
				copies[p.Partition] = append(copies[p.Partition], copyOf{addrs[i], p.Digest})
			}
		}
	}
	owners := stores[0].Partitions()
	for p := 0; p < replication.Partitions; p++ {
		cs, want := copies[p], len(owners[p].Owners)
		if len(cs) != want {
			return fmt.Sprintf("partition %d has %d complete copies %v, want %d", p, len(cs), cs, want)
		}
		for _, cp := range cs[1:] {
			if cp.digest != cs[0].digest {
				return fmt.Sprintf("partition %d differs between owners: %v", p, cs)
			}
		}
	}
	return ""
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close stops every node. It runs at the end of the test.
func (c *Cluster) Close() {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = map[string]*Node{}
	c.mu.Unlock()
	for _, n := range nodes {
		if n.Store != nil {
			_ = n.Store.Close()
		}
	}
}

// membership is one node's view of the cluster; it implements
// replication.Membership.
type membership struct {
	self    replication.Member
	settled chan struct{} // closed: a test cluster is settled from the start

	mu      sync.Mutex
	members []replication.Member     // guards: the current view
	subs    map[chan<- struct{}]bool // guards: subscribers
}

var _ replication.Membership = (*membership)(nil)

func newMembership(self replication.Member) *membership {
	m := &membership{self: self, settled: make(chan struct{}), subs: map[chan<- struct{}]bool{}}
	close(m.settled)
	return m
}

func (m *membership) LocalMember() replication.Member { return m.self }

func (m *membership) Members() []replication.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.members)
}

func (m *membership) Settled() <-chan struct{} { return m.settled }

func (m *membership) Notify(ch chan<- struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs[ch] = true
}

func (m *membership) StopNotify(ch chan<- struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.subs, ch)
}

func (m *membership) set(members []replication.Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.members = members
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
