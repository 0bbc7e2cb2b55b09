package cluster

import (
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// This file holds the unexported adapters between memberlist and the
// package's own types. memberlist calls them from its goroutines, some while
// it holds its internal node lock: they must not block and must not call
// back into memberlist.

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*eventDelegate)(nil)
	_ memberlist.MergeDelegate = (*mergeDelegate)(nil)
)

// delegate publishes the local node's metadata. Nothing else goes through
// memberlist: no user messages, no broadcasts, no push/pull state.
type delegate struct {
	meta atomic.Pointer[[]byte] // encoded nodeMeta; replaced, never modified
}

func (d *delegate) setMeta(b []byte) { d.meta.Store(&b) }

// NodeMeta returns the encoded metadata. memberlist panics when it gets more
// than limit bytes; validate made sure it fits, and a smaller limit (which
// memberlist never passes) gets no metadata rather than a panic.
func (d *delegate) NodeMeta(limit int) []byte {
	p := d.meta.Load()
	if p == nil || len(*p) > limit {
		return nil
	}
	return *p
}

func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// eventDelegate turns memberlist's callbacks into the member table and into
// Events for the subscribers.
//
// memberlist calls it with its node lock held, one callback at a time, and
// for every transition: NotifyJoin for a node that is new or comes back from
// dead/left (address changes happen only then), NotifyUpdate for new
// metadata of a live node, NotifyLeave when a live or suspect node becomes
// dead or left. So the table mirrors memberlist's live nodes exactly, and
// Members reads the table, not memberlist: memberlist's Members returns
// pointers into its state that it later modifies without the caller's
// knowledge (a data race), and calling it from a callback would deadlock.
//
// Lock order: memberlist's node lock, then mu, then subsMu. Nothing that
// holds mu or subsMu calls memberlist.
type eventDelegate struct {
	local  string
	logger *slog.Logger

	mu      sync.RWMutex
	members map[string]Member // guards: live (alive or suspect) members by name, the local node included
	leaving map[string]bool   // guards: the live members whose metadata says they are leaving

	subsMu sync.RWMutex
	subs   map[chan<- Event]struct{} // guards: subscribed channels; nil once closed

	delivered atomic.Uint64
	dropped   atomic.Uint64

	// changed is signalled (without blocking) when a member joins, leaves
	// or fails, and lastChange is when (Unix nanoseconds): the joiner
	// exchanges state with a member while the membership changes.
	changed    chan struct{}
	lastChange atomic.Int64
}

func newEventDelegate(local string, logger *slog.Logger) *eventDelegate {
	return &eventDelegate{
		local:   local,
		logger:  logger,
		members: make(map[string]Member),
		leaving: make(map[string]bool),
		subs:    make(map[chan<- Event]struct{}),
		changed: make(chan struct{}, 1),
	}
}

// noteChange records a join, leave or failure of another member.
func (e *eventDelegate) noteChange(name string) {
	if name == e.local {
		return
	}
	e.lastChange.Store(time.Now().UnixNano())
	select {
	case e.changed <- struct{}{}:
	default:
	}
}

// changedSince reports whether another member joined, left or failed
// after t.
func (e *eventDelegate) changedSince(t time.Time) bool {
	return e.lastChange.Load() > t.UnixNano()
}

// NotifyJoin is called by memberlist under its node lock.
func (e *eventDelegate) NotifyJoin(n *memberlist.Node) {
	m, md := e.member(n, StateAlive)
	e.mu.Lock()
	e.members[m.Name] = m
	e.leaving[m.Name] = md.leaving()
	e.mu.Unlock()
	e.noteChange(m.Name)
	e.emit(EventJoin, m)
}

// NotifyUpdate is called by memberlist under its node lock.
func (e *eventDelegate) NotifyUpdate(n *memberlist.Node) {
	m, md := e.member(n, StateAlive)
	e.mu.Lock()
	e.members[m.Name] = m
	e.leaving[m.Name] = md.leaving()
	e.mu.Unlock()
	if md.leaving() {
		// The leave itself follows; it is the event that matters.
		return
	}
	e.emit(EventUpdate, m)
}

// NotifyLeave is called by memberlist under its node lock, both for a node
// that left and for one that failed. memberlist's Node.State is never set
// (nodeState.State shadows it), so the two are told apart by the leaving
// flag that Leave publishes in the metadata before it leaves.
func (e *eventDelegate) NotifyLeave(n *memberlist.Node) {
	m, md := e.member(n, StateDead)
	typ := EventFail
	if md.leaving() {
		typ, m.State = EventLeave, StateLeft
	}
	e.mu.Lock()
	delete(e.members, m.Name)
	delete(e.leaving, m.Name)
	e.mu.Unlock()
	e.noteChange(m.Name)
	e.emit(typ, m)
}

// everyPeerLeaving reports whether every other live member has said that
// it is leaving; true when there is none.
func (e *eventDelegate) everyPeerLeaving() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	for name := range e.members {
		if name != e.local && !e.leaving[name] {
			return false
		}
	}
	return true
}

// peerLeaving reports whether the live member name has said that it is
// leaving.
func (e *eventDelegate) peerLeaving(name string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.leaving[name]
}

// member converts a memberlist node. Undecodable metadata gives a member
// with zero Incarnation and nil Tags, and a debug log line.
func (e *eventDelegate) member(n *memberlist.Node, st State) (Member, nodeMeta) {
	m := Member{
		Name:  n.Name,
		Addr:  net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))),
		State: st,
	}
	md, err := decodeMeta(n.Meta)
	if err != nil {
		e.logger.Debug("cluster: undecodable member metadata", "member", n.Name, "addr", m.Addr, "err", err)
		return m, nodeMeta{}
	}
	m.Incarnation, m.Tags = md.incarnation, md.tags
	return m, md
}

// emit sends an event to every subscriber without blocking. Events about
// the local node are not sent.
func (e *eventDelegate) emit(typ EventType, m Member) {
	if m.Name == e.local {
		return
	}
	e.subsMu.RLock()
	defer e.subsMu.RUnlock()
	for ch := range e.subs {
		select {
		case ch <- Event{Type: typ, Member: m.clone()}:
			e.delivered.Add(1)
		default:
			e.dropped.Add(1)
		}
	}
}

func (e *eventDelegate) subscribe(ch chan<- Event) {
	e.subsMu.Lock()
	defer e.subsMu.Unlock()
	if e.subs != nil {
		e.subs[ch] = struct{}{}
	}
}

func (e *eventDelegate) unsubscribe(ch chan<- Event) {
	e.subsMu.Lock()
	defer e.subsMu.Unlock()
	delete(e.subs, ch)
}

// closeSubs unsubscribes everybody for good: memberlist goroutines that
// outlive Shutdown may still call back, but no event is sent after Close.
func (e *eventDelegate) closeSubs() {
	e.subsMu.Lock()
	defer e.subsMu.Unlock()
	e.subs = nil
}

// snapshot returns copies of the live members.
func (e *eventDelegate) snapshot() []Member {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]Member, 0, len(e.members))
	for _, m := range e.members {
		out = append(out, m.clone())
	}
	return out
}

// count returns the number of live members, the local node included.
func (e *eventDelegate) count() int {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.members)
}

// addrs returns the set of the live members' addresses.
func (e *eventDelegate) addrs() map[string]bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make(map[string]bool, len(e.members))
	for _, m := range e.members {
		out[m.Addr] = true
	}
	return out
}

// mergeDelegate looks at the state a peer sends during a join, to find out
// whether the peer knows this node as it is now. A peer that still lists
// this node's name with another address or Incarnation (a previous life of
// the process) has not accepted it yet: memberlist refuses a new address for
// a name until the old life is dead and DeadNodeReclaimTime has passed, and
// then nothing re-sends this node's alive message before the next push/pull.
// The joiner keeps re-joining such a seed every JoinRetryInterval until it
// lists this node correctly.
//
// memberlist calls NotifyMerge before it merges the state, without holding
// its node lock, from the goroutine that runs the join (for joins this node
// starts) or from a connection handler (for joins of others).
type mergeDelegate struct {
	name        string
	incarnation uint64
	addr        atomic.Pointer[string] // this node's address; nil until New knows it
	stale       atomic.Pointer[string] // the stale address seen last; cleared by the joiner
}

// NotifyMerge never cancels the merge.
func (d *mergeDelegate) NotifyMerge(peers []*memberlist.Node) error {
	self := d.addr.Load()
	if self == nil {
		return nil
	}
	for _, p := range peers {
		if p.Name != d.name {
			continue
		}
		addr := net.JoinHostPort(p.Addr.String(), strconv.Itoa(int(p.Port)))
		md, err := decodeMeta(p.Meta)
		if addr != *self || err != nil || md.incarnation != d.incarnation {
			d.stale.Store(&addr)
		}
	}
	return nil
}
