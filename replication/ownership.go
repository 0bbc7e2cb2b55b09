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
// member joining or leaving moves only the partitions it wins or held. The
// result is a new slice; members is not modified.
func ownersOf(p int, members []*peer, m Mode) []*peer {
	type weighted struct {
		q *peer
		w uint64
	}
	ws := make([]weighted, len(members))
	for i, q := range members {
		ws[i] = weighted{q, rendezvousWeight(p, q.name)}
	}
	slices.SortFunc(ws, func(a, b weighted) int {
		switch {
		case a.w > b.w:
			return -1
		case a.w < b.w:
			return 1
		case a.q.name < b.q.name:
			return -1
		case a.q.name > b.q.name:
			return 1
		}
		return 0
	})
	n := len(ws)
	if m.owners > 0 {
		n = min(n, m.owners)
	}
	out := make([]*peer, n)
	for i := range out {
		out[i] = ws[i].q
	}
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
