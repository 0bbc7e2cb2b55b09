package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// scenario runs the checked steps. It returns an error only when it cannot
// go on (ctx ended, nobody could log in); failed checks are recorded and
// reported by summary.
func (d *demo) scenario(ctx context.Context) error {
	V := d.cfg.visits
	victim := d.victim

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
	if err := d.endPhase(ctx, ph, nil); err != nil {
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

	ph = d.beginPhase("GET /me directly on every node")
	d.printf("phase 2: GET /me of every user directly on each of the %d nodes (the session cookie copied to each)", len(d.nodes))
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		for _, n := range d.nodes {
			d.me(ctx, ph, u, n)
		}
	})
	if err := d.endPhase(ctx, ph, nil); err != nil {
		return err
	}

	d.printf("phase 3: SIGKILL %s (pid %d), then at once GET /me + 1 visit per user through the proxy", victim.name, victim.proc.Pid())
	before := d.backendErrors(victim)
	ph = d.beginPhase(fmt.Sprintf("after SIGKILL of %s: /me + visit via proxy", victim.name))
	d.killAt = time.Now()
	ph.start = d.killAt
	if err := victim.proc.Kill(); err != nil {
		return err
	}
	d.printf("%s is dead (%v); it stays in the proxy's rotation, as behind a load balancer that has not noticed yet",
		victim.name, victim.proc.ExitError())
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		if d.me(ctx, ph, u, nil) {
			d.noteOKAfterKill()
		}
		if d.visit(ctx, ph, u, nil) {
			d.noteOKAfterKill()
		}
	})
	if err := d.endPhase(ctx, ph, victim); err != nil {
		return err
	}
	retried := d.backendErrors(victim) - before
	d.println("first good answer %s after the SIGKILL; %d requests found %s dead and were retried on the next node by the proxy",
		round(time.Duration(d.firstOKAfterKill.Load())), retried, victim.name)

	ph = d.beginPhase("restart " + victim.name)
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
	if err := d.endPhase(ctx, ph, nil); err != nil {
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
	return d.endPhase(ctx, ph, nil)
}

// endPhase closes a phase, prints its line, and checks that no node but
// dead died.
func (d *demo) endPhase(ctx context.Context, ph *phase, dead *node) error {
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
	d.printf("%s: %d requests in %s (p50 %s, p99 %s, max %s), answered by %s",
		status, ph.requests.Load(), round(ph.dur), round(ph.percentile(50)), round(ph.percentile(99)),
		round(ph.percentile(100)), distribution(ph.byNode))
	for _, n := range d.nodes {
		if n != dead && !n.proc.Running() {
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

// noteOKAfterKill records the time from the SIGKILL to the first good
// answer.
func (d *demo) noteOKAfterKill() {
	since := int64(time.Since(d.killAt))
	for {
		cur := d.firstOKAfterKill.Load()
		if (cur != 0 && cur <= since) || d.firstOKAfterKill.CompareAndSwap(cur, since) {
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
