package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/healthz"
	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
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

// healthOfAll polls every node of live at once.
func (p *probe) healthOfAll(ctx context.Context, live []*node) []healthz.Health {
	urls := make([]string, len(live))
	for i, n := range live {
		urls[i] = n.httpURL
	}
	return healthz.GetAll(ctx, p.client, urls)
}

// allSettled polls live once and reports whether every node is settled
// with exactly live as members, with each node's reason if not.
func (p *probe) allSettled(ctx context.Context, live []*node) (bool, string) {
	names := nodeNames(live)
	ok := true
	var why []string
	for i, h := range p.healthOfAll(ctx, live) {
		s, reason := h.Settled(names)
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
