package sessionmesh

import (
	"sync"

	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// Membership adapts a cluster to the store: it reports the members with the
// transport address each publishes under AddrTag, and forwards membership
// events as change hints. StartNode uses it; call it to assemble a store on
// a cluster of your own.
func Membership(c *cluster.Cluster) replication.Membership {
	return &membership{c: c, subs: map[chan<- struct{}]*forwarder{}}
}

// membership is the adapter returned by Membership.
type membership struct {
	c *cluster.Cluster

	mu   sync.Mutex                     // guards subs
	subs map[chan<- struct{}]*forwarder // by the subscriber's channel
}

// forwarder turns the cluster's events for one subscriber into hints. Its
// goroutine is owned by the subscription: StopNotify stops it and waits.
type forwarder struct {
	events chan cluster.Event
	stop   chan struct{}
	done   chan struct{}
}

var _ replication.Membership = (*membership)(nil)

func member(m cluster.Member) replication.Member {
	return replication.Member{Name: m.Name, Incarnation: m.Incarnation, Addr: m.Tags[AddrTag], Zone: m.Tags[ZoneTag]}
}

func (m *membership) LocalMember() replication.Member { return member(m.c.LocalMember()) }

func (m *membership) Members() []replication.Member {
	ms := m.c.Members()
	out := make([]replication.Member, len(ms))
	for i, cm := range ms {
		out[i] = member(cm)
	}
	return out
}

func (m *membership) Settled() <-chan struct{} { return m.c.Settled() }

func (m *membership) Notify(ch chan<- struct{}) {
	f := &forwarder{events: make(chan cluster.Event, 16), stop: make(chan struct{}), done: make(chan struct{})}
	m.mu.Lock()
	if _, ok := m.subs[ch]; ok {
		m.mu.Unlock()
		return
	}
	m.subs[ch] = f
	m.mu.Unlock()
	m.c.Notify(f.events)
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.stop:
				return
			case <-f.events:
				select {
				case ch <- struct{}{}:
				default: // a hint is already pending
				}
			}
		}
	}()
}

func (m *membership) StopNotify(ch chan<- struct{}) {
	m.mu.Lock()
	f := m.subs[ch]
	delete(m.subs, ch)
	m.mu.Unlock()
	if f == nil {
		return
	}
	m.c.StopNotify(f.events)
	close(f.stop)
	<-f.done
}
