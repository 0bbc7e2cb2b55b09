// Package healthz reads the /healthz answer of the login example
// (examples/login), for the programs that drive clusters of its processes:
// the demo and the chaos harness. Both wait, after every fault, until each
// live node is settled (see Health.Settled).
package healthz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// Health is a login server's answer to GET /healthz.
type Health struct {
	Joined          bool     `json:"joined"`
	Ready           bool     `json:"ready"`
	FullyReplicated bool     `json:"fully_replicated"`
	UnderReplicated int      `json:"under_replicated"`
	OwnerLosses     uint64   `json:"owner_losses"` // owners it found gone, each turning fully_replicated false
	Mode            string   `json:"mode"`
	Members         []string `json:"members"`
	Sessions        int      `json:"sessions"`
	OwnedPartitions int      `json:"owned_partitions"`
	ReadyPartitions int      `json:"ready_partitions"`
	Peers           int      `json:"peers"`
	DegradedPeers   int      `json:"degraded_peers"`
	Problem         string   `json:"problem"`     // why the node is not healthy (Store.Health), or empty
	Zones           int      `json:"zones"`       // zones the owning members span
	SingleZone      int      `json:"single_zone"` // partitions whose copies all sit in one zone while there are several

	Status int   `json:"-"` // the HTTP status
	Err    error `json:"-"` // the request or its decoding failed
}

// String is a short description for progress lines and failure messages.
func (h Health) String() string {
	if h.Err != nil {
		return h.Err.Error()
	}
	return fmt.Sprintf("status %d ready=%t fully_replicated=%t under_replicated=%d partitions ready/owned %d/%d peers=%d degraded=%d sessions=%d members=%s",
		h.Status, h.Ready, h.FullyReplicated, h.UnderReplicated, h.ReadyPartitions, h.OwnedPartitions,
		h.Peers, h.DegradedPeers, h.Sessions, strings.Join(h.Members, ","))
}

// Get asks the server at baseURL (no trailing slash) for its /healthz.
// Set a deadline on ctx or a timeout on client.
func Get(ctx context.Context, client *http.Client, baseURL string) Health {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/healthz", nil)
	if err != nil {
		return Health{Err: err}
	}
	resp, err := client.Do(req)
	if err != nil {
		return Health{Err: err}
	}
	defer resp.Body.Close()
	h := Health{Status: resp.StatusCode}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h); err != nil {
		h.Err = fmt.Errorf("status %d, unreadable body: %w", resp.StatusCode, err)
	}
	return h
}

// GetAll asks every server in baseURLs at once; the answers are in the
// same order.
func GetAll(ctx context.Context, client *http.Client, baseURLs []string) []Health {
	hs := make([]Health, len(baseURLs))
	var wg sync.WaitGroup
	for i, u := range baseURLs {
		wg.Go(func() { hs[i] = Get(ctx, client, u) })
	}
	wg.Wait()
	return hs
}

// Settled tells whether h, the health of one of the live nodes (their
// names, sorted), shows a node that is ready, sees exactly the live nodes
// (in its membership and in its store's view), holds a complete copy of
// every partition it owns and reports the cluster fully replicated; if
// not, it says why.
//
// "fully_replicated" alone is as of the node's last maintenance round, so
// it may still be true just after a membership change; the other
// conditions make sure the answer is about the current membership: once
// every live node sees the same members and holds every partition it owns
// completely, every partition has its full number of copies.
func (h Health) Settled(live []string) (bool, string) {
	if h.Err != nil {
		return false, h.Err.Error()
	}
	var why []string
	if h.Status != http.StatusOK {
		why = append(why, fmt.Sprintf("status %d", h.Status))
	}
	if !h.Ready {
		why = append(why, "not ready")
	}
	if !h.Sees(live) {
		why = append(why, fmt.Sprintf("members %s (want %s)", strings.Join(slices.Sorted(slices.Values(h.Members)), ","), strings.Join(live, ",")))
	}
	if h.Peers != len(live)-1 {
		why = append(why, fmt.Sprintf("store peers %d (want %d)", h.Peers, len(live)-1))
	}
	if h.ReadyPartitions != h.OwnedPartitions {
		why = append(why, fmt.Sprintf("%d of %d owned partitions ready", h.ReadyPartitions, h.OwnedPartitions))
	}
	if !h.FullyReplicated {
		why = append(why, fmt.Sprintf("not fully replicated (under_replicated %d)", h.UnderReplicated))
	}
	return len(why) == 0, strings.Join(why, ", ")
}

// Sees reports whether the node answered and its membership is exactly
// live (sorted names).
func (h Health) Sees(live []string) bool {
	return h.Err == nil && slices.Equal(slices.Sorted(slices.Values(h.Members)), live)
}
