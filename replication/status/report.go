package status

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// Store is what the status page reads of a replication store.
// *replication.Store implements it. None of these methods may block on the
// network: the page is served from what the store already knows.
type Store interface {
	Stats() replication.Stats
	Partitions() []replication.PartitionInfo
	Peers() []replication.PeerInfo
	FullyReplicated() bool
	Mode() replication.Mode
	WriteConcern() replication.WriteConcern
}

// Cluster is what the status page reads of the membership.
// *cluster.Cluster implements it.
type Cluster interface {
	LocalMember() cluster.Member
	Members() []cluster.Member
}

var (
	_ Store   = (*replication.Store)(nil)
	_ Cluster = (*cluster.Cluster)(nil)
)

// Report is the state of the cluster as one node sees it: the JSON the
// handler serves with ?format=json, and what the page shows. Its fields
// are append-only: scripts may rely on them.
type Report struct {
	// Node is the name of the node that answered.
	Node string `json:"node"`
	// Time is when the report was made.
	Time time.Time `json:"time"`
	// Mode is the replication mode: "all-to-all" or "backups(n)".
	Mode string `json:"mode"`
	// WriteConcern is "sync" or "async".
	WriteConcern string `json:"write_concern"`
	// Ready reports whether the node has held a complete copy of every
	// session it owns.
	Ready bool `json:"ready"`
	// FullyReplicated reports whether every partition had its full number
	// of ready copies at the node's last maintenance round.
	FullyReplicated bool `json:"fully_replicated"`
	// UnderReplicated is the number of partitions below their copy count
	// at that round; -1 before the first round.
	UnderReplicated int `json:"under_replicated"`
	// DegradedPeers is the number of peers that writes no longer wait for
	// until anti-entropy has repaired them.
	DegradedPeers int `json:"degraded_peers"`
	// Sessions is the number of records this node holds, tombstones
	// included.
	Sessions int `json:"sessions"`
	// Zones is the number of zones the owning members span, and
	// SingleZone the partitions whose copies all sit in one zone although
	// there are several: a zone's loss would lose them.
	Zones      int `json:"zones"`
	SingleZone int `json:"single_zone_partitions"`
	// Bytes is the estimated memory of those records (what MaxBytes
	// bounds).
	Bytes int64 `json:"bytes"`
	// MaxSessions and MaxBytes are the node's budget
	// (replication.Config.MaxSessions, MaxBytes); 0: no bound.
	MaxSessions int   `json:"max_sessions"`
	MaxBytes    int64 `json:"max_bytes"`
	// Overloaded counts the new sessions the node refused because it was
	// over its budget.
	Overloaded uint64 `json:"overloaded"`
	// Members are the live members, this node included, sorted by name.
	Members []MemberReport `json:"members"`
	// Departed are members this handler saw in an earlier report that are
	// no longer members (they failed or left), most recent first; they are
	// forgotten after 15 minutes or when they come back (32 at most).
	Departed []DepartedMember `json:"departed"`
	// Partitions describes each of the replication.Partitions partitions,
	// in order.
	Partitions []PartitionReport `json:"partitions"`
}

// MemberReport describes one member.
type MemberReport struct {
	// Name is the member's node name.
	Name string `json:"name"`
	// Addr is its gossip address.
	Addr string `json:"addr"`
	// ReplAddr is its replication address; empty for a member that does
	// not replicate sessions.
	ReplAddr string `json:"repl_addr"`
	// State is the member's state in the membership: "alive" or "suspect",
	// or "left" for this node after Leave.
	State string `json:"state"`
	// Self marks the node that made the report.
	Self bool `json:"self"`
	// Started is when the member's process started (its incarnation);
	// zero when unknown.
	Started time.Time `json:"started,omitzero"`
	// Degraded reports a peer that missed a write acknowledgement and is
	// not waited for until repaired.
	Degraded bool `json:"degraded"`
	// LastStatus is when the peer last answered this node's status poll;
	// zero for this node and for a peer that never answered.
	LastStatus time.Time `json:"last_status,omitzero"`
	// ClockOffset is how far the member's wall clock is ahead of this
	// node's, in seconds (negative: behind), as measured from lease
	// exchanges; 0 for this node and before the first exchange.
	ClockOffset float64 `json:"clock_offset_seconds"`
	// Protocol is the highest protocol version the peer speaks (1 for the
	// first release, 0 before its hello), and Refusal why it refuses this
	// node (empty while it accepts it).
	Protocol uint64 `json:"protocol,omitempty"`
	Refusal  string `json:"refusal,omitempty"`
	// Primary and Owned count the partitions the member is the primary of
	// and an owner of, in this node's view of ownership.
	Primary int `json:"primary"`
	Owned   int `json:"owned"`
	// Complete counts the partitions the member holds completely as an
	// owner, and Sessions the records it holds: this node's own counts, or
	// what the peer said at its last status answer.
	Complete int `json:"complete"`
	Sessions int `json:"sessions"`
}

// DepartedMember is a member that is gone.
type DepartedMember struct {
	// Name and Addr are the member's node name and gossip address.
	Name string `json:"name"`
	Addr string `json:"addr"`
	// Since is when the handler first noticed it gone.
	Since time.Time `json:"since"`
}

// PartitionReport describes one partition as this node sees it.
type PartitionReport struct {
	// Owners are the names of the owning members, primary first.
	Owners []string `json:"owners"`
	// Owned reports whether this node is among the owners, and Complete
	// whether it holds the partition completely.
	Owned    bool `json:"owned,omitempty"`
	Complete bool `json:"complete,omitempty"`
	// Sessions is the number of records this node holds in it.
	Sessions int `json:"sessions,omitempty"`
}

// Bounds of the departed members' memory.
const (
	departedTTL = 15 * time.Minute
	maxDeparted = 32
)

// reporter makes Reports and remembers the members it saw, so that a
// member that disappears shows as departed.
type reporter struct {
	store Store
	cl    Cluster
	now   func() time.Time

	mu       sync.Mutex                // guards seen and departed
	seen     map[string]string         // members of the previous report: name -> gossip address
	departed map[string]DepartedMember // by name
}

func newReporter(store Store, cl Cluster) *reporter {
	return &reporter{store: store, cl: cl, now: time.Now, departed: map[string]DepartedMember{}}
}

// report reads the store and the cluster; it never blocks on the network.
func (r *reporter) report() Report {
	st := r.store.Stats()
	self := r.cl.LocalMember()
	members := r.cl.Members()
	if !slices.ContainsFunc(members, func(m cluster.Member) bool { return m.Name == self.Name }) {
		members = append(members, self) // after Leave: still show this node
	}
	peers := map[string]replication.PeerInfo{}
	for _, p := range r.store.Peers() {
		peers[p.Name] = p
	}
	rep := Report{
		Node:            self.Name,
		Time:            r.now(),
		Mode:            r.store.Mode().String(),
		WriteConcern:    r.store.WriteConcern().String(),
		Ready:           st.Ready,
		FullyReplicated: r.store.FullyReplicated(),
		UnderReplicated: st.UnderReplicated,
		DegradedPeers:   st.DegradedPeers,
		Sessions:        st.Sessions,
		Zones:           st.Zones,
		SingleZone:      st.SingleZone,
		Bytes:           st.Bytes,
		MaxSessions:     st.MaxSessions,
		MaxBytes:        st.MaxBytes,
		Overloaded:      st.Overloaded,
	}

	primary, owned := map[string]int{}, map[string]int{}
	parts := r.store.Partitions()
	rep.Partitions = make([]PartitionReport, 0, len(parts))
	for _, p := range parts {
		for i, o := range p.Owners {
			owned[o]++
			if i == 0 {
				primary[o]++
			}
		}
		rep.Partitions = append(rep.Partitions, PartitionReport{
			Owners: append([]string{}, p.Owners...), Owned: p.Owned, Complete: p.Complete, Sessions: p.Sessions,
		})
	}

	for _, m := range members {
		mr := MemberReport{
			Name: m.Name, Addr: m.Addr, State: m.State.String(),
			Self: m.Name == self.Name, Primary: primary[m.Name], Owned: owned[m.Name],
		}
		if mr.Self {
			mr.State, mr.ReplAddr = self.State.String(), st.Addr
			mr.Complete, mr.Sessions = st.ReadyPartitions, st.Sessions
		} else if p, ok := peers[m.Name]; ok {
			mr.ReplAddr, mr.Degraded, mr.LastStatus = p.Addr, p.Degraded, p.LastStatus
			mr.ClockOffset = p.ClockOffset.Seconds()
			mr.Protocol, mr.Refusal = p.Protocol, p.Refusal
			mr.Complete, mr.Sessions = p.CompletePartitions, p.Sessions
		}
		if m.Incarnation > 0 {
			mr.Started = time.Unix(0, int64(m.Incarnation)).UTC()
		}
		rep.Members = append(rep.Members, mr)
	}
	// The membership is the authority on who is a member: a peer the store
	// still lists after the membership dropped it is on its way out of the
	// store's view too (it still shows among the partitions' owners until
	// then).
	slices.SortFunc(rep.Members, func(a, b MemberReport) int { return strings.Compare(a.Name, b.Name) })
	rep.Departed = r.track(rep.Members, rep.Time)
	return rep
}

// track updates the memory of members seen and returns the departed ones,
// most recent first.
func (r *reporter) track(members []MemberReport, now time.Time) []DepartedMember {
	r.mu.Lock()
	defer r.mu.Unlock()
	current := make(map[string]string, len(members))
	for _, m := range members {
		current[m.Name] = m.Addr
		delete(r.departed, m.Name) // came back
	}
	for name, addr := range r.seen {
		if _, ok := current[name]; !ok {
			r.departed[name] = DepartedMember{Name: name, Addr: addr, Since: now}
		}
	}
	r.seen = current
	out := make([]DepartedMember, 0, len(r.departed))
	for name, d := range r.departed {
		if now.Sub(d.Since) > departedTTL {
			delete(r.departed, name)
			continue
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b DepartedMember) int {
		if c := b.Since.Compare(a.Since); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	if len(out) > maxDeparted {
		for _, d := range out[maxDeparted:] {
			delete(r.departed, d.Name)
		}
		out = out[:maxDeparted]
	}
	return out
}
