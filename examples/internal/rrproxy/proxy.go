package rrproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultMaxBodyBytes is the default Config.MaxBodyBytes: 1 MiB.
const DefaultMaxBodyBytes = 1 << 20

// Config configures a Proxy. The zero value of every field but Backends
// takes the documented default.
type Config struct {
	// Backends are the base URLs requests are spread over, such as
	// "http://127.0.0.1:8081". A path in a URL is prefixed to the request's
	// path. An empty list makes every request fail with 502 until
	// SetBackends adds some.
	Backends []string
	// MaxBodyBytes caps the request body the proxy buffers to replay it on
	// another backend; a bigger body is answered 413. Default
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Transport sends the requests to the backends. Default: a transport
	// of the Proxy's own with a keep-alive pool sized for load tests, a 2s
	// dial timeout and no proxy from the environment; Close closes its idle
	// connections.
	Transport http.RoundTripper
	// Logger receives a Debug record per retried attempt and a Warn record
	// per 502. Default: discard.
	Logger *slog.Logger
}

// Proxy is a round-robin reverse proxy with retry on connection errors.
// It is an http.Handler, safe for concurrent use. Create it with New.
type Proxy struct {
	maxBody   int64
	transport http.RoundTripper
	own       *http.Transport // the default transport, closed by Close; nil if Config.Transport was set
	logger    *slog.Logger
	rp        *httputil.ReverseProxy

	backends atomic.Pointer[[]*backend] // the rotation; replaced whole by SetBackends
	next     atomic.Uint64              // the rotation counter

	requests, retries, failed, tooLarge atomic.Int64

	mu    sync.Mutex          // guards known and order
	known map[string]*backend // every backend ever configured, by URL, so stats survive SetBackends
	order []*backend          // known, in the order first configured
}

// backend is one upstream server and its counters.
type backend struct {
	raw       string
	url       *url.URL
	responses atomic.Int64
	errors    atomic.Int64
}

// attempt carries the target of one try through the ReverseProxy and the
// connection error, if any, back out of it.
type attempt struct {
	target *backend
	err    error
}

// contextKey is the type of the unexported context keys of this package.
type contextKey struct{ name string }

var attemptKey = &contextKey{"rrproxy attempt"}

// New returns a Proxy for cfg. It fails if a backend URL is not an
// absolute http or https URL.
func New(cfg Config) (*Proxy, error) {
	p := &Proxy{
		maxBody:   cfg.MaxBodyBytes,
		transport: cfg.Transport,
		logger:    cfg.Logger,
		known:     map[string]*backend{},
	}
	if p.maxBody <= 0 {
		p.maxBody = DefaultMaxBodyBytes
	}
	if p.transport == nil {
		p.own = newTransport()
		p.transport = p.own
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			a := pr.In.Context().Value(attemptKey).(*attempt)
			pr.SetURL(a.target.url)
			pr.SetXForwarded()
		},
		Transport: p.transport,
		ErrorHandler: func(_ http.ResponseWriter, r *http.Request, err error) {
			// Record only: ServeHTTP decides between retry and 502.
			r.Context().Value(attemptKey).(*attempt).err = err
		},
		ErrorLog: errorLog(cfg.Logger),
	}
	if err := p.SetBackends(cfg.Backends); err != nil {
		return nil, err
	}
	return p, nil
}

func errorLog(l *slog.Logger) *log.Logger {
	if l == nil {
		return log.New(io.Discard, "", 0)
	}
	return slog.NewLogLogger(l.Handler(), slog.LevelWarn)
}

func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   2 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// SetBackends replaces the rotation with urls; requests in flight finish
// on the backend they were sent to. Counters of a URL that was configured
// before carry on. It fails, changing nothing, if a URL is not an absolute
// http or https URL.
func (p *Proxy) SetBackends(urls []string) error {
	parsed := make([]*url.URL, len(urls))
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return fmt.Errorf("rrproxy: backend %q: %w", raw, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("rrproxy: backend %q: want an absolute http or https URL", raw)
		}
		parsed[i] = u
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	list := make([]*backend, len(urls))
	for i, u := range parsed {
		key := strings.TrimRight(u.String(), "/")
		b := p.known[key]
		if b == nil {
			b = &backend{raw: key, url: u}
			p.known[key] = b
			p.order = append(p.order, b)
		}
		list[i] = b
	}
	p.backends.Store(&list)
	return nil
}

// Backends returns the URLs of the current rotation, in order.
func (p *Proxy) Backends() []string {
	list := p.backends.Load()
	out := make([]string, len(*list))
	for i, b := range *list {
		out[i] = b.raw
	}
	return out
}

// ServeHTTP sends r to the next backend in the rotation, and on a
// connection error to the ones after it, until one answers.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	list := *p.backends.Load()
	if len(list) == 0 {
		p.failed.Add(1)
		http.Error(w, "rrproxy: 502 bad gateway: no backends configured", http.StatusBadGateway)
		return
	}
	body, status, err := p.readBody(r)
	if err != nil {
		if status == http.StatusRequestEntityTooLarge {
			p.tooLarge.Add(1)
		}
		http.Error(w, err.Error(), status)
		return
	}

	start := p.next.Add(1) - 1
	var failures []string
	for i := range len(list) {
		b := list[(start+uint64(i))%uint64(len(list))]
		if i > 0 {
			p.retries.Add(1)
		}
		a := &attempt{target: b}
		out := r.WithContext(context.WithValue(r.Context(), attemptKey, a))
		if body != nil {
			out.Body = io.NopCloser(bytes.NewReader(body))
			out.GetBody = func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(body)), nil
			}
			out.ContentLength = int64(len(body))
			out.TransferEncoding = nil
			out.Header = r.Header.Clone()
			out.Header.Del("Expect") // the body has been read already
		}
		p.rp.ServeHTTP(w, out)
		if a.err == nil {
			b.responses.Add(1)
			return
		}
		b.errors.Add(1)
		failures = append(failures, fmt.Sprintf("%s: %v", b.raw, a.err))
		if r.Context().Err() != nil {
			// The client has gone; nobody reads an answer.
			p.failed.Add(1)
			return
		}
		if !retryable(a.err) {
			break
		}
		p.logger.Debug("rrproxy: backend failed, trying the next one",
			"backend", b.raw, "method", r.Method, "path", r.URL.Path, "err", a.err)
	}
	p.failed.Add(1)
	msg := fmt.Sprintf("rrproxy: 502 bad gateway: no backend answered %s %s (tried %d of %d):\n  %s\n",
		r.Method, r.URL.Path, len(failures), len(list), strings.Join(failures, "\n  "))
	p.logger.Warn("rrproxy: no backend answered", "method", r.Method, "path", r.URL.Path,
		"errors", strings.Join(failures, "; "))
	http.Error(w, msg, http.StatusBadGateway)
}

// readBody buffers r's body up to the limit. It returns a nil slice for a
// request without a body, and an HTTP status with the error.
func (p *Proxy) readBody(r *http.Request) ([]byte, int, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, 0, nil
	}
	tooLarge := fmt.Errorf("rrproxy: 413 request body larger than %d bytes", p.maxBody)
	if r.ContentLength > p.maxBody {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, p.maxBody+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("rrproxy: reading request body: %w", err)
	}
	if int64(len(b)) > p.maxBody {
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	return b, 0, nil
}

// retryable reports whether err means the backend could not be reached or
// dropped the connection before a response header: then another backend
// may answer. Timeouts waiting for a response are not retried.
func retryable(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	for _, target := range []error{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
		io.EOF, io.ErrUnexpectedEOF, net.ErrClosed,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	// net/http's errServerClosedIdle is unexported: a reused keep-alive
	// connection that the server had closed.
	return strings.Contains(err.Error(), "server closed idle connection")
}

// BackendStats are the counters of one backend.
type BackendStats struct {
	// Backend is the backend's URL.
	Backend string
	// Active reports whether the backend is in the current rotation.
	Active bool
	// Responses counts the requests the backend answered, whatever the
	// status.
	Responses int64
	// Errors counts the attempts that failed on a connection error; each
	// was retried on the next backend or ended in a 502.
	Errors int64
}

// Stats are the counters of a Proxy since New.
type Stats struct {
	// Requests counts the requests received.
	Requests int64
	// Retries counts the attempts beyond the first of a request.
	Retries int64
	// Failed counts the requests answered 502 (or abandoned by the client)
	// because no backend answered.
	Failed int64
	// TooLarge counts the requests answered 413.
	TooLarge int64
	// Backends holds one entry per backend ever configured, in the order
	// they were first configured.
	Backends []BackendStats
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	active := map[*backend]bool{}
	for _, b := range *p.backends.Load() {
		active[b] = true
	}
	p.mu.Lock()
	order := append([]*backend(nil), p.order...)
	p.mu.Unlock()
	s := Stats{
		Requests: p.requests.Load(),
		Retries:  p.retries.Load(),
		Failed:   p.failed.Load(),
		TooLarge: p.tooLarge.Load(),
	}
	for _, b := range order {
		s.Backends = append(s.Backends, BackendStats{
			Backend:   b.raw,
			Active:    active[b],
			Responses: b.responses.Load(),
			Errors:    b.errors.Load(),
		})
	}
	return s
}

// Close closes the idle connections of the Proxy's default transport. It
// does not touch a Config.Transport. Requests in flight finish; the Proxy
// stays usable.
func (p *Proxy) Close() error {
	if p.own != nil {
		p.own.CloseIdleConnections()
	}
	return nil
}
