package replication

import (
	"sync/atomic"

	"github.com/sessionmesh/sessionmesh/cluster"
)

// peer is another member of the cluster as the store sees it. One peer value
// lives as long as one incarnation of that member is in the cluster, so its
// health survives refreshes of the peer set.
type peer struct {
	name        string
	incarnation uint64
	addr        string // replication transport address

	// degraded is set when the peer failed to acknowledge a write within
	// WriteTimeout. Writes are still sent to a degraded peer but not
	// waited for; anti-entropy clears the flag once it has repaired it.
	degraded atomic.Bool
	// background counts fire-and-forget sends in flight to a degraded
	// peer, to bound them.
	background atomic.Int32
	// ready is the peer's readiness from its last hello reply.
	ready atomic.Bool
}

// peerSet is an immutable snapshot of the peers, published atomically by
// the membership goroutine and read without locks by writers.
type peerSet struct {
	list   []*peer
	byName map[string]*peer
}

// sees reports whether the set holds this incarnation of the named member.
func (ps *peerSet) sees(name string, incarnation uint64) bool {
	p := ps.byName[name]
	return p != nil && p.incarnation == incarnation
}

// buildPeerSet returns the peer set for members, reusing the peer values of
// prev for members whose incarnation and address did not change.
func buildPeerSet(self cluster.Member, members []cluster.Member, prev *peerSet) *peerSet {
	ps := &peerSet{byName: make(map[string]*peer, len(members))}
	for _, m := range members {
		addr := m.Tags[AddrTag]
		if m.Name == self.Name || addr == "" {
			continue
		}
		p := prev.byName[m.Name]
		if p == nil || p.incarnation != m.Incarnation || p.addr != addr {
			p = &peer{name: m.Name, incarnation: m.Incarnation, addr: addr}
		}
		ps.list = append(ps.list, p)
		ps.byName[m.Name] = p
	}
	return ps
}
