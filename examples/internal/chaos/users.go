package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Workload shape.
const (
	// cookieName is the login example's session cookie.
	cookieName = "session"
	// historyLen is how many of a user's requests are kept as evidence.
	historyLen = 24
	// goneKept is how many logged-out cookies each user keeps probing.
	goneKept = 4
	// minVisits and maxVisits bound the visits of one session before the
	// user logs out.
	minVisits, maxVisits = 5, 40
	// confirmations is how many more GET /me a user sends after a 401
	// before logging in again: they tell a transient logout from a lost
	// session.
	confirmations = 2
)

// simUser is one simulated browser. Only the worker that owns it touches
// it while the workload runs.
type simUser struct {
	name  string
	rng   *rand.Rand
	model *userModel

	cookie     string       // the session cookie's value, "" for none
	loginSent  time.Time    // when the current session's login was sent
	visitsLeft int          // before the user logs out
	confirm    int          // GET /me left to send after a 401
	gone       []goneCookie // sessions logged out of, newest last
	epoch      uint64       // the last verification epoch done
	seq        int          // requests sent

	history []*Event // the last historyLen requests (a ring)
	next    int
}

// goneCookie is the cookie of a session the user logged out of.
type goneCookie struct {
	value string
	ends  time.Time // from then on the session would have expired anyway
}

// session returns the session ID a cookie value names (a hint after a
// dot, as in async mode, is not part of it).
func sessionID(cookie string) string {
	id, _, _ := strings.Cut(cookie, ".")
	return id
}

// remember adds e to the user's history.
func (u *simUser) remember(e *Event) {
	if len(u.history) < historyLen {
		u.history = append(u.history, e)
		return
	}
	u.history[u.next] = e
	u.next = (u.next + 1) % historyLen
}

// recent returns the user's history, oldest first, formatted.
func (u *simUser) recent(start time.Time) []string {
	out := make([]string, 0, len(u.history))
	for i := range u.history {
		e := u.history[(u.next+i)%len(u.history)]
		out = append(out, e.Format(start))
	}
	return out
}

// workload drives the simulated users on a fixed number of workers.
type workload struct {
	h       *harness
	users   []*simUser
	tr      *http.Transport
	client  *http.Client
	proxy   string // the load balancer's base URL
	tracker *tracker

	stop chan struct{} // closed to stop the workers
	wg   sync.WaitGroup

	epochMu      sync.Mutex    // guards epoch, epochPending and epochDone
	epoch        uint64        // the current verification epoch
	epochPending int           // users still to verify in it
	epochDone    chan struct{} // closed when epochPending reaches 0

	logins atomic.Int64 // acknowledged logins
}

// newWorkload makes the users; start starts driving them.
func newWorkload(h *harness, proxyURL string, tr *tracker) *workload {
	c := h.cfg
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: c.Concurrency + 8,
		IdleConnTimeout:     30 * time.Second,
	}
	w := &workload{
		h:       h,
		tr:      transport,
		client:  &http.Client{Transport: transport, Timeout: c.RequestTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		proxy:   proxyURL,
		tracker: tr,
		stop:    make(chan struct{}),
	}
	width := len(fmt.Sprint(c.Users))
	for i := range c.Users {
		name := fmt.Sprintf("user%0*d", width, i+1)
		w.users = append(w.users, &simUser{
			name:  name,
			rng:   rand.New(rand.NewPCG(h.seed, uint64(i))),
			model: newUserModel(name, c.SessionLifetime),
		})
	}
	return w
}

// start starts the workers: each owns every Concurrency-th user and
// cycles through its users, one request at a time, paced so that all
// workers together send at most Config.Rate requests per second.
func (w *workload) start(ctx context.Context) {
	c := w.h.cfg
	workers := min(c.Concurrency, len(w.users))
	var interval time.Duration
	if c.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(workers) / float64(c.Rate))
	}
	for k := range workers {
		w.wg.Go(func() {
			timer := time.NewTimer(0)
			defer timer.Stop()
			next := time.Now()
			for i := k; ; i += workers {
				if i >= len(w.users) {
					i = k
				}
				select {
				case <-w.stop:
					return
				case <-ctx.Done():
					return
				case <-timer.C:
				}
				w.turn(ctx, w.users[i])
				// Pacing is the workload's shape, not a wait for a
				// condition.
				next = next.Add(interval)
				if now := time.Now(); next.Before(now) {
					next = now
				}
				timer.Reset(time.Until(next))
			}
		})
	}
}

// end stops the workers after their current request and waits for them.
func (w *workload) end() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

func (w *workload) close() { w.tr.CloseIdleConnections() }

// turn makes the user's next move: verification when an epoch asks for
// it, else login, logout, a visit, a GET /me or a probe of an old cookie.
func (w *workload) turn(ctx context.Context, u *simUser) {
	if epoch, pending := w.currentEpoch(); pending && u.epoch < epoch {
		w.verify(ctx, u, w.h.nodes, false)
		u.epoch = epoch
		w.epochDoneBy()
		return
	}
	cur := u.model.cur
	switch {
	case cur == nil || u.cookie == "" || sessionID(u.cookie) != cur.id:
		w.login(ctx, u)
	case u.confirm > 0:
		// After a 401: ask again (another node answers, through the round
		// robin) to tell a transient logout from a lost session; give up
		// and log in again after the last confirmation.
		u.confirm--
		w.send(ctx, u, OpMe, nil, u.cookie, nil)
		switch {
		case cur.back:
			u.confirm = 0
		case u.confirm == 0:
			u.cookie = ""
		}
	case u.visitsLeft <= 0 || time.Since(u.loginSent) > w.h.cfg.SessionLifetime/2:
		w.logout(ctx, u)
	default:
		switch r := u.rng.Float64(); {
		case r < 0.05 && len(u.gone) > 0:
			w.send(ctx, u, OpProbe, nil, u.gone[u.rng.IntN(len(u.gone))].value, nil)
		case r < 0.20:
			w.afterRead(u, w.send(ctx, u, OpMe, nil, u.cookie, nil))
		default:
			u.visitsLeft--
			w.afterRead(u, w.send(ctx, u, OpVisit, nil, u.cookie, nil))
		}
	}
}

// afterRead starts the confirmation of a 401: the next turns ask GET /me
// again.
func (w *workload) afterRead(u *simUser, e *Event) {
	if e.Status == http.StatusUnauthorized && e.Err == "" && u.confirm == 0 {
		u.confirm = confirmations
	}
}

// login logs u in through the load balancer, sending the cookie it has,
// as a browser would.
func (w *workload) login(ctx context.Context, u *simUser) {
	sent := time.Now()
	e := w.send(ctx, u, OpLogin, nil, u.cookie, url.Values{"user": {u.name}, "password": {"demo"}})
	if e.NewSession != "" && e.Status == http.StatusOK {
		u.loginSent = sent
		u.visitsLeft = minVisits + u.rng.IntN(maxVisits-minVisits+1)
		u.confirm = 0
		w.logins.Add(1)
	}
}

// logout logs u out; once acknowledged, the cookie joins the ones probed
// for resurrection.
func (w *workload) logout(ctx context.Context, u *simUser) {
	cookie := u.cookie
	w.send(ctx, u, OpLogout, nil, cookie, nil)
	if u.model.cur == nil { // acknowledged
		u.gone = append(u.gone, goneCookie{value: cookie, ends: u.loginSent.Add(w.h.cfg.SessionLifetime)})
		if len(u.gone) > goneKept {
			u.gone = u.gone[1:]
		}
		u.cookie = ""
	}
}

// verify sends GET /me with the user's current cookie directly to every
// node, and with its logged-out cookies (the newest, or all with every)
// likewise.
func (w *workload) verify(ctx context.Context, u *simUser, nodes []*node, every bool) {
	if cur := u.model.cur; cur != nil && u.cookie != "" {
		round := make([]*Event, 0, len(nodes))
		for _, n := range nodes {
			round = append(round, w.send(ctx, u, OpVerify, n, u.cookie, nil))
		}
		last := round[len(round)-1]
		if bad, answers := diverged(round); bad && ctx.Err() == nil && !cur.tainted && last.Sent.Add(last.Took).Before(cur.ends) {
			w.h.record(nil, u, []*Anomaly{{Kind: Diverged, User: u.name, Session: short(cur.id), At: round[0].Sent, Fault: round[0].Fault,
				Detail: "the nodes answered GET /me differently after the cluster reported every session fully replicated: " + answers}})
		}
	}
	gone := u.gone
	if !every && len(gone) > 1 {
		gone = gone[len(gone)-1:]
	}
	for _, c := range gone {
		if time.Now().After(c.ends) {
			continue // expired anyway: nothing to resurrect
		}
		for _, n := range nodes {
			w.send(ctx, u, OpVerifyGone, n, c.value, nil)
		}
	}
}

// newEpoch asks every user to verify itself on every node at its next
// turn, and returns a channel closed once all have.
func (w *workload) newEpoch() <-chan struct{} {
	w.epochMu.Lock()
	defer w.epochMu.Unlock()
	w.epoch++
	w.epochPending = len(w.users)
	w.epochDone = make(chan struct{})
	return w.epochDone
}

// currentEpoch returns the verification epoch and whether users are still
// to verify in it.
func (w *workload) currentEpoch() (uint64, bool) {
	w.epochMu.Lock()
	defer w.epochMu.Unlock()
	return w.epoch, w.epochPending > 0
}

// epochDoneBy counts one user as verified in the current epoch.
func (w *workload) epochDoneBy() {
	w.epochMu.Lock()
	defer w.epochMu.Unlock()
	if w.epochPending--; w.epochPending == 0 {
		close(w.epochDone)
	}
}

// answer is the JSON the login server answers with.
type answer struct {
	User   string `json:"user"`
	Node   string `json:"node"`
	Visits *int   `json:"visits"`
	Error  string `json:"error"`
}

// send makes one request for u, through the load balancer (n == nil) or
// directly to n, with cookie as the session cookie, records it, checks it
// against the user's model and returns it.
func (w *workload) send(ctx context.Context, u *simUser, op Op, n *node, cookie string, form url.Values) *Event {
	u.seq++
	id := fmt.Sprintf("%s-%d", u.name, u.seq)
	e := &Event{Op: op, Session: sessionID(cookie), Fault: w.h.currentFault()}
	method, path := http.MethodGet, "/me"
	switch op {
	case OpLogin:
		method, path = http.MethodPost, "/login"
	case OpVisit:
		method, path = http.MethodPost, "/visit"
	case OpLogout:
		method, path = http.MethodPost, "/logout"
	}
	base := w.proxy
	if n != nil {
		base, e.Node = n.httpURL, n.name
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		e.Err = err.Error()
		return e
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	if n == nil {
		req.Header.Set(opHeader, id)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
	}
	e.Sent = time.Now()
	resp, err := w.client.Do(req)
	if e.Fault == 0 {
		// A fault injected while the request was in flight is the
		// fault it ran into.
		e.Fault = w.h.currentFault()
	}
	if err == nil {
		var b []byte
		b, err = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		e.Status = resp.StatusCode
		var a answer
		if jerr := json.Unmarshal(b, &a); jerr == nil {
			e.AnsweredBy, e.User = a.Node, a.User
			if a.Visits != nil {
				e.Visits, e.HasVisits = *a.Visits, true
			}
		} else if err == nil && (e.Status == http.StatusOK || e.Status == http.StatusUnauthorized) {
			err = fmt.Errorf("unreadable answer: %.100q", b)
		}
		if err == nil && e.Status != http.StatusOK && e.Status != http.StatusUnauthorized {
			err = fmt.Errorf("status %d: %s", e.Status, cmpOr(a.Error, strings.TrimSpace(string(b[:min(len(b), 200)]))))
		}
		for _, c := range resp.Cookies() {
			if c.Name != cookieName || u.cookie != cookie {
				continue // only the cookie the user sent is replaced
			}
			if c.MaxAge < 0 || c.Value == "" {
				u.cookie = ""
			} else {
				u.cookie = c.Value
				if op == OpLogin {
					e.NewSession = sessionID(c.Value)
				}
			}
		}
	}
	e.Took = time.Since(e.Sent)
	if err != nil {
		e.Err = err.Error()
		var ne net.Error
		e.TimedOut = errors.As(err, &ne) && ne.Timeout()
	}
	if n == nil {
		for _, a := range w.tracker.take(id) {
			e.Tried = append(e.Tried, w.h.nodeAt(a.backend))
			if a.maybeApplied {
				e.MaybeApplied++
			}
		}
	}
	if ctx.Err() != nil {
		return e // the run is ending: not an answer
	}
	u.remember(e)
	anomalies := u.model.apply(e)
	w.h.record(e, u, anomalies)
	return e
}
