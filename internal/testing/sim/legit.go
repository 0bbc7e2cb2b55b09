package sim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sessionmesh/sessionmesh/replication"
)

// partitionOf is the protocol's partition of a session ID
// (replication/partition.go: xxHash64 modulo Partitions, stable across
// versions).
func partitionOf(id string) int { return int(xxhash.Sum64String(id) % replication.Partitions) }

// asyncWindow is how long an asynchronous write may take to leave its
// node on a healthy network: it may be lost when the node, or the owner
// that coordinated it, crashes within that time.
const asyncWindow = 2 * time.Second

// converged records an observed convergence: every copy is in place, so
// no earlier fault can lose anything any more.
func (c *checker) converged(owners [replication.Partitions][]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.owners = owners
	clear(c.faulted)
}

// missed records nodes that may miss acknowledged writes from now on:
// frozen, cut off, behind a lossy link or wrongly declared dead.
func (c *checker) missed(nodes ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range nodes {
		c.faulted[n] = true
	}
}

// ownerSets returns, for partition p, the owners as of the last
// convergence and as the nodes see them now (current, which may be
// empty): after a node has rejoined, the first no longer names every node
// that may hold the only copy.
func (c *checker) ownerSets(p int, current *[replication.Partitions][]string) [][]string {
	sets := [][]string{c.owners[p]}
	if current != nil && len(current[p]) > 0 {
		sets = append(sets, current[p])
	}
	return sets
}

// crashed records the crash of x and voids the invariants of the
// sessions that may legitimately have lost writes with it: those of
// partitions all of whose owners (as of the last convergence, or as the
// nodes see them now) crashed or missed writes since the last
// convergence (Backups(1): two owners before re-replication; AllToAll:
// every node), and with asynchronous writes, those written in the last
// asyncWindow through x or owned by x.
func (c *checker) crashed(x string, now time.Duration, current *[replication.Partitions][]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faulted[x] = true
	for p := range c.owners {
		for _, owners := range c.ownerSets(p, current) {
			if !slices.Contains(owners, x) {
				continue
			}
			all := true
			for _, o := range owners {
				all = all && c.faulted[o]
			}
			if all {
				c.taintLocked(p, now, fmt.Sprintf("%.3fs: every owner of partition %d (%s) crashed or missed writes before re-replication",
					now.Seconds(), p, strings.Join(owners, ",")))
			}
		}
	}
	if c.concern != replication.Async {
		return
	}
	var owned [replication.Partitions]bool
	for p := range owned {
		owned[p] = slices.Contains(c.owners[p], x) || (current != nil && slices.Contains(current[p], x))
	}
	c.voidLocked(voiding{at: now, part: -1, node: x, owned: &owned,
		why: fmt.Sprintf("%.3fs: %s crashed during an asynchronous write", now.Seconds(), x)})
	for _, s := range c.sessions {
		if s.tainted == "" && s.lastAck >= now-asyncWindow && (s.lastAckNode == x || owned[s.part]) {
			s.tainted = fmt.Sprintf("%.3fs: %s crashed %v after an asynchronous write through %s",
				now.Seconds(), x, (now - s.lastAck).Round(time.Millisecond), s.lastAckNode)
			c.counts["sessions tainted"]++
		}
	}
}

// unavailable voids the invariants of the sessions whose owners (as of
// the last convergence, or as the nodes see them now) are all either out
// of the serving side's reach (away: down, frozen or cut off) or may have
// missed writes since the last convergence, one at least away: no owner
// the serving side reaches is sure to hold the session, so it reads and
// updates stale or empty copies, which merge by last writer wins with the
// others when they come back (the split brain of docs/consistency.md
// rules 11 and 18; Backups(1): two faulted owners).
func (c *checker) unavailable(away map[string]bool, now time.Duration, current *[replication.Partitions][]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.owners {
		for _, owners := range c.ownerSets(p, current) {
			all, some := len(owners) > 0, false
			for _, o := range owners {
				all = all && (away[o] || c.faulted[o])
				some = some || away[o]
			}
			if all && some {
				c.taintLocked(p, now, fmt.Sprintf("%.3fs: no owner of partition %d (%s) that the serving side reaches is sure to hold it",
					now.Seconds(), p, strings.Join(owners, ",")))
			}
		}
	}
}

// taintLocked voids the invariants of partition p's sessions, and of
// those whose login is in flight.
func (c *checker) taintLocked(p int, now time.Duration, why string) {
	c.voidLocked(voiding{at: now, part: p, why: why})
	for _, s := range c.sessions {
		if s.part == p && s.tainted == "" {
			s.tainted = why
			c.counts["sessions tainted"]++
		}
	}
}
