// Package memnet is an in-memory network of transports for multi-node tests,
// with fault injection: partitions, dropped requests or responses, and
// added latency.
//
// A Node implements transport.Transport and returns its errors in the same
// situations as transport/tcp: a call to an address where no node runs (none
// was started, or it was closed like a killed process) is refused
// (transport.ErrRefused, with ErrUnreachable and ErrNotSent); a partition or
// a dropped request is silence (ErrUnreachable and ErrNotSent, never
// ErrRefused); a dropped response is ErrUnreachable alone, since the handler
// ran; a call after Close returns transport.ErrClosed.
//
//	net := memnet.New(seed)
//	a, b := net.Node("a"), net.Node("b")
//	b.Serve(handler)
//	resp, err := a.Call(ctx, "b", req)
//	net.Partition([]string{"a"})      // a is cut off from everyone else
//	net.Drop("a", "b", 0.3)           // 30% of a's requests to b are lost
//	net.Delay("a", "b", 5*time.Millisecond)
//	net.Heal()                         // back to a perfect network
//
// A Call runs the callee's handler synchronously in the caller's goroutine:
// memnet starts no goroutines, so there is nothing to leak. Requests and
// responses are copied on the way, so a handler or caller that keeps a slice
// it was told not to keep, or writes to one it gave away, sees its bug
// instead of a silent alias; the request a handler saw is overwritten
// when it returns. A handler that panics panics in the caller's
// goroutine, with the stack that caused it; unlike the TCP transport memnet
// does not recover, because in a test the panic is the news.
//
// Faults are drawn from one seeded random source under a mutex, so a
// sequence of calls made from one goroutine meets the same faults on every
// run. Concurrent callers draw in scheduling order.
package memnet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/transport"
)

// Link is the direction from one address to another.
type Link struct {
	From, To string
}

// LinkStats counts what happened to the calls made over one link.
type LinkStats struct {
	// Calls is the number of calls made from From to To.
	Calls uint64
	// Delivered is the number of requests handed to To's handler.
	Delivered uint64
	// Refused counts calls that failed at once: To unknown, closed,
	// without a handler, or in another partition.
	Refused uint64
	// DroppedRequests counts requests lost before the handler ran.
	DroppedRequests uint64
	// DroppedResponses counts responses lost after the handler ran.
	DroppedResponses uint64
	// RequestBytes and ResponseBytes count the payload bytes delivered
	// in each direction.
	RequestBytes, ResponseBytes uint64
}

// fault is the faults configured on one link.
type fault struct {
	dropReq, dropResp float64
	delay             time.Duration
	refuse            string // why the destination refuses the source's handshake; empty: it does not
}

// Network is a set of Nodes that reach each other by address. Its methods
// are safe for concurrent use.
type Network struct {
	mu     sync.Mutex       // guards the fields below
	rng    *rand.Rand       // every random draw
	nodes  map[string]*Node // by address; the latest Node at each address
	group  map[string]int   // partition group by address; absent: group 0
	faults map[Link]fault
	stats  map[Link]*LinkStats
}

// New returns an empty network whose faults are drawn from seed.
func New(seed int64) *Network {
	return &Network{
		rng:    rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)),
		nodes:  map[string]*Node{},
		group:  map[string]int{},
		faults: map[Link]fault{},
		stats:  map[Link]*LinkStats{},
	}
}

// Node attaches a new node at addr and returns it. After the node at addr
// has been closed, Node(addr) starts a fresh one there, like a restarted
// process; its predecessor stays closed. Node panics if an open node
// already has addr.
func (n *Network) Node(addr string) *Node {
	n.mu.Lock()
	defer n.mu.Unlock()
	if old := n.nodes[addr]; old != nil && !old.isClosed() {
		panic(fmt.Sprintf("memnet: address %q in use", addr))
	}
	nd := &Node{net: n, addr: addr, done: make(chan struct{})}
	n.nodes[addr] = nd
	return nd
}

// Partition splits the network into the given groups of addresses: calls
// between addresses in different groups fail at once with an unreachable
// error that is not a refusal. Addresses named in no group (including nodes created later) form
// one more group together, so Partition([]string{"a"}) isolates a from
// everyone else. Partition replaces any earlier partition; Heal undoes it.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = map[string]int{}
	for i, g := range groups {
		for _, addr := range g {
			n.group[addr] = i + 1
		}
	}
}

// Heal removes every fault: the partition, drops and delays.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = map[string]int{}
	n.faults = map[Link]fault{}
}

// Drop makes each request from one address to another lost with
// probability p (0 stops dropping, 1 drops all): the handler does not run
// and the call fails with an unreachable error (after the link's delay).
func (n *Network) Drop(from, to string, p float64) {
	n.setFault(from, to, func(f *fault) { f.dropReq = p })
}

// DropResponses makes each response on the link lost with probability p:
// the handler runs, then the call fails with an unreachable error. It is the
// case a caller cannot tell from a lost request, and the reason writes must
// be idempotent.
func (n *Network) DropResponses(from, to string, p float64) {
	n.setFault(from, to, func(f *fault) { f.dropResp = p })
}

// Delay adds d of latency to each call from one address to another, before
// the handler runs; 0 removes it. A call whose ctx ends during the delay
// returns ctx.Err() without running the handler.
func (n *Network) Delay(from, to string, d time.Duration) {
	n.setFault(from, to, func(f *fault) { f.delay = d })
}

// Refuse makes the node at to refuse every connection from the node at
// from, as a live peer of another protocol version, cluster label or
// secret does: calls fail at once with transport.ErrHandshake (and
// ErrUnreachable, ErrNotSent), and the error says why. An empty why
// accepts again.
func (n *Network) Refuse(from, to, why string) {
	n.setFault(from, to, func(f *fault) { f.refuse = why })
}

func (n *Network) setFault(from, to string, set func(*fault)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := Link{from, to}
	f := n.faults[l]
	set(&f)
	if f == (fault{}) {
		delete(n.faults, l)
	} else {
		n.faults[l] = f
	}
}

// Stats returns a copy of the counters of every link that carried a call.
func (n *Network) Stats() map[Link]LinkStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[Link]LinkStats, len(n.stats))
	for l, s := range n.stats {
		out[l] = *s
	}
	return out
}

// plan is what the network decided for one call.
type plan struct {
	to                *Node
	stats             *LinkStats
	delay             time.Duration
	dropReq, dropResp bool
	refused           error
}

// route decides, under the lock, the fate of a call from -> to.
func (n *Network) route(from, to string) plan {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := Link{from, to}
	st := n.stats[l]
	if st == nil {
		st = &LinkStats{}
		n.stats[l] = st
	}
	st.Calls++
	p := plan{stats: st}
	dst := n.nodes[to]
	switch {
	case dst == nil:
		p.refused = refused(from, to, "no such node")
	case dst.isClosed():
		p.refused = refused(from, to, "node closed")
	case n.group[from] != n.group[to]:
		p.refused = unreachable(from, to, "partitioned", true)
	case n.faults[l].refuse != "":
		p.refused = fmt.Errorf("memnet: %s -> %s: %w (%w): %w: %s", from, to,
			transport.ErrUnreachable, transport.ErrNotSent, transport.ErrHandshake, n.faults[l].refuse)
	}
	if p.refused != nil {
		st.Refused++
		return p
	}
	p.to = dst
	f := n.faults[l]
	p.delay = f.delay
	p.dropReq = f.dropReq > 0 && n.rng.Float64() < f.dropReq
	p.dropResp = !p.dropReq && f.dropResp > 0 && n.rng.Float64() < f.dropResp
	return p
}

// count applies fn to a link's counters under the lock.
func (n *Network) count(st *LinkStats, fn func(*LinkStats)) {
	n.mu.Lock()
	fn(st)
	n.mu.Unlock()
}

// Node is one transport on a Network. It implements transport.Transport
// and is safe for concurrent use.
type Node struct {
	net  *Network
	addr string
	done chan struct{} // closed by Close

	mu       sync.Mutex // guards the fields below
	handler  func([]byte) []byte
	closed   bool
	inflight sync.WaitGroup // handler runs; Add under mu while !closed
}

// Addr returns the node's address.
func (nd *Node) Addr() string { return nd.addr }

// Serve installs the handler for requests to this node. Until it is called,
// calls to the node fail with a "no handler" error (not an unreachable one),
// as with the TCP transport.
func (nd *Node) Serve(handler func(request []byte) (response []byte)) {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	nd.handler = handler
}

// Close detaches the node: calls to it are refused, its own calls
// return transport.ErrClosed (those waiting in a delay at once), and Close
// waits for handler runs already under way. It is safe to call more than
// once. Close must not be called from the node's own handler.
func (nd *Node) Close() error {
	nd.mu.Lock()
	if nd.closed {
		nd.mu.Unlock()
		return nil
	}
	nd.closed = true
	close(nd.done)
	nd.mu.Unlock()
	nd.inflight.Wait()
	return nil
}

func (nd *Node) isClosed() bool {
	select {
	case <-nd.done:
		return true
	default:
		return false
	}
}

// Call sends a copy of request to the node at addr, runs its handler in
// the calling goroutine, and returns a copy of the response. It fails with
// an error wrapping transport.ErrUnreachable when addr is unknown, closed
// (both also refused), partitioned away, or the request or response is
// dropped; with ctx.Err() when ctx ends first; and with transport.ErrClosed
// after Close.
func (nd *Node) Call(ctx context.Context, addr string, request []byte) ([]byte, error) {
	if nd.isClosed() {
		return nil, transport.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := nd.net.route(nd.addr, addr)
	if p.refused != nil {
		return nil, p.refused
	}
	if p.delay > 0 {
		t := time.NewTimer(p.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-nd.done:
			t.Stop()
			return nil, transport.ErrClosed
		case <-p.to.done:
			t.Stop()
			return nil, unreachable(nd.addr, addr, "node closed", true)
		}
	}
	if p.dropReq {
		nd.net.count(p.stats, func(s *LinkStats) { s.DroppedRequests++ })
		return nil, unreachable(nd.addr, addr, "request dropped", true)
	}
	resp, err := p.to.handle(nd.addr, append([]byte(nil), request...))
	if err != nil {
		nd.net.count(p.stats, func(s *LinkStats) { s.Refused++ })
		return nil, err
	}
	if p.dropResp {
		nd.net.count(p.stats, func(s *LinkStats) {
			s.Delivered++
			s.RequestBytes += uint64(len(request))
			s.DroppedResponses++
		})
		return nil, unreachable(nd.addr, addr, "response dropped", false)
	}
	nd.net.count(p.stats, func(s *LinkStats) {
		s.Delivered++
		s.RequestBytes += uint64(len(request))
		s.ResponseBytes += uint64(len(resp))
	})
	if nd.isClosed() {
		return nil, transport.ErrClosed
	}
	return resp, nil
}

// handle runs the handler on req, unless the node is closed or has none,
// and returns a copy of its response.
func (nd *Node) handle(from string, req []byte) ([]byte, error) {
	nd.mu.Lock()
	if nd.closed {
		nd.mu.Unlock()
		return nil, refused(from, nd.addr, "node closed")
	}
	h := nd.handler
	if h == nil {
		nd.mu.Unlock()
		return nil, fmt.Errorf("memnet: call %s -> %s: remote error: no handler", from, nd.addr)
	}
	nd.inflight.Add(1)
	nd.mu.Unlock()
	defer nd.inflight.Done()
	resp := append([]byte(nil), h(req)...) // copied before req is poisoned: an echo may return req
	poison(req)
	return resp, nil
}

// refused is the error of a call to an address where no node listens (none
// was started there, or it was closed: a killed process), as a TCP dial
// that the peer's kernel refuses.
func refused(from, to, why string) error {
	return fmt.Errorf("memnet: call %s -> %s: %s: %w (%w, %w)", from, to, why,
		transport.ErrUnreachable, transport.ErrNotSent, transport.ErrRefused)
}

// unreachable is the error of a call that met a fault: silence, as far as
// the caller can tell. notSent says the handler certainly did not run.
func unreachable(from, to, why string, notSent bool) error {
	if notSent {
		return fmt.Errorf("memnet: call %s -> %s: %s: %w (%w)", from, to, why, transport.ErrUnreachable, transport.ErrNotSent)
	}
	return fmt.Errorf("memnet: call %s -> %s: %s: %w", from, to, why, transport.ErrUnreachable)
}

// poison overwrites a request the handler has returned from, so a handler
// that kept it (the contract says it must not) reads garbage in tests
// rather than get away with it.
func poison(b []byte) {
	for i := range b {
		b[i] = 0xdb
	}
}
