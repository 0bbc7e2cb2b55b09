package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// healthPollInterval is how often waitReplicated polls every node.
const healthPollInterval = 25 * time.Millisecond

// health is a login server's answer to GET /healthz.
type health struct {
	Joined          bool     `json:"joined"`
	Ready           bool     `json:"ready"`
	FullyReplicated bool     `json:"fully_replicated"`
	UnderReplicated int      `json:"under_replicated"`
	Mode            string   `json:"mode"`
	Members         []string `json:"members"`
	Sessions        int      `json:"sessions"`
	OwnedPartitions int      `json:"owned_partitions"`
	ReadyPartitions int      `json:"ready_partitions"`
	Peers           int      `json:"peers"`
	DegradedPeers   int      `json:"degraded_peers"`

	status int   // HTTP status
	err    error // the request or its decoding failed
}

// String is a short description for progress lines and failure messages.
func (h health) String() string {
	if h.err != nil {
		return h.err.Error()
	}
	return fmt.Sprintf("status %d ready=%t fully_replicated=%t under_replicated=%d partitions ready/owned %d/%d peers=%d degraded=%d sessions=%d members=%s",
		h.status, h.Ready, h.FullyReplicated, h.UnderReplicated, h.ReadyPartitions, h.OwnedPartitions,
		h.Peers, h.DegradedPeers, h.Sessions, strings.Join(h.Members, ","))
}

// getHealth asks n for its /healthz. Health polls are not counted as
// requests of any phase.
func (d *demo) getHealth(ctx context.Context, n *node) health {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.url+"/healthz", nil)
	if err != nil {
		return health{err: err}
	}
	resp, err := d.tr.RoundTrip(req)
	if err != nil {
		return health{err: err}
	}
	defer resp.Body.Close()
	var h health
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	h.status, h.err = resp.StatusCode, err
	return h
}

// healthOfAll asks every node in nodes at once.
func (d *demo) healthOfAll(ctx context.Context, nodes []*node) []health {
	hs := make([]health, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { hs[i] = d.getHealth(ctx, n) })
	}
	wg.Wait()
	return hs
}

// settled tells whether h, the health of one of the live nodes, shows a
// node that is ready, sees exactly the live nodes (in its membership and
// in its store's view), holds a complete copy of every partition it owns
// and reports the cluster fully replicated; if not, it says why.
//
// "fully_replicated" alone is as of the node's last maintenance round, so
// it may still be true just after a membership change; the other
// conditions make sure the answer is about the current membership: once
// every live node sees the same members and holds every partition it owns
// completely, every partition has its full number of copies.
func settled(h health, live []string) (bool, string) {
	var why []string
	switch {
	case h.err != nil:
		return false, h.err.Error()
	case h.status != http.StatusOK:
		why = append(why, fmt.Sprintf("status %d", h.status))
	}
	if !h.Ready {
		why = append(why, "not ready")
	}
	members := slices.Sorted(slices.Values(h.Members))
	if !slices.Equal(members, live) {
		why = append(why, fmt.Sprintf("members %s (want %s)", strings.Join(members, ","), strings.Join(live, ",")))
	}
	if h.Peers != len(live)-1 {
		why = append(why, fmt.Sprintf("store peers %d (want %d)", h.Peers, len(live)-1))
	}
	if h.ReadyPartitions != h.OwnedPartitions {
		why = append(why, fmt.Sprintf("%d of %d owned partitions ready", h.ReadyPartitions, h.OwnedPartitions))
	}
	if !h.FullyReplicated {
		why = append(why, fmt.Sprintf("fully_replicated false (under_replicated %d)", h.UnderReplicated))
	}
	return len(why) == 0, strings.Join(why, ", ")
}

// replWait is the outcome of waitReplicated.
type replWait struct {
	ok       bool
	took     time.Duration // from the reference time to the cluster fully replicated
	seen     time.Duration // from the reference time to every live node seeing exactly the live nodes; 0 = never
	maxUnder int           // the most under-replicated partitions one node reported
	polls    int
	last     []health // the last answer of each live node
	sessions int      // sessions held by the live nodes together, at the end

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
			ok, _ := settled(h, names)
			all = all && ok
			sees := h.err == nil && slices.Equal(slices.Sorted(slices.Values(h.Members)), names)
			allSee = allSee && sees
			r.maxUnder = max(r.maxUnder, h.UnderReplicated)
			switch {
			case ok || h.err != nil || !h.FullyReplicated:
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
		_, why := settled(r.last[i], names)
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
		if h.err != nil {
			sessions = append(sessions, fmt.Sprintf("%s ?(%v)", live[i].name, h.err))
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

// liveNodes returns the nodes that are running.
func (d *demo) liveNodes() []*node {
	var live []*node
	for _, n := range d.nodes {
		if n.proc.Running() {
			live = append(live, n)
		}
	}
	return live
}
