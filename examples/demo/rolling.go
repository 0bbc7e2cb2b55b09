package main

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// gracefulStopTimeout bounds how long a node may take to leave the cluster
// and exit after SIGTERM in the rolling restart. The login server gives its
// hand-over 10s (plus 2s to finish requests in flight).
const gracefulStopTimeout = 20 * time.Second

// maxLoadExamples is how many load errors are kept in full.
const maxLoadExamples = 5

// restartRecord is the graceful restart of one node.
type restartRecord struct {
	node       *node
	stop       time.Duration // SIGTERM to exit
	healthy    time.Duration // start to GET /healthz = 200
	replicated time.Duration // healthy to every node settled and fully replicated
	total      time.Duration
	errors     int64 // load errors meanwhile
	ok         bool
}

func (r *restartRecord) String() string {
	if !r.ok {
		return r.node.name + " FAILED"
	}
	return fmt.Sprintf("%s %s (stop %s, healthy %s, replicated %s)",
		r.node.name, round(r.total), round(r.stop), round(r.healthy), round(r.replicated))
}

// load is the background load of the rolling scenario: every user keeps
// visiting through the proxy, one request at a time, until stopped. A
// visit that fails is not resent: the user goes on with the next one, as a
// browser user clicking again would; the failure is counted, not checked.
// What is checked is that no acknowledged visit is lost and nobody is
// logged out.
type load struct {
	ph      *phase
	stop    chan struct{}
	done    chan struct{}
	step    atomic.Pointer[string] // what the restart is doing, for messages
	started time.Time

	acked  atomic.Int64 // visits answered 200 with a count
	errors atomic.Int64 // visits that failed otherwise (401 excepted: that is a failed check)

	loggedOut      atomic.Int64 // visits answered 401
	usersLoggedOut atomic.Int64 // users who got a 401 at least once

	mu       sync.Mutex
	kinds    map[string]int // "step: kind" -> count
	examples []string
}

func (l *load) setStep(s string) { l.step.Store(&s) }

func (l *load) currentStep() string {
	if s := l.step.Load(); s != nil {
		return *s
	}
	return ""
}

// startLoad starts the background load on d.cfg.concurrency workers, each
// with its own share of the logged-in users.
func (d *demo) startLoad(ctx context.Context, ph *phase) *load {
	l := &load{ph: ph, stop: make(chan struct{}), done: make(chan struct{}), kinds: map[string]int{}, started: time.Now()}
	l.setStep("before the restart")
	var users []*user
	for _, u := range d.users {
		if u.loggedIn && u.known {
			users = append(users, u)
		}
	}
	workers := min(d.cfg.concurrency, len(users))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ; i += workers {
				if i >= len(users) {
					i = w
				}
				select {
				case <-l.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				d.loadVisit(ctx, l, users[i])
			}
		})
	}
	go func() {
		wg.Wait()
		close(l.done)
	}()
	return l
}

// end stops the load and waits for the requests in flight.
func (l *load) end() {
	close(l.stop)
	<-l.done
}

// loadVisit makes one visit of the background load for u.
func (d *demo) loadVisit(ctx context.Context, l *load, u *user) {
	sent := time.Now()
	r := d.send(ctx, l.ph, u, nil, http.MethodPost, "/visit", nil)
	step := l.currentStep()
	at := d.stamp(sent)
	switch {
	case r.err == nil && r.status == http.StatusUnauthorized:
		// The browser shows the login page: a failed check, once per
		// user. The user goes on visiting: the final check tells
		// whether the session is really gone.
		u.loggedOut++
		l.loggedOut.Add(1)
		if u.loggedOut == 1 {
			l.usersLoggedOut.Add(1)
			d.fail(l.ph, "%s: POST /visit via the proxy at %s, %s: answered 401 (not logged in) by %s (%d visits acknowledged before)",
				u.name, at, step, answeredBy(r), u.acked)
		}
		l.mu.Lock()
		l.kinds[step+": "+errorKind(r)]++
		l.mu.Unlock()
		return
	case r.err != nil || r.status != http.StatusOK || r.ans.Visits == nil:
		if ctx.Err() != nil {
			return // the demo is ending
		}
		l.errors.Add(1)
		u.loadErrors++
		u.known = false // it may or may not have counted
		kind := errorKind(r)
		u.lastErr = fmt.Sprintf("at %s, %s: %s", at, step, kind)
		l.mu.Lock()
		l.kinds[step+": "+kind]++
		if len(l.examples) < maxLoadExamples {
			l.examples = append(l.examples, fmt.Sprintf("%s: POST /visit at %s, %s: %s", u.name, at, step, r))
		}
		l.mu.Unlock()
		return
	}
	got, want := *r.ans.Visits, u.visits+1
	u.acked++
	l.acked.Add(1)
	switch {
	case got < want:
		d.fail(l.ph, "%s: POST /visit via the proxy at %s, %s: visits = %d, want %d: %d acknowledged visits LOST (answered by %s)",
			u.name, at, step, got, want, want-got, answeredBy(r))
	case u.known && got > want:
		d.fail(l.ph, "%s: POST /visit via the proxy at %s, %s: visits = %d, want exactly %d: counted twice? (answered by %s)",
			u.name, at, step, got, want, answeredBy(r))
	}
	u.visits, u.known = got, true
}

// stamp describes when a request sent at sent took place, for messages
// that may need to be matched with the node logs: the time since the start,
// and the wall-clock times (UTC, as in the logs) it was sent and answered.
func (d *demo) stamp(sent time.Time) string {
	now := time.Now()
	return fmt.Sprintf("%s (sent %s, answered %s)", round(sent.Sub(d.start)),
		sent.UTC().Format("15:04:05.000Z"), now.UTC().Format("15:04:05.000Z"))
}

// answeredBy names the node that answered r, for messages.
func answeredBy(r result) string {
	if r.ans.Node != "" {
		return r.ans.Node
	}
	return "no node (the proxy or the client)"
}

// errorKind sums up a failed request for the error counts.
func errorKind(r result) string {
	if r.err != nil {
		msg := r.err.Error()
		if _, after, ok := strings.Cut(msg, `": `); ok { // drop `Post "http://...": `
			msg = after
		}
		return "client: " + msg
	}
	msg := cmp.Or(r.ans.Error, strings.TrimSpace(r.body))
	if len(msg) > 100 {
		msg = msg[:100] + "..."
	}
	return fmt.Sprintf("%d from %s: %s", r.status, answeredBy(r), msg)
}

// runRolling is the rolling scenario: in backup mode without backups
// (each session on one node only), restart every node gracefully, one at a
// time, while every user keeps visiting through the proxy (see roll).
func (d *demo) runRolling(ctx context.Context) error {
	if ok, err := d.beforeRoll(ctx); !ok {
		return err
	}
	steps := make([]rollStep, len(d.nodes))
	for i, n := range d.nodes {
		steps[i] = rollStep{node: n}
	}
	return d.roll(ctx, "graceful rolling restart of all %d nodes", steps, false)
}

// beforeRoll logs every user in, checks them on every node and waits until
// the cluster is fully replicated. It returns false when the roll cannot
// start: with an error when the scenario cannot go on, without one when a
// check failed (recorded).
func (d *demo) beforeRoll(ctx context.Context) (bool, error) {
	if err := d.loginAndVisit(ctx); err != nil {
		return false, err
	}
	if err := d.meEverywhere(ctx); err != nil {
		return false, err
	}
	for _, u := range d.users {
		u.acked = u.visits
	}
	d.printClusterState(ctx, d.nodes)

	ph := d.beginPhase("wait until fully replicated before the restart")
	r := d.waitReplicated(ctx, d.nodes, ph.start, d.cfg.readyTimeout)
	if err := d.endPhase(ctx, ph); err != nil {
		return false, err
	}
	if !r.ok {
		d.fail(ph, "the cluster did not report fully replicated within %s before the restart; the last answers:%s",
			d.cfg.readyTimeout, r.describe(d.nodes))
		return false, nil
	}
	d.printf("every node reports fully replicated (after %s)", round(r.took))
	return true, nil
}

// rollStep is one node's graceful restart in a roll: onto the executable
// bin, or the same one when bin is empty.
type rollStep struct {
	node *node
	bin  string
}

// roll restarts the nodes of steps gracefully, one at a time, each back,
// healthy and the cluster fully replicated before the next, while every
// user keeps visiting through the proxy; then it checks that nobody was
// logged out and no acknowledged visit was lost, through the proxy and
// directly on every node. what describes the roll for the messages, with
// %d for the number of steps. With strict, a visit that failed during the
// roll (other than a 401, which always fails a check) fails a check too.
func (d *demo) roll(ctx context.Context, what string, steps []rollStep, strict bool) error {
	what = fmt.Sprintf(what, len(steps))
	lph := d.beginPhase("background load: visits via proxy during the restart")
	d.printf("phase 3: %s, one at a time (SIGTERM, exit, start with the same flags, wait until healthy and every node fully replicated), while %d users keep visiting through the proxy",
		what, min(d.cfg.concurrency, len(d.users)))
	l := d.startLoad(ctx, lph)
	d.load = l
	for _, st := range steps {
		n := st.node
		rec, err := d.restartGracefully(ctx, l, n, st.bin)
		if rec != nil {
			d.restarts = append(d.restarts, rec)
		}
		if err != nil {
			l.end()
			return err
		}
		if !rec.ok {
			d.printf("stopping the rolling restart after the failure of %s", n.name)
			break
		}
	}
	l.setStep("after the restart")
	l.end()
	if err := d.endPhase(ctx, lph); err != nil {
		return err
	}
	d.println("load during the %s: %d visits acknowledged, %d failed and were not resent (%.1f%%), %d answered 401 (not logged in) to %d users",
		what,
		l.acked.Load(), l.errors.Load(), 100*float64(l.errors.Load())/float64(max(1, l.acked.Load()+l.errors.Load())),
		l.loggedOut.Load(), l.usersLoggedOut.Load())
	for _, k := range slices.Sorted(maps.Keys(l.kinds)) {
		d.println("  %5d x %s", l.kinds[k], k)
	}
	if d.cfg.verbose {
		for _, e := range l.examples {
			d.println("  e.g. %s", e)
		}
	}
	if n := l.errors.Load(); strict && n > 0 {
		d.fail(lph, "%d visits failed during the %s (the first: %s)", n, what, strings.Join(l.examples[:min(1, len(l.examples))], ""))
	}

	ph := d.beginPhase("final: /me via proxy + on every node = acked visits")
	d.printf("phase 4: GET /me of every user through the proxy and directly on each of the %d nodes: still logged in, visits = the visits acknowledged", len(d.nodes))
	var back atomic.Int64 // users who got a 401 during the load and pass here
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		ok := d.meAcked(ctx, ph, u, nil)
		for _, n := range d.nodes {
			ok = d.meAcked(ctx, ph, u, n) && ok
		}
		if ok && u.loggedOut > 0 {
			back.Add(1)
		}
	})
	if err := d.endPhase(ctx, ph); err != nil {
		return err
	}
	if n := l.usersLoggedOut.Load(); n > 0 {
		d.println("of the %d users answered 401 during the restart, %d are logged in with every acknowledged visit here: the 401s were transient",
			n, back.Load())
	}
	return nil
}

// restartGracefully restarts n: SIGTERM, wait for the exit, start it
// again (from bin unless it is empty), wait until it is healthy and every node reports fully replicated.
// A failed check is recorded (rec.ok false); the error is only for a
// scenario that cannot go on.
func (d *demo) restartGracefully(ctx context.Context, l *load, n *node, bin string) (*restartRecord, error) {
	rec := &restartRecord{node: n}
	ph := d.beginPhase("graceful restart of " + n.name)
	errsBefore := l.errors.Load()
	defer func() {
		rec.errors = l.errors.Load() - errsBefore
		ph.end()
		rec.total = ph.dur
	}()

	l.setStep(fmt.Sprintf("during the stop of %s", n.name))
	sctx, cancel := context.WithTimeout(ctx, gracefulStopTimeout)
	err := n.proc.Stop(sctx)
	cancel()
	rec.stop = time.Since(ph.start)
	switch {
	case ctx.Err() != nil:
		return rec, ctx.Err()
	case err != nil:
		d.fail(ph, "%s did not exit within %s of SIGTERM and was killed (its sessions may not have been handed over); its log ends with:\n%s",
			n.name, gracefulStopTimeout, n.proc.LogTail(15))
		return rec, nil
	case n.proc.ExitError() != nil:
		d.fail(ph, "%s exited with %v after SIGTERM; its log ends with:\n%s", n.name, n.proc.ExitError(), n.proc.LogTail(15))
		return rec, nil
	}

	l.setStep(fmt.Sprintf("while %s starts again", n.name))
	restart := n.proc.Restart
	if bin != "" {
		restart = func() error { return n.proc.RestartWith(bin) }
	}
	if err := restart(); err != nil {
		return rec, err
	}
	hctx, hcancel := context.WithTimeout(ctx, d.cfg.readyTimeout)
	err = n.proc.WaitHealthy(hctx)
	hcancel()
	rec.healthy = time.Since(n.proc.StartedAt())
	if err != nil {
		if ctx.Err() != nil {
			return rec, ctx.Err()
		}
		d.fail(ph, "%s not healthy within %s after the restart: %v", n.name, d.cfg.readyTimeout, err)
		return rec, nil
	}

	l.setStep(fmt.Sprintf("after %s is back, until fully replicated", n.name))
	from := time.Now()
	r := d.waitReplicated(ctx, d.nodes, from, d.cfg.readyTimeout)
	rec.replicated = r.took
	if ctx.Err() != nil {
		return rec, ctx.Err()
	}
	if !r.ok {
		d.fail(ph, "after the restart of %s the nodes did not all report fully replicated within %s; the last answers:%s",
			n.name, d.cfg.readyTimeout, r.describe(d.nodes))
		return rec, nil
	}
	rec.ok = true
	l.setStep(fmt.Sprintf("after the restart of %s", n.name))
	d.printf("%s: SIGTERM, handed over and exited in %s; restarted (pid %d), healthy %s after the start; every node fully replicated %s later (%d sessions in all); %d load errors meanwhile",
		n.name, round(rec.stop), n.proc.Pid(), round(rec.healthy), round(rec.replicated), r.sessions, l.errors.Load()-errsBefore)
	d.noteStale(r)
	return rec, nil
}

// meAcked checks that GET /me answers 200 with u's name and exactly the
// visits the servers acknowledged, through the proxy (n == nil) or
// directly on n.
func (d *demo) meAcked(ctx context.Context, ph *phase, u *user, n *node) bool {
	r := d.send(ctx, ph, u, n, http.MethodGet, "/me", nil)
	where := fmt.Sprintf("%s: GET /me %s", u.name, via(n))
	switch {
	case r.err == nil && r.status == http.StatusUnauthorized:
		d.fail(ph, "%s: answered 401 by %s: logged out (%d visits acknowledged)", where, answeredBy(r), u.acked)
	case r.err != nil || r.status != http.StatusOK || r.ans.Visits == nil:
		d.fail(ph, "%s: want 200 with visits, got %s", where, r)
	case r.ans.User != u.name:
		d.fail(ph, "%s: logged in as %q, want %q", where, r.ans.User, u.name)
	case n != nil && r.ans.Node != n.name:
		d.fail(ph, "%s: answered by node %q", where, r.ans.Node)
	case *r.ans.Visits < u.acked:
		d.fail(ph, "%s: visits = %d, but %d were acknowledged: %d acknowledged visits LOST (answered by %s)",
			where, *r.ans.Visits, u.acked, u.acked-*r.ans.Visits, answeredBy(r))
	case *r.ans.Visits > u.acked:
		d.fail(ph, "%s: visits = %d, but only %d were acknowledged: %d more; %d of this user's visits failed during the restart (the last %s) (answered by %s)",
			where, *r.ans.Visits, u.acked, *r.ans.Visits-u.acked, u.loadErrors, cmp.Or(u.lastErr, "-"), answeredBy(r))
	default:
		return true
	}
	return false
}
