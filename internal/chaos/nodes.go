package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/procs"
)

// healthPollInterval is how often the harness polls /healthz while it
// waits for the cluster to settle.
const healthPollInterval = 50 * time.Millisecond

// node is one login server process. Only the goroutine running the
// schedule changes down and frozen.
type node struct {
	name     string
	host     string // the address every listener of the node binds
	httpURL  string // http://host:port
	hostPort string // host:port of the HTTP listener, as the proxy's backend
	pprofURL string
	proc     *procs.Process

	down   bool // killed or terminated by the harness, not restarted yet
	frozen bool // SIGSTOPped
}

// signal sends sig to the node's process group (the node leads it).
func (n *node) signal(sig syscall.Signal) error {
	if err := syscall.Kill(-n.proc.Pid(), sig); err != nil {
		return fmt.Errorf("%s to %s (pid %d): %w", sig, n.name, n.proc.Pid(), err)
	}
	return nil
}

// health is a login server's answer to GET /healthz.
type health struct {
	Joined          bool     `json:"joined"`
	Ready           bool     `json:"ready"`
	FullyReplicated bool     `json:"fully_replicated"`
	UnderReplicated int      `json:"under_replicated"`
	Members         []string `json:"members"`
	Sessions        int      `json:"sessions"`
	OwnedPartitions int      `json:"owned_partitions"`
	ReadyPartitions int      `json:"ready_partitions"`
	Peers           int      `json:"peers"`
	DegradedPeers   int      `json:"degraded_peers"`

	status int
	err    error
}

// String describes the answer for failure messages.
func (h health) String() string {
	if h.err != nil {
		return h.err.Error()
	}
	return fmt.Sprintf("status %d ready=%t fully_replicated=%t under_replicated=%d partitions ready/owned %d/%d peers=%d degraded=%d sessions=%d members=%s",
		h.status, h.Ready, h.FullyReplicated, h.UnderReplicated, h.ReadyPartitions, h.OwnedPartitions,
		h.Peers, h.DegradedPeers, h.Sessions, strings.Join(h.Members, ","))
}

// settled tells whether h shows a node that is ready, sees exactly the
// live nodes (in its membership and its store), holds every partition it
// owns and reports every session fully replicated; if not, it says why.
// "fully_replicated" alone is as of the node's last maintenance round, so
// the other conditions make sure the answer is about the current
// membership.
func settled(h health, live []string) (bool, string) {
	if h.err != nil {
		return false, h.err.Error()
	}
	var why []string
	if h.status != http.StatusOK {
		why = append(why, fmt.Sprintf("status %d", h.status))
	}
	if !h.Ready {
		why = append(why, "not ready")
	}
	if members := slices.Sorted(slices.Values(h.Members)); !slices.Equal(members, live) {
		why = append(why, fmt.Sprintf("members %s (want %s)", strings.Join(members, ","), strings.Join(live, ",")))
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

// probe is the harness's HTTP client for health and resource polls: it
// never goes through the load balancer.
type probe struct {
	tr     *http.Transport
	client *http.Client
}

func newProbe() *probe {
	tr := &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: time.Second}).DialContext, MaxIdleConnsPerHost: 4}
	return &probe{tr: tr, client: &http.Client{Transport: tr, Timeout: 2 * time.Second}}
}

func (p *probe) close() { p.tr.CloseIdleConnections() }

// health asks n for its /healthz.
func (p *probe) health(ctx context.Context, n *node) health {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.httpURL+"/healthz", nil)
	if err != nil {
		return health{err: err}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return health{err: err}
	}
	defer resp.Body.Close()
	h := health{status: resp.StatusCode}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h); err != nil {
		h.err = fmt.Errorf("status %d, unreadable body: %w", resp.StatusCode, err)
	}
	return h
}

// healthOfAll polls every node of live at once.
func (p *probe) healthOfAll(ctx context.Context, live []*node) []health {
	hs := make([]health, len(live))
	var wg sync.WaitGroup
	for i, n := range live {
		wg.Go(func() { hs[i] = p.health(ctx, n) })
	}
	wg.Wait()
	return hs
}

// allSettled polls live once and reports whether every node is settled
// with exactly live as members, with each node's reason if not.
func (p *probe) allSettled(ctx context.Context, live []*node) (bool, string) {
	names := nodeNames(live)
	ok := true
	var why []string
	for i, h := range p.healthOfAll(ctx, live) {
		s, reason := settled(h, names)
		if !s {
			ok = false
			why = append(why, fmt.Sprintf("%s: %s", live[i].name, reason))
		}
	}
	return ok, strings.Join(why, "; ")
}

// waitSettled polls live until every node is settled or the deadline
// passes, and returns the last reasons when it gives up.
func (p *probe) waitSettled(ctx context.Context, live []*node, deadline time.Time) (bool, string) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	tick := time.NewTicker(healthPollInterval)
	defer tick.Stop()
	for {
		ok, why := p.allSettled(ctx, live)
		if ok {
			return true, ""
		}
		select {
		case <-ctx.Done():
			return false, why
		case <-tick.C:
		}
	}
}

// resources is one sample of a node process's goroutines and live heap.
type resources struct {
	goroutines int
	heap       int64 // HeapAlloc right after a GC
}

// resources reads n's goroutine count and live heap from its pprof
// endpoint (the heap after a forced GC, so garbage does not count).
func (p *probe) resources(ctx context.Context, n *node) (resources, error) {
	var r resources
	err := p.pprofLines(ctx, n.pprofURL+"/debug/pprof/goroutine?debug=1", func(line string) bool {
		if rest, ok := strings.CutPrefix(line, "goroutine profile: total "); ok {
			r.goroutines, _ = strconv.Atoi(strings.TrimSpace(rest))
			return false
		}
		return true
	})
	if err != nil {
		return r, err
	}
	err = p.pprofLines(ctx, n.pprofURL+"/debug/pprof/heap?debug=1&gc=1", func(line string) bool {
		if rest, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			r.heap, _ = strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			return false
		}
		return true
	})
	if err == nil && (r.goroutines == 0 || r.heap == 0) {
		err = fmt.Errorf("%s: no goroutine count or heap size in the pprof answers", n.name)
	}
	return r, err
}

// pprofLines calls fn with each line of the answer to url until fn
// returns false.
func (p *probe) pprofLines(ctx context.Context, url string, fn func(string) bool) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.tr.RoundTrip(req) // no client timeout: a heap profile of a big heap takes a while
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if !fn(sc.Text()) {
			return nil
		}
	}
	return sc.Err()
}

func nodeNames(nodes []*node) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.name
	}
	slices.Sort(out)
	return out
}
