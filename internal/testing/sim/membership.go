package sim

import (
	"slices"
	"strings"
	"sync"

	"github.com/sessionmesh/sessionmesh/replication"
)

// membership is one node's view of the cluster, as the simulator decides
// it; it implements replication.Membership. The world changes it when a
// change would reach that node through the failure detector or gossip.
type membership struct {
	self    replication.Member
	settled chan struct{} // closed at once: the node starts from a seed's view

	mu      sync.Mutex
	members map[string]replication.Member // guards: the other members this node lists, by name
	subs    map[chan<- struct{}]bool      // guards: subscribers
}

var _ replication.Membership = (*membership)(nil)

// newMembership returns the view of self listing others. It must be
// called inside the history's bubble: the store waits on Settled.
func newMembership(self replication.Member, others []replication.Member) *membership {
	m := &membership{self: self, settled: make(chan struct{}),
		members: map[string]replication.Member{}, subs: map[chan<- struct{}]bool{}}
	for _, o := range others {
		if o.Name != self.Name {
			m.members[o.Name] = o
		}
	}
	close(m.settled)
	return m
}

// LocalMember returns this node.
func (m *membership) LocalMember() replication.Member { return m.self }

// Members returns this node and every member it lists, sorted by name.
func (m *membership) Members() []replication.Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]replication.Member, 0, len(m.members)+1)
	out = append(out, m.self)
	for _, o := range m.members {
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b replication.Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Settled is closed from the start.
func (m *membership) Settled() <-chan struct{} { return m.settled }

// Notify subscribes ch to changes.
func (m *membership) Notify(ch chan<- struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs[ch] = true
}

// StopNotify ends ch's subscription.
func (m *membership) StopNotify(ch chan<- struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.subs, ch)
}

// lists returns the member called name that this node lists, if any.
func (m *membership) lists(name string) (replication.Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.members[name]
	return o, ok
}

// set makes this node list o (replacing an earlier incarnation), or, with
// o nil, drop the member called name; it notifies the subscribers.
func (m *membership) set(name string, o *replication.Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o == nil {
		delete(m.members, name)
	} else {
		m.members[name] = *o
	}
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
