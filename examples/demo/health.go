package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/healthz"
)

// healthPollInterval is how often waitReplicated polls every node.
const healthPollInterval = 25 * time.Millisecond

// healthOfAll asks every node in nodes for its /healthz at once. Health
// polls are not counted as requests of any phase.
func (d *demo) healthOfAll(ctx context.Context, nodes []*node) []healthz.Health {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url
	}
	return healthz.GetAll(ctx, &http.Client{Transport: d.tr}, urls)
}

// replWait is the outcome of waitReplicated.
type replWait struct {
	ok       bool
	took     time.Duration // from the reference time to the cluster fully replicated
	seen     time.Duration // from the reference time to every live node seeing exactly the live nodes; 0 = never
	maxUnder int           // the most under-replicated partitions one node reported
	polls    int
	last     []healthz.Health // the last answer of each live node
	sessions int              // sessions held by the live nodes together, at the end

	// Answers "fully_replicated": true that were not (yet) about the live
	// nodes: before the node saw exactly the live nodes, and after it did
	// but while it still lacked partitions it owns.
	staleUnseen, staleMissing int
}

// waitReplicated polls every node in live until all are settled (see
// settled) or timeout has passed since from. Times are measured from from.
func (d *demo) waitReplicated(ctx context.Context, live []*node, from time.Time, timeout time.Duration) *replWait {
	names := make([]string, len(live))
	for i, n := range live {
		names[i] = n.name
	}
	slices.Sort(names)
	ctx, cancel := context.WithDeadline(ctx, from.Add(timeout))
	defer cancel()
	tick := time.NewTicker(healthPollInterval)
	defer tick.Stop()
	r := &replWait{}
	for {
		hs := d.healthOfAll(ctx, live)
		r.polls++
		r.last = hs
		all, allSee := true, true
		for _, h := range hs {
			ok, _ := h.Settled(names)
			all = all && ok
			sees := h.Sees(names)
			allSee = allSee && sees
			r.maxUnder = max(r.maxUnder, h.UnderReplicated)
			switch {
			case ok || h.Err != nil || !h.FullyReplicated:
			case !sees:
				r.staleUnseen++
			case h.ReadyPartitions != h.OwnedPartitions:
				r.staleMissing++
			}
		}
		if allSee && r.seen == 0 {
			r.seen = max(time.Since(from), time.Nanosecond)
		}
		if all {
			r.ok, r.took = true, time.Since(from)
			for _, h := range hs {
				r.sessions += h.Sessions
			}
			return r
		}
		select {
		case <-ctx.Done():
			r.took = time.Since(from)
			return r
		case <-tick.C:
		}
	}
}

// noteStale prints how many answers said fully replicated while the
// node's view was not yet about the live nodes.
func (d *demo) noteStale(r *replWait) {
	if r.staleUnseen > 0 {
		d.println("note: %d answers said \"fully_replicated\": true while the node still listed other members than the live nodes (the failure or the join not detected yet): the flag alone says nothing right after a membership change",
			r.staleUnseen)
	}
	if r.staleMissing > 0 {
		d.println("note: %d answers said \"fully_replicated\": true while the node saw exactly the live nodes but lacked some of the partitions it owns (the flag is as of the node's last maintenance round)",
			r.staleMissing)
	}
}

// describe lists each node's last answer, for a failure message.
func (r *replWait) describe(live []*node) string {
	var b strings.Builder
	names := make([]string, len(live))
	for i, n := range live {
		names[i] = n.name
	}
	slices.Sort(names)
	for i, n := range live {
		if i >= len(r.last) {
			break
		}
		_, why := r.last[i].Settled(names)
		fmt.Fprintf(&b, "\n    %s: %s\n      (%s)", n.name, why, r.last[i])
	}
	return b.String()
}

// printClusterState prints the replication mode and how the sessions and
// partitions are spread over the live nodes, and records the mode.
func (d *demo) printClusterState(ctx context.Context, live []*node) {
	hs := d.healthOfAll(ctx, live)
	var sessions, owned []string
	modes := map[string]bool{}
	for i, h := range hs {
		if h.Err != nil {
			sessions = append(sessions, fmt.Sprintf("%s ?(%v)", live[i].name, h.Err))
			continue
		}
		modes[h.Mode] = true
		d.mode = h.Mode
		sessions = append(sessions, fmt.Sprintf("%s %d", live[i].name, h.Sessions))
		owned = append(owned, fmt.Sprintf("%s %d", live[i].name, h.OwnedPartitions))
	}
	mode := strings.Join(slices.Sorted(maps.Keys(modes)), " and ")
	d.printf("cluster: mode %s; sessions held (tombstones included): %s; partitions owned: %s",
		mode, strings.Join(sessions, ", "), strings.Join(owned, ", "))
}
