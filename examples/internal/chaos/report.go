package chaos

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/loadgen"
)

// FaultResult is what happened during one fault and the recovery from it.
// Durations are measured from the injection.
type FaultResult struct {
	Fault
	// Skipped says why the fault was not injected ("" if it was).
	Skipped string
	// Failed says why the cluster did not recover ("" if it did).
	Failed string
	// Injected is when the fault began (for a partition, after the
	// drain).
	Injected time.Time
	// StopTook is SIGTERM to exit (Term only).
	StopTook time.Duration
	// Degraded is when the nodes not faulted had settled without the
	// faulted one (every one ready, seeing exactly the others, fully
	// replicated); 0 if not before the repair.
	Degraded time.Duration
	// Repaired is when the repair began: restart, SIGCONT or heal.
	Repaired time.Duration
	// Healthy is when a restarted node answered /healthz 200.
	Healthy time.Duration
	// Settled is when every node was ready, saw every other and reported
	// every session fully replicated again.
	Settled time.Duration
	// Verified is when every user had been answered correctly by every
	// node, directly, after Settled.
	Verified time.Duration
	// ServedAgain is when the last failed, 401 or slow (over
	// Config.SlowThreshold) answer of the failover came: from then on
	// every user was served normally. 0 if there was none.
	ServedAgain time.Duration
	// Requests, Errors and Slow count the users' requests sent from the
	// injection to Verified, those that failed, and those slower than
	// Config.SlowThreshold; Anomalies the anomalies among them.
	Requests, Errors, Slow, Anomalies int64
	// P50, P99 and Max are their latencies.
	P50, P99, Max time.Duration
	// ErrorKinds counts the failed requests by kind.
	ErrorKinds map[string]int
}

// summary describes the outcome on one line.
func (r *FaultResult) summary() string {
	if r.Skipped != "" {
		return "skipped: " + r.Skipped
	}
	if r.Failed != "" {
		return "FAILED: " + r.Failed
	}
	var parts []string
	if r.Kind == Term {
		parts = append(parts, fmt.Sprintf("exited %s after SIGTERM", rnd(r.StopTook)))
	}
	if r.Degraded > 0 {
		parts = append(parts, fmt.Sprintf("others fully replicated without it after %s", rnd(r.Degraded)))
	}
	if r.Healthy > 0 {
		parts = append(parts, fmt.Sprintf("restarted at %s, healthy at %s", rnd(r.Repaired), rnd(r.Healthy)))
	} else {
		parts = append(parts, fmt.Sprintf("repaired at %s", rnd(r.Repaired)))
	}
	parts = append(parts,
		fmt.Sprintf("all fully replicated at %s", rnd(r.Settled)),
		fmt.Sprintf("every user verified on every node at %s", rnd(r.Verified)),
		fmt.Sprintf("served normally again at %s", rnd(r.ServedAgain)),
		fmt.Sprintf("%d requests, %d errors, %d slow, p99 %s, max %s", r.Requests, r.Errors, r.Slow, rnd(r.P99), rnd(r.Max)))
	if r.Anomalies > 0 {
		parts = append(parts, fmt.Sprintf("%d ANOMALIES", r.Anomalies))
	}
	return strings.Join(parts, "; ")
}

// SoakSample is one reading of a node process's resources, taken at a
// quiet point (after the recovery from a fault).
type SoakSample struct {
	// At is the time since the start of the run.
	At time.Duration
	// Goroutines is the process's goroutine count.
	Goroutines int
	// HeapBytes is its live heap (HeapAlloc after a forced GC).
	HeapBytes int64
}

// SoakSeries is the samples of one run of one node process (a restart
// begins a new series) and the verdict on them.
type SoakSeries struct {
	// Node names the node and Start counts its starts (1: the first run).
	Node  string
	Start int
	// Samples are in time order.
	Samples []SoakSample
	// Judged is set when there were enough samples to judge growth.
	Judged bool
	// FirstGoroutines, LastGoroutines, FirstHeap and LastHeap are the
	// medians of the first and of the last third of the samples.
	FirstGoroutines, LastGoroutines int
	FirstHeap, LastHeap             int64
	// Grew says what grew beyond the limits ("" if nothing did).
	Grew string
}

// Report is the outcome of a run.
type Report struct {
	// Seed is the seed of the fault schedule; Config the configuration,
	// defaults filled in.
	Seed   uint64
	Config Config
	// Build describes the login binary: Go version, source revision.
	Build string
	// Network describes where the nodes ran; NetworkSkipped says why the
	// network faults were skipped ("" if they were not).
	Network, NetworkSkipped string
	// Plan is the fault schedule; Faults the results of its prefix that
	// ran.
	Plan   []Fault
	Faults []*FaultResult
	// FaultsStarted is when the first fault began (after the warm-up);
	// FaultsTook how long the faults and recoveries took together.
	FaultsStarted time.Time
	FaultsTook    time.Duration
	// Requests counts the users' requests; Answered those answered 200
	// or 401, Errors the others (no answer, 5xx, 502 from the load
	// balancer); ErrorsOutsideFailover the errors of requests sent
	// between faults; Timeouts those the client gave up on.
	Requests, Answered, Errors, ErrorsOutsideFailover, Timeouts int64
	// Logins, Logouts and Visits count the acknowledged ones.
	Logins, Logouts, Visits int64
	// Latency holds every request's latency; FailoverLatency those sent
	// during a fault or the recovery from it.
	Latency, FailoverLatency *loadgen.Histogram
	// ProxyRetries counts the load balancer's retries on another node
	// after a connection error; ProxyFailed its 502 answers.
	ProxyRetries, ProxyFailed int64
	// FinalSettled is how long the cluster took to settle after the
	// workload stopped.
	FinalSettled time.Duration
	// Soak holds the resource samples of every node process.
	Soak []*SoakSeries
	// Anomalies lists everything that went wrong, in the order found.
	Anomalies []*Anomaly
	// LogDir is where the node logs are ("" when removed after a clean
	// run).
	LogDir string
	// Started is when the run began: the times in progress lines and
	// anomaly histories count from it. Took is the run's total time.
	Started time.Time
	Took    time.Duration
}

// OK reports whether the run found no anomaly.
func (r *Report) OK() bool { return len(r.Anomalies) == 0 }

// Count returns the number of anomalies of kind k.
func (r *Report) Count(k AnomalyKind) int {
	n := 0
	for _, a := range r.Anomalies {
		if a.Kind == k {
			n++
		}
	}
	return n
}

// sessionsWith returns the number of sessions with anomalies of kind k.
func (r *Report) sessionsWith(k AnomalyKind) int {
	seen := map[string]bool{}
	for _, a := range r.Anomalies {
		if a.Kind == k && a.Session != "" {
			seen[a.User+"/"+a.Session] = true
		}
	}
	return len(seen)
}

// Injected returns the faults that were injected (not skipped).
func (r *Report) Injected() []*FaultResult {
	var out []*FaultResult
	for _, f := range r.Faults {
		if f.Skipped == "" {
			out = append(out, f)
		}
	}
	return out
}

func (r *Report) addSample(node string, start int, s SoakSample) {
	for _, ser := range r.Soak {
		if ser.Node == node && ser.Start == start {
			ser.Samples = append(ser.Samples, s)
			return
		}
	}
	r.Soak = append(r.Soak, &SoakSeries{Node: node, Start: start, Samples: []SoakSample{s}})
}

// judgeSoak compares, for every series with enough samples, the medians
// of its first and last thirds, and reports growth beyond the limits.
func (r *Report) judgeSoak(lim SoakLimits, report func(*Anomaly)) {
	for _, s := range r.Soak {
		n := len(s.Samples)
		if n < lim.MinSamples {
			continue
		}
		s.Judged = true
		third := n / 3
		first, last := s.Samples[:third], s.Samples[n-third:]
		goroutines := func(x SoakSample) int64 { return int64(x.Goroutines) }
		heap := func(x SoakSample) int64 { return x.HeapBytes }
		s.FirstGoroutines, s.LastGoroutines = int(median(first, goroutines)), int(median(last, goroutines))
		s.FirstHeap, s.LastHeap = median(first, heap), median(last, heap)
		var grew []string
		if limit := s.FirstGoroutines + s.FirstGoroutines/10 + lim.Goroutines; s.LastGoroutines > limit {
			grew = append(grew, fmt.Sprintf("goroutines %d -> %d (limit %d)", s.FirstGoroutines, s.LastGoroutines, limit))
		}
		if limit := s.FirstHeap + s.FirstHeap/4 + lim.HeapBytes; s.LastHeap > limit {
			grew = append(grew, fmt.Sprintf("live heap %s -> %s (limit %s)", mib(s.FirstHeap), mib(s.LastHeap), mib(limit)))
		}
		if len(grew) > 0 {
			s.Grew = strings.Join(grew, ", ")
			report(&Anomaly{Kind: Leak, Node: s.Node, At: time.Now(),
				Detail: fmt.Sprintf("process start #%d, %d samples from %s to %s: %s", s.Start, n, rnd(s.Samples[0].At), rnd(s.Samples[n-1].At), s.Grew)})
		}
	}
}

// median returns the median of f over the samples.
func median(xs []SoakSample, f func(SoakSample) int64) int64 {
	v := make([]int64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// rnd rounds a duration for printing.
func rnd(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}

// WriteText writes the report for people: the numbers, each fault's
// recovery, the soak series, and every anomaly with its evidence.
func (r *Report) WriteText(w io.Writer) error {
	ew := &loadgen.ErrWriter{W: w}
	p := ew.Printf
	c := r.Config
	p("chaos report (seed %d)\n", r.Seed)
	p("  build        %s\n", r.Build)
	p("  cluster      %d nodes, backups %d%s, session lifetime %s; %s\n", c.Nodes, c.Backups,
		map[bool]string{true: ", async writes", false: ", sync writes"}[c.Async], c.SessionLifetime, r.Network)
	if r.NetworkSkipped != "" {
		p("  NOTE         network faults skipped: %s\n", r.NetworkSkipped)
	}
	injected := r.Injected()
	byKind := map[FaultKind]int{}
	for _, f := range injected {
		byKind[f.Kind]++
	}
	var kinds []string
	for _, k := range AllKinds {
		if byKind[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%d %s", byKind[k], k))
		}
	}
	p("  faults       %d injected (%s), %d skipped, in %s; %d planned\n", len(injected), strings.Join(kinds, ", "),
		len(r.Faults)-len(injected), rnd(r.FaultsTook), len(r.Plan))
	p("  users        %d on %d workers; %d logins, %d logouts, %d visits acknowledged\n", c.Users, c.Concurrency, r.Logins, r.Logouts, r.Visits)
	p("  requests     %d (%d answered, %d errors: %d during failover, %d between faults; %d client timeouts)\n",
		r.Requests, r.Answered, r.Errors, r.Errors-r.ErrorsOutsideFailover, r.ErrorsOutsideFailover, r.Timeouts)
	p("  proxy        %d retries on the next node after a connection error, %d answered 502\n", r.ProxyRetries, r.ProxyFailed)
	if r.Latency != nil {
		p("  latency      all: %s\n", loadgen.Percentiles(r.Latency))
	}
	if r.FailoverLatency != nil && r.FailoverLatency.Count() > 0 {
		p("               during failover (%d requests): %s\n", r.FailoverLatency.Count(), loadgen.Percentiles(r.FailoverLatency))
	}
	if len(injected) > 0 {
		p("  recovery     (from the fault: median / max)\n")
		for _, k := range AllKinds {
			var rs []*FaultResult
			for _, f := range injected {
				if f.Kind == k && f.Failed == "" {
					rs = append(rs, f)
				}
			}
			if len(rs) == 0 {
				continue
			}
			stat := func(f func(*FaultResult) time.Duration) string {
				v := make([]time.Duration, len(rs))
				for i, x := range rs {
					v[i] = f(x)
				}
				slices.Sort(v)
				return fmt.Sprintf("%s / %s", rnd(v[len(v)/2]), rnd(v[len(v)-1]))
			}
			p("    %-9s  served normally again %s; fully replicated %s; every user verified on every node %s; %d errors in all\n", k,
				stat(func(f *FaultResult) time.Duration { return f.ServedAgain }),
				stat(func(f *FaultResult) time.Duration { return f.Settled }),
				stat(func(f *FaultResult) time.Duration { return f.Verified }),
				sumErrors(rs))
		}
	}
	p("  final        settled %s after the workload stopped\n", rnd(r.FinalSettled))
	p("  anomalies    %d\n", len(r.Anomalies))
	for _, k := range AllAnomalyKinds {
		n, sessions := r.Count(k), r.sessionsWith(k)
		if sessions > 0 {
			p("    %-34s %d (%d sessions)\n", k.String(), n, sessions)
		} else {
			p("    %-34s %d\n", k.String(), n)
		}
	}
	if len(r.Soak) > 0 {
		p("  soak         goroutines and live heap per node process, first-third -> last-third medians:\n")
		var others, unjudged, maxG int
		var maxH int64
		for _, s := range r.Soak {
			switch {
			case !s.Judged:
				unjudged++
				continue
			case s.Grew == "" && !slices.Contains(c.Protect, s.Node):
				others++
				maxG = max(maxG, s.LastGoroutines-s.FirstGoroutines)
				maxH = max(maxH, s.LastHeap-s.FirstHeap)
				continue
			}
			verdict := "flat"
			if s.Grew != "" {
				verdict = "GREW: " + s.Grew
			}
			p("    %s (start #%d, %d samples over %s): goroutines %d -> %d, heap %s -> %s: %s\n", s.Node, s.Start, len(s.Samples),
				rnd(s.Samples[len(s.Samples)-1].At-s.Samples[0].At), s.FirstGoroutines, s.LastGoroutines, mib(s.FirstHeap), mib(s.LastHeap), verdict)
		}
		if others > 0 {
			p("    %d runs of faulted nodes (between restarts): flat; largest growth %+d goroutines, %+.1f MiB heap\n", others, maxG, float64(maxH)/(1<<20))
		}
		if unjudged > 0 {
			p("    %d shorter runs of faulted nodes had too few samples to judge\n", unjudged)
		}
	}
	p("  faults:\n")
	for _, f := range r.Faults {
		p("    %s\n      -> %s\n", f.Fault, f.summary())
		for _, k := range slices.Sorted(maps.Keys(f.ErrorKinds)) {
			p("         %5d x %s\n", f.ErrorKinds[k], k)
		}
	}
	if len(r.Anomalies) > 0 {
		p("  ANOMALIES (seed %d; node logs in %s):\n", r.Seed, cmp.Or(r.LogDir, "-"))
		for i, a := range r.Anomalies {
			who := a.Node
			if a.User != "" {
				who = fmt.Sprintf("%s, session %s, node %s", a.User, a.Session, a.Node)
			}
			p("  %d. %s (%s; fault #%d; at %.3fs = %s UTC)\n     %s\n", i+1, a.Kind, who, a.Fault,
				a.At.Sub(r.Started).Seconds(), a.At.UTC().Format("15:04:05.000"), a.Detail)
			for _, h := range a.History {
				p("       %s\n", h)
			}
		}
	}
	return ew.Err
}

func sumErrors(rs []*FaultResult) int64 {
	var n int64
	for _, r := range rs {
		n += r.Errors
	}
	return n
}
