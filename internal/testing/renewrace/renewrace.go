// Package renewrace races requests that carry a session's ID with a
// renewal of that ID (a login, or RenewID alone), over real HTTP, on
// several nodes, with a cookie jar that applies each response's cookies
// when the response arrives, as a browser does. It serves the tests of
// httpsession and of its scs and gorilla adapters:
//
//	gate := renewrace.NewGate()
//	// ... every node serves the application below, whose /slow calls gate.Hold
//	res := renewrace.Run(t, urls, gate, renewrace.Options{Cookie: "session", Rounds: 100})
//	require.Zero(t, res.LoggedOut)
//
// The application under test serves, on every node:
//
//	POST /login  user=U    renews the session's ID and sets "user" to U
//	POST /renew            renews the session's ID
//	POST /slow   ticket=T  loads the session, calls Gate.Hold(T), then sets "note"
//	             write=0   ... or writes nothing
//	POST /put    k=K v=V   sets K to V
//	GET  /me               200 and the user, or 401 when the session has none
//	GET  /get?k=K          the value of K, or an empty body
package renewrace

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// wait bounds every wait of a round: a request held by the gate, a
// response.
const wait = 30 * time.Second

// Gate holds requests (of /slow, or of any handler that calls Hold) until
// the test releases them. It is safe for concurrent use.
type Gate struct {
	mu    sync.Mutex
	holds map[string]*hold // guards: the holds by ticket
}

type hold struct {
	held    chan struct{} // closed when the request is held
	release chan struct{} // closed to let it go on
}

// NewGate returns a Gate that holds nothing yet.
func NewGate() *Gate { return &Gate{holds: map[string]*hold{}} }

func (g *Gate) get(ticket string) *hold {
	g.mu.Lock()
	defer g.mu.Unlock()
	h := g.holds[ticket]
	if h == nil {
		h = &hold{held: make(chan struct{}), release: make(chan struct{})}
		g.holds[ticket] = h
	}
	return h
}

// Held returns a channel closed once a request calls Hold(ticket).
func (g *Gate) Held(ticket string) <-chan struct{} { return g.get(ticket).held }

// Release lets the request holding ticket, or about to, go on.
func (g *Gate) Release(ticket string) { close(g.get(ticket).release) }

// Hold is called by the handler of /slow after the session is loaded: it
// reports the request held and returns when the race releases it, or
// after 30 s, or when ctx ends.
func (g *Gate) Hold(ctx context.Context, ticket string) {
	h := g.get(ticket)
	close(h.held)
	select {
	case <-h.release:
	case <-ctx.Done():
	case <-time.After(wait):
	}
}

// Options configures Run.
type Options struct {
	// Cookie is the name of the session cookie.
	Cookie string
	// Rounds is the number of users, each of whom logs in, starts a
	// request that writes, renews the ID while it is held, and is checked.
	Rounds int
	// Concurrent makes odd rounds release the held request at the moment
	// the renewal starts instead of after its response, so that its write
	// meets the renewal on the nodes in any order. Its response may then
	// arrive before or after the renewal's.
	Concurrent bool
	// Stale adds to each round a request sent with the old ID after the
	// renewal, as one that left before the browser had the new ID, and
	// writes: its response is applied to the browser's jar too.
	Stale bool
}

// Result counts what went wrong over the rounds.
type Result struct {
	Rounds int
	// LoggedOut counts the rounds after which the browser was not logged
	// in, as its user, on every node.
	LoggedOut int
	// OldIDAnswered counts the rounds in which a request with the old ID
	// read the user or the session's data on some node.
	OldIDAnswered int
	// WriteReachedNew counts the rounds in which a write with the old ID
	// (the held request's, when it was released after the renewal, or the
	// stale request's) was found in the renewed session.
	WriteReachedNew int
	// CookieSet counts the responses to requests with the old ID, after
	// the renewal, that set the session cookie.
	CookieSet int
	// InFlightFailed counts held requests whose response was not a 200.
	InFlightFailed int
}

// Run plays opts.Rounds rounds on the nodes serving urls (at least three:
// the login on the first, the held request on the second, the renewal on
// the third) and reports what went wrong. It fails t when the application
// does not answer as documented (a login that fails, a request the gate
// never held). Failures of the guarantees are counted, and the first ones
// are logged.
func Run(t testing.TB, urls []string, g *Gate, opts Options) Result {
	t.Helper()
	if len(urls) < 3 {
		t.Fatalf("renewrace: %d nodes, need 3", len(urls))
	}
	res := Result{Rounds: opts.Rounds}
	logged := 0
	report := func(count *int, format string, args ...any) {
		*count++
		if logged < 10 {
			logged++
			t.Logf("renewrace: "+format, args...)
		}
	}
	for round := 0; round < opts.Rounds; round++ {
		r := newRound(t, urls, g, opts, round)
		r.play(&res, report)
	}
	return res
}

// round is one user's race.
type round struct {
	t       testing.TB
	urls    []string
	g       *Gate
	opts    Options
	n       int
	user    string
	browser *http.Client
	base    *url.URL
}

func newRound(t testing.TB, urls []string, g *Gate, opts Options, n int) *round {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := url.Parse(urls[0])
	if err != nil {
		t.Fatal(err)
	}
	return &round{
		t: t, urls: urls, g: g, opts: opts, n: n,
		user:    fmt.Sprintf("user%d", n),
		browser: &http.Client{Jar: jar, Timeout: wait},
		base:    base,
	}
}

// response is what a request got back.
type response struct {
	code    int
	body    string
	cookies []*http.Cookie
	err     error
}

// send sends a request with c, adding cookie when it is not nil (for a
// client without a jar).
func send(c *http.Client, method, u string, form url.Values, cookie *http.Cookie) response {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return response{err: err}
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	resp, err := c.Do(req)
	if err != nil {
		return response{err: err}
	}
	b, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	return response{code: resp.StatusCode, body: string(b), cookies: resp.Cookies(), err: err}
}

// cookie returns the browser's session cookie, or nil.
func (r *round) cookie() *http.Cookie {
	for _, c := range r.browser.Jar.Cookies(r.base) {
		if c.Name == r.opts.Cookie {
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	return nil
}

// setsCookie reports whether resp sets the session cookie.
func (r *round) setsCookie(resp response) bool {
	for _, c := range resp.cookies {
		if c.Name == r.opts.Cookie {
			return true
		}
	}
	return false
}

func (r *round) must(resp response, what string) response {
	r.t.Helper()
	if resp.err != nil || resp.code != http.StatusOK {
		r.t.Fatalf("renewrace: round %d: %s: %d %q %v", r.n, what, resp.code, resp.body, resp.err)
	}
	return resp
}

func (r *round) play(res *Result, report func(*int, string, ...any)) {
	t := r.t
	t.Helper()
	r.must(send(r.browser, "POST", r.urls[0]+"/login", url.Values{"user": {r.user}}, nil), "login")
	old := r.cookie()
	if old == nil {
		t.Fatalf("renewrace: round %d: the login set no %q cookie", r.n, r.opts.Cookie)
	}

	ticket := fmt.Sprintf("%p/%d", r, r.n)
	held := r.g.Held(ticket)
	inFlight := make(chan response, 1)
	write := "1"
	if r.n%5 == 4 {
		write = "0" // a request that only reads, as most are
	}
	go func() {
		inFlight <- send(r.browser, "POST", r.urls[1]+"/slow", url.Values{"ticket": {ticket}, "write": {write}}, nil)
	}()
	select {
	case <-held:
	case <-time.After(wait):
		t.Fatalf("renewrace: round %d: /slow was never held", r.n)
	}

	ordered := !r.opts.Concurrent || r.n%2 == 0
	renewal := url.Values{"user": {r.user}}
	path := "/login"
	if r.n%4 >= 2 {
		path, renewal = "/renew", nil
	}
	if !ordered {
		r.g.Release(ticket)
	}
	r.must(send(r.browser, "POST", r.urls[2]+path, renewal, nil), path)
	if ordered {
		r.g.Release(ticket)
	}
	var a response
	select {
	case a = <-inFlight:
	case <-time.After(wait):
		t.Fatalf("renewrace: round %d: the held request did not answer", r.n)
	}
	if a.err != nil || a.code != http.StatusOK {
		report(&res.InFlightFailed, "round %d: the held request got %d %q %v", r.n, a.code, a.body, a.err)
	}
	if ordered && r.setsCookie(a) {
		report(&res.CookieSet, "round %d: the held request's response set the cookie: %v", r.n, a.cookies)
	}

	if r.opts.Stale {
		// Sent with the old ID before the browser had the new one, and
		// answered after: the browser applies its cookies last.
		s := send(&http.Client{Timeout: wait}, "POST", r.urls[r.n%3]+"/put", url.Values{"k": {"stale"}, "v": {"from the old ID"}}, old)
		if s.err != nil {
			t.Fatalf("renewrace: round %d: stale request: %v", r.n, s.err)
		}
		if r.setsCookie(s) {
			report(&res.CookieSet, "round %d: the stale request's response set the cookie: %v", r.n, s.cookies)
		}
		r.browser.Jar.SetCookies(r.base, s.cookies)
	}

	now := r.cookie()
	loggedOut, reached := false, false
	for _, u := range r.urls {
		me := send(r.browser, "GET", u+"/me", nil, nil)
		if me.err != nil || me.code != http.StatusOK || me.body != r.user {
			loggedOut = true
			report(&res.LoggedOut, "round %d: %s/me answers %d %q with cookie %v (old %v)", r.n, u, me.code, me.body, now, old)
			break
		}
		keys := []string{"stale"}
		if ordered {
			keys = append(keys, "note")
		}
		for _, k := range keys {
			if got := send(r.browser, "GET", u+"/get?k="+k, nil, nil); got.body != "" && !reached {
				reached = true
				report(&res.WriteReachedNew, "round %d: the renewed session holds %s=%q on %s", r.n, k, got.body, u)
			}
		}
	}
	if !loggedOut && now != nil && now.Value == old.Value {
		report(&res.LoggedOut, "round %d: the browser still holds the old ID", r.n)
	}

	anon := &http.Client{Timeout: wait}
	for _, u := range r.urls {
		me := send(anon, "GET", u+"/me", nil, old)
		user := send(anon, "GET", u+"/get?k=user", nil, old)
		if me.code != http.StatusUnauthorized || user.body != "" {
			report(&res.OldIDAnswered, "round %d: the old ID answers on %s: /me %d %q, user %q", r.n, u, me.code, me.body, user.body)
			break
		}
	}
}
