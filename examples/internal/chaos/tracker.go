package chaos

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// opHeader carries the ID of a user's request through the load balancer,
// so that the tracker can tell which backends the proxy tried for it.
const opHeader = "X-Chaos-Op"

// attempt is one try of the load balancer to forward a request to a
// backend.
type attempt struct {
	backend string // host:port
	err     error  // nil: the backend answered (whatever the status)
	// maybeApplied is set for a failed attempt after which the backend
	// may have processed the request (the connection broke after the
	// request was sent): the proxy's retry on another backend may then
	// apply it a second time. Failed dials and idle connections the
	// server had closed never reached a handler.
	maybeApplied bool
}

// tracker is the load balancer's transport: it forwards to an
// http.Transport and records, per request ID, every attempt the proxy
// made, and, per backend, the requests in flight (so a backend can be
// drained before it is cut off). It is safe for concurrent use.
type tracker struct {
	base *http.Transport

	mu       sync.Mutex           // guards attempts and inflight
	attempts map[string][]attempt // by request ID
	inflight map[string]int       // by backend host:port
}

var _ http.RoundTripper = (*tracker)(nil)

func newTracker() *tracker {
	return &tracker{
		base: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          1024,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
		},
		attempts: map[string][]attempt{},
		inflight: map[string]int{},
	}
}

// RoundTrip forwards req and records the attempt.
func (t *tracker) RoundTrip(req *http.Request) (*http.Response, error) {
	id, host := req.Header.Get(opHeader), req.URL.Host
	t.mu.Lock()
	t.inflight[host]++
	t.mu.Unlock()
	resp, err := t.base.RoundTrip(req)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inflight[host]--
	if id != "" {
		t.attempts[id] = append(t.attempts[id], attempt{backend: host, err: err, maybeApplied: err != nil && mayHaveReached(err)})
	}
	return resp, err
}

// take returns and forgets the attempts recorded for a request ID.
func (t *tracker) take(id string) []attempt {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.attempts[id]
	delete(t.attempts, id)
	return a
}

// inFlight returns the number of requests the proxy is forwarding to the
// backend host:port.
func (t *tracker) inFlight(host string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inflight[host]
}

func (t *tracker) close() { t.base.CloseIdleConnections() }

// mayHaveReached reports whether a failed round trip may have delivered
// the request to a handler: everything but a failed dial and a keep-alive
// connection the server had closed before the request was written.
func mayHaveReached(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return false
	}
	return !strings.Contains(err.Error(), "server closed idle connection")
}
