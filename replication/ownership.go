package replication

import (
	"fmt"
	"slices"
)

// Mode says which members own (hold a copy of) each session.
//
// The zero Mode is AllToAll. Compare modes with ==.
type Mode struct {
	owners int // copies of each partition; 0 means every member
}

// AllToAll makes every member own every session, like Tomcat's
// DeltaManager: every read is local and every write goes to every node.
// Right for a handful of servers; write traffic and memory grow with the
// cluster. It is the default.
var AllToAll = Mode{}

// Backups makes each session's partition owned by a primary and n backups
// chosen among the live members by rendezvous hashing, like Tomcat's
// BackupManager or Hazelcast's backup-count: a write costs n+1 copies
// whatever the cluster size, and a node that does not own a session reads
// and writes it through its owners. A cluster with n+1 members or fewer
// behaves like AllToAll. Backups(0) keeps a single copy: a crash loses that
// node's sessions, but a graceful leave hands them over.
func Backups(n int) Mode {
	if n < 0 {
		n = 0
	}
	return Mode{owners: n + 1}
}

// String returns "all-to-all" or "backups(n)".
func (m Mode) String() string {
	if m.owners == 0 {
		return "all-to-all"
	}
	return fmt.Sprintf("backups(%d)", m.owners-1)
}

// ownersOf returns the owners of partition p among members: all of them
// in AllToAll mode, else the mode's number of copies. Either way they are
// ordered by rendezvous (highest random weight) hashing of the partition
// and the member's name, so the first is the partition's primary, and a
// member joining or leaving moves only the partitions it wins or held.
// When the members span several zones, Backups mode takes the owners in
// that order but skips a member whose zone already holds a copy while a
// zone without one remains (see spreadZones). The result is a new slice;
// members is not modified.
func ownersOf(p int, members []*peer, m Mode) []*peer {
	ws := make([]weighted, len(members))
	for i, q := range members {
		ws[i] = weighted{q, rendezvousWeight(p, q.name)}
	}
	if m.owners > 0 && m.owners < len(ws) {
		ws = heaviestPerZone(ws, m.owners)
	}
	slices.SortFunc(ws, byWeight)
	ordered := make([]*peer, len(ws))
	for i := range ws {
		ordered[i] = ws[i].q
	}
	if m.owners == 0 || m.owners >= len(ordered) {
		return ordered
	}
	return spreadZones(ordered, m.owners)
}

// weighted is a member with its rendezvous weight for one partition.
type weighted struct {
	q *peer
	w uint64
}

// heavier orders members by weight, then name.
func heavier(a, b weighted) bool {
	return a.w > b.w || a.w == b.w && a.q.name < b.q.name
}

// byWeight compares for sorting, heaviest first.
func byWeight(a, b weighted) int {
	switch {
	case heavier(a, b):
		return -1
	case heavier(b, a):
		return 1
	}
	return 0
}

// heaviestPerZone keeps, of each zone's members, the n heaviest: the only
// ones spreadZones can pick for n owners, since it takes each zone's
// members in weight order and stops at n. Sorting those few instead of
// every member makes a view of 64 members several times cheaper to build,
// and a starting cluster builds one at every join.
func heaviestPerZone(ws []weighted, n int) []weighted {
	type zoneTop struct {
		zone string
		top  []weighted // heaviest first, at most n
	}
	var zones []zoneTop
	for _, w := range ws {
		i := slices.IndexFunc(zones, func(z zoneTop) bool { return z.zone == w.q.zone })
		if i < 0 {
			zones = append(zones, zoneTop{zone: w.q.zone, top: make([]weighted, 0, n+1)})
			i = len(zones) - 1
		}
		z := &zones[i]
		j := len(z.top)
		for j > 0 && heavier(w, z.top[j-1]) {
			j--
		}
		if j < n {
			z.top = slices.Insert(z.top, j, w)
			z.top = z.top[:min(len(z.top), n)]
		}
	}
	out := ws[:0]
	for _, z := range zones {
		out = append(out, z.top...)
	}
	return out
}

// spreadZones picks n owners from members ordered by weight: the heaviest
// member of each zone first, zones in the order of their heaviest member,
// until every zone holds a copy or n are picked; then the heaviest of the
// rest. With one zone it is the n heaviest members. The primary is always
// the heaviest member, so zones change only which backups a partition has.
// Like plain rendezvous hashing, a member joining or leaving moves only
// partitions whose owners it is or becomes, or whose zone spread it
// changes.
func spreadZones(members []*peer, n int) []*peer {
	out := make([]*peer, 0, n)
	picked := make([]bool, len(members))
	seen := map[string]bool{}
	for i, q := range members {
		if len(out) == n {
			return out
		}
		if !seen[q.zone] {
			seen[q.zone] = true
			out, picked[i] = append(out, q), true
		}
	}
	for i, q := range members {
		if len(out) == n {
			break
		}
		if !picked[i] {
			out = append(out, q)
		}
	}
	// Keep the owners in weight order: the first is the primary.
	slices.SortFunc(out, func(a, b *peer) int {
		return slices.Index(members, a) - slices.Index(members, b)
	})
	return out
}

// rendezvousWeight is the weight of a member for a partition. It depends
// on the member's name only (not its incarnation), so a restarted node gets
// its partitions back.
func rendezvousWeight(p int, name string) uint64 {
	h := newHash64()
	h.writeUint64(uint64(p))
	h.writeString(name)
	return h.sum()
}
