package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mix is the share of writes in a workload.
type Mix struct {
	// Name identifies the mix in reports.
	Name string
	// WritePercent is the percentage of requests that are POST /visit (a
	// session write); the others are GET /me (a session read).
	WritePercent int
}

// The mixes of the benchmark.
var (
	// ReadHeavy is 90% GET /me, 10% POST /visit: users mostly browse.
	ReadHeavy = Mix{Name: "read-heavy", WritePercent: 10}
	// WriteHeavy is 100% POST /visit: every request writes the session.
	WriteHeavy = Mix{Name: "write-heavy", WritePercent: 100}
)

// ParseMix returns the Mix called "read-heavy" (or "read"), "write-heavy"
// (or "write"), or "writes=N" for N% writes.
func ParseMix(s string) (Mix, error) {
	switch s {
	case "read-heavy", "read":
		return ReadHeavy, nil
	case "write-heavy", "write":
		return WriteHeavy, nil
	}
	if v, ok := strings.CutPrefix(s, "writes="); ok {
		n, err := strconv.Atoi(v)
		if err == nil && n >= 0 && n <= 100 {
			return Mix{Name: s, WritePercent: n}, nil
		}
	}
	return Mix{}, fmt.Errorf(`unknown mix %q: want "read-heavy", "write-heavy" or "writes=N" (0..100)`, s)
}

// Operation names, as they appear in Result.Ops.
const (
	OpLogin = "POST /login"
	OpMe    = "GET /me"
	OpVisit = "POST /visit"
)

// Config describes a load run. Zero fields take the documented defaults.
type Config struct {
	// BaseURL is where the application (or the load balancer in front of
	// it) listens, such as "http://127.0.0.1:8080". Required unless
	// MoreURLs is set.
	BaseURL string
	// MoreURLs are further base URLs of the same application. With them the
	// load generator is itself the load balancer: consecutive requests, of
	// all users together, rotate over BaseURL and MoreURLs (round robin, not
	// sticky; each user's cookies go to every server).
	MoreURLs []string
	// Users is the number of simulated users, each with its own cookie jar
	// and session. At least Concurrency. Default 1000.
	Users int
	// Concurrency is the number of requests in flight at once (workers).
	// Default 32.
	Concurrency int
	// Duration is the measured part of the run. Default 10s.
	Duration time.Duration
	// Warmup runs the mix this long before measuring. Default 0.
	Warmup time.Duration
	// Mix is the share of writes. Default ReadHeavy.
	Mix Mix
	// UserPrefix starts every user name; users are UserPrefix-0,
	// UserPrefix-1, ... Default "user".
	UserPrefix string
	// Password is sent at login. Default "demo".
	Password string
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	// Seed seeds the random choice of operations. Default 1.
	Seed uint64
	// Transport sends the requests. Default: a keep-alive transport of the
	// run's own, with an idle pool as large as Concurrency, closed at the
	// end of the run.
	Transport http.RoundTripper
	// OnMix, if set, is called once when the logins are done and the mix
	// starts (warm-up included), with the time the measured window will
	// end: for starting a profile of the servers under the mix. It must
	// not block.
	OnMix func(end time.Time)
	// OnMeasure, if set, is called once when the measured window starts
	// (after the warm-up), from the goroutine of Run: for reading counters
	// of the servers over exactly the window. It must not block. The
	// window ends when Run returns.
	OnMeasure func()
}

func (c *Config) setDefaults() error {
	if c.BaseURL == "" && len(c.MoreURLs) > 0 {
		c.BaseURL, c.MoreURLs = c.MoreURLs[0], c.MoreURLs[1:]
	}
	if c.BaseURL == "" {
		return errors.New("loadgen: Config.BaseURL is required")
	}
	c.MoreURLs = slices.Clone(c.MoreURLs)
	for i, s := range append([]string{c.BaseURL}, c.MoreURLs...) {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("loadgen: base URL %q is not an absolute http(s) URL", s)
		}
		if i == 0 {
			c.BaseURL = strings.TrimSuffix(s, "/")
		} else {
			c.MoreURLs[i-1] = strings.TrimSuffix(s, "/")
		}
	}
	if c.Users == 0 {
		c.Users = 1000
	}
	if c.Concurrency == 0 {
		c.Concurrency = 32
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Mix.Name == "" {
		c.Mix = ReadHeavy
	}
	if c.UserPrefix == "" {
		c.UserPrefix = "user"
	}
	if c.Password == "" {
		c.Password = "demo"
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	switch {
	case c.Concurrency < 1:
		return fmt.Errorf("loadgen: concurrency %d < 1", c.Concurrency)
	case c.Users < c.Concurrency:
		return fmt.Errorf("loadgen: %d users cannot keep %d requests in flight: a user waits for each response", c.Users, c.Concurrency)
	case c.Duration < 0 || c.Warmup < 0:
		return errors.New("loadgen: negative duration")
	case c.Mix.WritePercent < 0 || c.Mix.WritePercent > 100:
		return fmt.Errorf("loadgen: write percentage %d outside 0..100", c.Mix.WritePercent)
	}
	return nil
}

// OpStats are the statistics of one kind of request.
type OpStats struct {
	// Requests counts the requests completed, failed ones included.
	Requests uint64
	// Errors counts requests that failed: no response, or a status other
	// than the one the contract promises.
	Errors uint64
	// Mismatches counts responses with the right status but a body that
	// contradicts the user's earlier requests (wrong user, a visit count
	// that is not exactly one more than the last one seen).
	Mismatches uint64
	// Latency holds the latency of every completed request.
	Latency Histogram
}

func (s *OpStats) merge(o *OpStats) {
	if o == nil {
		return
	}
	s.Requests += o.Requests
	s.Errors += o.Errors
	s.Mismatches += o.Mismatches
	s.Latency.Merge(&o.Latency)
}

// Result is what a run measured.
type Result struct {
	// Config is the configuration the run used, defaults filled in.
	Config Config
	// Elapsed is the length of the measured window: from its start until
	// the last request started in it completed.
	Elapsed time.Duration
	// Total sums Ops.
	Total OpStats
	// Ops has the statistics of each operation (OpMe, OpVisit, and OpLogin
	// for users logging in again after a 401) in the measured window.
	Ops map[string]*OpStats
	// Logins are the statistics of the initial logins, before the window.
	Logins OpStats
	// ErrorSamples holds up to 8 distinct error messages, for diagnosis.
	ErrorSamples []string
}

// Merge adds the requests of o, a run of the same workload (for example a
// later slice of an interleaved comparison), to r: counts and latencies add
// up, and so do the measured windows.
func (r *Result) Merge(o *Result) {
	if o == nil {
		return
	}
	r.Elapsed += o.Elapsed
	r.Total.merge(&o.Total)
	r.Logins.merge(&o.Logins)
	if r.Ops == nil {
		r.Ops = map[string]*OpStats{}
	}
	for op, s := range o.Ops {
		if r.Ops[op] == nil {
			r.Ops[op] = &OpStats{}
		}
		r.Ops[op].merge(s)
	}
	e := &errorSampler{max: 8, seen: r.ErrorSamples}
	for _, msg := range o.ErrorSamples {
		e.add(msg)
	}
	r.ErrorSamples = e.list()
}

// RequestsPerSecond returns the successful (non-error) requests completed
// per second of the measured window.
func (r *Result) RequestsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Total.Requests-r.Total.Errors) / r.Elapsed.Seconds()
}

// user is one simulated browser.
type user struct {
	name     string
	client   *http.Client
	loggedIn bool
	visits   int // the count the server last reported
}

// worker issues the requests of a fixed share of the users, one at a time.
type worker struct {
	cfg    *Config
	urls   []string       // BaseURL and MoreURLs
	next   *atomic.Uint64 // the rotation over urls, shared by the workers
	users  []*user
	rng    *rand.Rand
	ops    map[string]*OpStats
	errors *errorSampler
	buf    bytes.Buffer
}

// Run runs the workload of cfg and returns its statistics. It returns an
// error when the configuration is invalid, when no user could log in, or
// when ctx ends before the run (with the statistics gathered so far).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	tr := cfg.Transport
	if tr == nil {
		own := &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        2 * cfg.Concurrency,
			MaxIdleConnsPerHost: 2 * cfg.Concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}
		defer own.CloseIdleConnections()
		tr = own
	}
	samples := &errorSampler{max: 8}
	urls := append([]string{cfg.BaseURL}, cfg.MoreURLs...)
	var next atomic.Uint64
	workers := make([]*worker, cfg.Concurrency)
	for i := range workers {
		workers[i] = &worker{
			cfg:    &cfg,
			urls:   urls,
			next:   &next,
			rng:    rand.New(rand.NewPCG(cfg.Seed, uint64(i))),
			ops:    map[string]*OpStats{},
			errors: samples,
		}
	}
	for i := range cfg.Users {
		workers[i%cfg.Concurrency].users = append(workers[i%cfg.Concurrency].users, &user{
			name: cfg.UserPrefix + "-" + strconv.Itoa(i),
			client: &http.Client{
				Transport: tr,
				Jar:       newJar(),
				Timeout:   cfg.Timeout,
				CheckRedirect: func(*http.Request, []*http.Request) error {
					return http.ErrUseLastResponse
				},
			},
		})
	}
	res := &Result{Config: cfg, Ops: map[string]*OpStats{}}

	// Log every user in, not measured.
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			for _, u := range w.users {
				if ctx.Err() != nil {
					return
				}
				w.login(ctx, u, true)
			}
		})
	}
	wg.Wait()
	for _, w := range workers {
		res.Logins.merge(w.ops[OpLogin])
		w.ops = map[string]*OpStats{}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.Logins.Errors == res.Logins.Requests {
		res.ErrorSamples = samples.list()
		return res, fmt.Errorf("loadgen: every login failed, e.g. %s", strings.Join(res.ErrorSamples, "; "))
	}

	// Warm up, then measure.
	start := time.Now()
	from := start.Add(cfg.Warmup)
	end := from.Add(cfg.Duration)
	if cfg.OnMix != nil {
		cfg.OnMix(end)
	}
	for _, w := range workers {
		wg.Go(func() { w.run(ctx, from, end) })
	}
	if cfg.OnMeasure != nil {
		// Not a wait for readiness: the window starts at a set time.
		t := time.NewTimer(time.Until(from))
		select {
		case <-t.C:
			cfg.OnMeasure()
		case <-ctx.Done():
			t.Stop()
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(from)
	for _, w := range workers {
		for op, s := range w.ops {
			if res.Ops[op] == nil {
				res.Ops[op] = &OpStats{}
			}
			res.Ops[op].merge(s)
			res.Total.merge(s)
		}
	}
	res.ErrorSamples = samples.list()
	return res, ctx.Err()
}

// run cycles through the worker's users until end, recording the requests
// that start at or after from.
func (w *worker) run(ctx context.Context, from, end time.Time) {
	for i := 0; ctx.Err() == nil; i++ {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		measured := !now.Before(from)
		u := w.users[i%len(w.users)]
		switch {
		case !u.loggedIn:
			w.login(ctx, u, measured)
		case w.rng.IntN(100) < w.cfg.Mix.WritePercent:
			w.visit(ctx, u, measured)
		default:
			w.me(ctx, u, measured)
		}
	}
}

// reply is the JSON the contract answers with.
type reply struct {
	User   string `json:"user"`
	Visits *int   `json:"visits"`
}

// outcome classifies one request.
type outcome int

const (
	ok outcome = iota
	failed
	mismatch
)

func (w *worker) record(op string, measured bool, d time.Duration, o outcome) {
	if !measured {
		return
	}
	s := w.ops[op]
	if s == nil {
		s = &OpStats{}
		w.ops[op] = s
	}
	s.Requests++
	s.Latency.Record(d)
	switch o {
	case failed:
		s.Errors++
	case mismatch:
		s.Mismatches++
	}
}

// do sends one request for u and returns its status and decoded body.
func (w *worker) do(ctx context.Context, u *user, method, path string, form url.Values) (int, reply, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	base := w.urls[0]
	if len(w.urls) > 1 {
		base = w.urls[(w.next.Add(1)-1)%uint64(len(w.urls))]
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return 0, reply{}, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return 0, reply{}, err
	}
	defer resp.Body.Close()
	w.buf.Reset()
	_, err = w.buf.ReadFrom(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, reply{}, fmt.Errorf("read body: %w", err)
	}
	var rep reply
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(w.buf.Bytes(), &rep); err != nil {
			return resp.StatusCode, reply{}, fmt.Errorf("decode %q: %w", truncate(w.buf.String()), err)
		}
	}
	return resp.StatusCode, rep, nil
}

func (w *worker) fail(op string, code int, err error) {
	switch {
	case err != nil:
		w.errors.add(fmt.Sprintf("%s: %v", op, err))
	default:
		w.errors.add(fmt.Sprintf("%s: status %d: %s", op, code, truncate(w.buf.String())))
	}
}

func (w *worker) login(ctx context.Context, u *user, measured bool) {
	t0 := time.Now()
	code, rep, err := w.do(ctx, u, http.MethodPost, "/login", url.Values{"user": {u.name}, "password": {w.cfg.Password}})
	d := time.Since(t0)
	switch {
	case err != nil || code != http.StatusOK:
		w.fail(OpLogin, code, err)
		w.record(OpLogin, measured, d, failed)
	case rep.User != u.name:
		w.errors.add(fmt.Sprintf("%s: logged in as %q, not %q", OpLogin, rep.User, u.name))
		w.record(OpLogin, measured, d, mismatch)
	default:
		u.loggedIn, u.visits = true, 0
		w.record(OpLogin, measured, d, ok)
	}
}

func (w *worker) me(ctx context.Context, u *user, measured bool) {
	t0 := time.Now()
	code, rep, err := w.do(ctx, u, http.MethodGet, "/me", nil)
	d := time.Since(t0)
	switch {
	case err == nil && code == http.StatusUnauthorized:
		u.loggedIn = false
		w.fail(OpMe, code, errors.New("logged out (401)"))
		w.record(OpMe, measured, d, failed)
	case err != nil || code != http.StatusOK:
		w.fail(OpMe, code, err)
		w.record(OpMe, measured, d, failed)
	case rep.User != u.name || rep.Visits == nil || *rep.Visits != u.visits:
		w.errors.add(fmt.Sprintf("%s: got user %q visits %s, want %q %d", OpMe, rep.User, intOrNil(rep.Visits), u.name, u.visits))
		if rep.Visits != nil {
			u.visits = *rep.Visits
		}
		w.record(OpMe, measured, d, mismatch)
	default:
		w.record(OpMe, measured, d, ok)
	}
}

func (w *worker) visit(ctx context.Context, u *user, measured bool) {
	t0 := time.Now()
	code, rep, err := w.do(ctx, u, http.MethodPost, "/visit", nil)
	d := time.Since(t0)
	switch {
	case err == nil && code == http.StatusUnauthorized:
		u.loggedIn = false
		w.fail(OpVisit, code, errors.New("logged out (401)"))
		w.record(OpVisit, measured, d, failed)
	case err != nil || code != http.StatusOK:
		w.fail(OpVisit, code, err)
		w.record(OpVisit, measured, d, failed)
	case rep.Visits == nil || *rep.Visits != u.visits+1:
		w.errors.add(fmt.Sprintf("%s: got visits %s, want %d", OpVisit, intOrNil(rep.Visits), u.visits+1))
		if rep.Visits != nil {
			u.visits = *rep.Visits
		}
		w.record(OpVisit, measured, d, mismatch)
	default:
		u.visits++
		w.record(OpVisit, measured, d, ok)
	}
}

func intOrNil(p *int) string {
	if p == nil {
		return "none"
	}
	return strconv.Itoa(*p)
}

func truncate(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// errorSampler keeps the first few distinct error messages. It is safe for
// concurrent use.
type errorSampler struct {
	max  int
	mu   sync.Mutex
	seen []string // guards: distinct messages, at most max
}

func (e *errorSampler) add(msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) >= e.max {
		return
	}
	for _, s := range e.seen {
		if s == msg {
			return
		}
	}
	e.seen = append(e.seen, msg)
}

func (e *errorSampler) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.seen...)
}
