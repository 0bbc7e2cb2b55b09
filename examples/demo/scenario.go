package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// scenario runs the checked steps of the chosen scenario. It returns an
// error only when it cannot go on (ctx ended, nobody could log in); failed
// checks are recorded and reported by summary.
func (d *demo) scenario(ctx context.Context) error {
	switch d.cfg.scenario {
	case scenarioBackups:
		return d.runBackups(ctx)
	case scenarioRolling:
		return d.runRolling(ctx)
	case scenarioUpgrade:
		return d.runUpgrade(ctx)
	case scenarioFleetRestart:
		return d.runFleetRestart(ctx)
	default:
		return d.runKill(ctx)
	}
}

// loginAndVisit is the first phase of every scenario: every user logs in
// and visits -visits times through the proxy.
func (d *demo) loginAndVisit(ctx context.Context) error {
	V := d.cfg.visits
	ph := d.beginPhase(fmt.Sprintf("log in + %d visits through the proxy", V))
	d.printf("phase 1: %d users log in and visit %d times each through the proxy, %d at a time", len(d.users), V, d.cfg.concurrency)
	d.sanityChecks(ctx, ph)
	d.forEachUser(ctx, true, func(ctx context.Context, u *user) {
		if !d.login(ctx, ph, u) {
			return
		}
		for range V {
			if !d.visit(ctx, ph, u, nil) {
				return
			}
		}
	})
	if err := d.endPhase(ctx, ph); err != nil {
		return err
	}
	loggedIn := 0
	for _, u := range d.users {
		if u.loggedIn {
			loggedIn++
		}
	}
	if loggedIn == 0 {
		return fmt.Errorf("no user could log in: %s", strings.Join(d.failures, "; "))
	}
	return nil
}

// meEverywhere is the second phase of every scenario: GET /me of every user
// directly on every node.
func (d *demo) meEverywhere(ctx context.Context) error {
	ph := d.beginPhase("GET /me directly on every node")
	d.printf("phase 2: GET /me of every user directly on each of the %d nodes (the session cookie copied to each)", len(d.nodes))
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		for _, n := range d.nodes {
			d.me(ctx, ph, u, n)
		}
	})
	return d.endPhase(ctx, ph)
}

// runKill is the default scenario: SIGKILL one node, check every user,
// restart it, check again.
func (d *demo) runKill(ctx context.Context) error {
	victim := d.victim
	if err := d.loginAndVisit(ctx); err != nil {
		return err
	}
	if err := d.meEverywhere(ctx); err != nil {
		return err
	}

	d.printf("phase 3: SIGKILL %s (pid %d), then at once GET /me + 1 visit per user through the proxy", victim.name, victim.proc.Pid())
	if err := d.killAndCheck(ctx, victim, nil, nil); err != nil {
		return err
	}

	ph := d.beginPhase("restart " + victim.name)
	d.printf("phase 4: restart %s with the same flags and wait for GET /healthz = 200", victim.name)
	if err := victim.proc.Restart(); err != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, d.cfg.readyTimeout)
	err := victim.proc.WaitHealthy(hctx)
	cancel()
	ph.end()
	d.restartHealthy = ph.dur
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.fail(ph, "%s not healthy within %s after the restart: %v", victim.name, d.cfg.readyTimeout, err)
		return nil
	}
	d.printf("%s is back (pid %d), healthy %s after the restart", victim.name, victim.proc.Pid(), round(ph.dur))

	ph = d.beginPhase(fmt.Sprintf("/me + visit directly on the restarted %s", victim.name))
	d.printf("phase 5: GET /me + 1 visit per user directly on the restarted %s", victim.name)
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		d.me(ctx, ph, u, victim)
		d.visit(ctx, ph, u, victim)
	})
	if err := d.endPhase(ctx, ph); err != nil {
		return err
	}

	// The restarted node must also be back in the replication of the
	// others, both ways: the last visit lands anywhere, every node sees it.
	ph = d.beginPhase("1 visit via proxy, then /me directly on every node")
	d.printf("phase 6: 1 more visit per user through the proxy, then GET /me directly on every node")
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		d.visit(ctx, ph, u, nil)
		for _, n := range d.nodes {
			d.me(ctx, ph, u, n)
		}
	})
	return d.endPhase(ctx, ph)
}

// endPhase closes a phase, prints its line if it made requests, and checks
// that no node but those in dead died.
func (d *demo) endPhase(ctx context.Context, ph *phase, dead ...*node) error {
	ph.end()
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: the whole scenario took longer than -timeout %s", ph.name, d.cfg.timeout)
		}
		return err
	}
	status := "ok"
	if f := ph.failures.Load(); f > 0 {
		status = fmt.Sprintf("%d FAILED", f)
	}
	if ph.requests.Load() > 0 {
		d.printf("%s: %d requests in %s (p50 %s, p99 %s, max %s), answered by %s",
			status, ph.requests.Load(), round(ph.dur), round(ph.percentile(50)), round(ph.percentile(99)),
			round(ph.percentile(100)), distribution(ph.byNode))
	}
	for _, n := range d.nodes {
		if !slices.Contains(dead, n) && !n.proc.Running() {
			d.fail(ph, "%s exited unexpectedly (%v); its log ends with:\n%s", n.name, n.proc.ExitError(), n.proc.LogTail(15))
		}
	}
	return nil
}

// sanityChecks shows that the checks can fail: a wrong password and a
// request without a cookie must both get 401.
func (d *demo) sanityChecks(ctx context.Context, ph *phase) {
	probe := &user{name: "intruder", client: &http.Client{Transport: d.tr, Timeout: d.cfg.requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	r := d.send(ctx, ph, probe, nil, http.MethodPost, "/login", url.Values{"user": {"intruder"}, "password": {"wrong"}})
	if r.err != nil || r.status != http.StatusUnauthorized {
		d.fail(ph, "POST /login with a wrong password via the proxy: want 401, got %s", r)
	}
	r = d.send(ctx, ph, probe, nil, http.MethodGet, "/me", nil)
	if r.err != nil || r.status != http.StatusUnauthorized {
		d.fail(ph, "GET /me without a cookie via the proxy: want 401, got %s", r)
	}
}

// login logs u in through the proxy.
func (d *demo) login(ctx context.Context, ph *phase, u *user) bool {
	r := d.send(ctx, ph, u, nil, http.MethodPost, "/login", url.Values{"user": {u.name}, "password": {"demo"}})
	where := u.name + ": POST /login via the proxy"
	switch {
	case r.err != nil || (r.status != http.StatusOK && r.status != http.StatusSeeOther):
		d.fail(ph, "%s: want 200 or 303, got %s", where, r)
		return false
	case len(u.jar.Cookies(d.proxyURL)) == 0:
		d.fail(ph, "%s: answered %d but set no cookie a browser sends back over plain http (Set-Cookie: %q)",
			where, r.status, r.setCookie)
		return false
	}
	u.loggedIn, u.visits, u.known = true, 0, true
	return true
}

// me checks that GET /me answers 200 with u's name, through the proxy
// (n == nil) or directly on n.
func (d *demo) me(ctx context.Context, ph *phase, u *user, n *node) bool {
	r := d.send(ctx, ph, u, n, http.MethodGet, "/me", nil)
	where := fmt.Sprintf("%s: GET /me %s", u.name, via(n))
	switch {
	case r.err != nil || r.status != http.StatusOK:
		d.fail(ph, "%s: want 200, got %s", where, r)
	case r.ans.User != u.name:
		d.fail(ph, "%s: logged in as %q, want %q", where, r.ans.User, u.name)
	case n != nil && r.ans.Node != n.name:
		d.fail(ph, "%s: answered by node %q", where, r.ans.Node)
	case r.ans.Visits != nil && u.known && *r.ans.Visits != u.visits:
		d.fail(ph, "%s: visits = %d, want %d (the count of this user's last visit)", where, *r.ans.Visits, u.visits)
	default:
		return true
	}
	return false
}

// visit checks that POST /visit increments u's count by exactly one,
// through the proxy (n == nil) or directly on n.
func (d *demo) visit(ctx context.Context, ph *phase, u *user, n *node) bool {
	want := u.visits + 1
	r := d.send(ctx, ph, u, n, http.MethodPost, "/visit", nil)
	where := fmt.Sprintf("%s: POST /visit %s", u.name, via(n))
	switch {
	case r.err != nil || r.status != http.StatusOK || r.ans.Visits == nil:
		d.fail(ph, "%s: want 200 {\"visits\":%d}, got %s", where, want, r)
		u.known = false // it may or may not have counted
		return false
	case n != nil && r.ans.Node != n.name:
		d.fail(ph, "%s: answered by node %q", where, r.ans.Node)
	}
	got := *r.ans.Visits
	ok := true
	switch {
	case u.known && got != want:
		d.fail(ph, "%s: visits = %d, want exactly %d (a write was lost or applied twice)", where, got, want)
		ok = false
	case !u.known && got <= u.visits:
		d.fail(ph, "%s: visits = %d, want more than %d", where, got, u.visits)
		ok = false
	}
	// Carry on from what the servers say, so one failure is reported once.
	u.visits, u.known = got, true
	return ok
}

// killRecord is one SIGKILL and what followed it.
type killRecord struct {
	node    *node
	at      time.Time
	firstOK atomic.Int64 // ns from the SIGKILL to the first good answer; 0 = none yet
	ph      *phase       // the phase that starts with the SIGKILL
	retried int64        // requests the proxy found the node dead for and retried elsewhere
}

// killAndCheck SIGKILLs n and at once, through the proxy, checks GET /me
// and one more visit of every user. dead are the nodes killed before.
// afterKill, if not nil, is called right after the SIGKILL. It returns an
// error only when the scenario cannot go on.
func (d *demo) killAndCheck(ctx context.Context, n *node, dead []*node, afterKill func(*killRecord)) error {
	before := d.backendErrors(n)
	k := &killRecord{node: n, ph: d.beginPhase(fmt.Sprintf("after SIGKILL of %s: /me + visit via proxy", n.name))}
	d.kills = append(d.kills, k)
	k.at = time.Now()
	k.ph.start = k.at
	if err := n.proc.Kill(); err != nil {
		return err
	}
	d.printf("%s is dead (%v); it stays in the proxy's rotation, as behind a load balancer that has not noticed yet",
		n.name, n.proc.ExitError())
	if afterKill != nil {
		afterKill(k)
	}
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		if d.me(ctx, k.ph, u, nil) {
			k.noteOK()
		}
		if d.visit(ctx, k.ph, u, nil) {
			k.noteOK()
		}
	})
	if err := d.endPhase(ctx, k.ph, append(dead, n)...); err != nil {
		return err
	}
	k.retried = d.backendErrors(n) - before
	d.println("first good answer %s after the SIGKILL; %d requests found %s dead and were retried on the next node by the proxy",
		round(time.Duration(k.firstOK.Load())), k.retried, n.name)
	return nil
}

// noteOK records the time from the SIGKILL to the first good answer.
func (k *killRecord) noteOK() {
	since := int64(time.Since(k.at))
	for {
		cur := k.firstOK.Load()
		if (cur != 0 && cur <= since) || k.firstOK.CompareAndSwap(cur, since) {
			return
		}
	}
}

// backendErrors returns the proxy's count of connection errors to n.
func (d *demo) backendErrors(n *node) int64 {
	for _, b := range d.proxy.Stats().Backends {
		if b.Backend == n.url {
			return b.Errors
		}
	}
	return 0
}
