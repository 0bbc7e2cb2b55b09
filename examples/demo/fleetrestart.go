package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// The fleet-restart scenario: every node keeps a snapshot of its sessions
// (-snapshot-dir of examples/login); the whole fleet is stopped at once,
// gracefully and then with SIGKILL, and restarted.

// fleetRestart is what the fleet-restart scenario found.
type fleetRestart struct {
	loggedOut []*user                  // users who logged out before the stops
	cookies   map[*user][]*http.Cookie // their cookies from before the logout
	rounds    []fleetRound
}

// fleetRound is one stop of every node and the restart after it.
type fleetRound struct {
	how       string          // "SIGTERM" or "SIGKILL"
	exits     []time.Duration // per node, from the signal to the exit
	healthy   time.Duration   // from the restart until every node was healthy
	survived  int             // logged-in users still logged in, with their visits, on every node
	users     int             // logged-in users checked
	stillOut  int             // logged-out users still logged out on every node
	loggedOut int             // logged-out users checked
}

// snapshotArgs returns the node flags that give node name a snapshot
// directory of its own, in the fleet-restart scenario only.
func (d *demo) snapshotArgs(name string) []string {
	if d.cfg.scenario != scenarioFleetRestart {
		return nil
	}
	return []string{"-snapshot-dir", d.snapshotDir(name), "-snapshot-interval", d.cfg.snapshotInterval.String()}
}

func (d *demo) snapshotDir(name string) string {
	return filepath.Join(d.logDir, "snapshots", name)
}

// runFleetRestart logs users in, logs every tenth of them out on another
// node than the one that logged it in, SIGTERMs every node at once and
// restarts them all, checks that every session survived and every logout
// stayed final; then visits once more, waits more than one snapshot
// interval, SIGKILLs every node at once, restarts them and checks again.
func (d *demo) runFleetRestart(ctx context.Context) error {
	if err := d.loginAndVisit(ctx); err != nil {
		return err
	}
	if err := d.meEverywhere(ctx); err != nil {
		return err
	}
	f := &fleetRestart{cookies: map[*user][]*http.Cookie{}}
	d.fleet = f
	d.logOutSome(ctx, f)

	d.printf("phase 4: SIGTERM to all %d nodes at once (each must exit within 3s), then restart them all", len(d.nodes))
	// Our idle keep-alive connections would make each server's graceful
	// shutdown wait for them; a browser's would not be there either.
	d.tr.CloseIdleConnections()
	if err := d.stopAndRestart(ctx, f, "SIGTERM"); err != nil {
		return err
	}
	if err := d.checkFleet(ctx, f, "SIGTERM"); err != nil {
		return err
	}

	ph := d.beginPhase("1 visit per user via proxy before the SIGKILL")
	d.printf("phase 6: 1 more visit per user through the proxy")
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		if u.loggedIn {
			d.visit(ctx, ph, u, nil)
		}
	})
	if err := d.endPhase(ctx, ph); err != nil {
		return err
	}
	lastWrite := time.Now()
	ph = d.beginPhase("wait 1.5 snapshot intervals")
	d.printf("phase 7: wait one and a half snapshot intervals (%s) after the last visits", 3*d.cfg.snapshotInterval/2)
	d.waitSnapshots(ctx, lastWrite)
	if err := d.endPhase(ctx, ph); err != nil {
		return err
	}
	d.printf("phase 8: SIGKILL all %d nodes at once %s after the last visit, then restart them all", len(d.nodes), round(time.Since(lastWrite)))
	if err := d.stopAndRestart(ctx, f, "SIGKILL"); err != nil {
		return err
	}
	return d.checkFleet(ctx, f, "SIGKILL")
}

// logOutSome logs every tenth logged-in user out, directly on the node
// after the one that answered its last request.
func (d *demo) logOutSome(ctx context.Context, f *fleetRestart) {
	ph := d.beginPhase("log every 10th user out on another node")
	d.printf("phase 3: every 10th user logs out, directly on a node (not the one that logged it in, as far as the proxy's rotation tells)")
	for i, u := range d.users {
		if i%10 != 0 || !u.loggedIn {
			continue
		}
		f.cookies[u] = u.jar.Cookies(d.proxyURL)
		n := d.nodes[(i+1)%len(d.nodes)]
		r := d.send(ctx, ph, u, n, http.MethodPost, "/logout", nil)
		if r.err != nil || r.status >= 400 {
			d.fail(ph, "%s: POST /logout on %s: got %s", u.name, n.name, r)
			continue
		}
		u.loggedIn = false
		f.loggedOut = append(f.loggedOut, u)
	}
	_ = d.endPhase(ctx, ph)
	d.printf("%d users logged out; their old session cookies are kept, to present them again after the restarts", len(f.loggedOut))
}

// stopAndRestart stops every node at once (SIGTERM, or SIGKILL) and starts
// them all again.
func (d *demo) stopAndRestart(ctx context.Context, f *fleetRestart, how string) error {
	fr := fleetRound{how: how, exits: make([]time.Duration, len(d.nodes))}
	ph := d.beginPhase(how + " to every node at once")
	var wg sync.WaitGroup
	errs := make([]error, len(d.nodes))
	for i, n := range d.nodes {
		wg.Go(func() {
			start := time.Now()
			if how == "SIGKILL" {
				errs[i] = n.proc.Kill()
			} else {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				errs[i] = n.proc.Stop(sctx)
				cancel()
			}
			fr.exits[i] = time.Since(start)
		})
	}
	wg.Wait()
	var exits []string
	for i, n := range d.nodes {
		exits = append(exits, fmt.Sprintf("%s %s", n.name, round(fr.exits[i])))
		switch {
		case errs[i] != nil:
			d.fail(ph, "%s: %v", n.name, errs[i])
		case how == "SIGTERM" && n.proc.ExitError() != nil:
			d.fail(ph, "%s exited with %v after SIGTERM", n.name, n.proc.ExitError())
		case how == "SIGTERM" && fr.exits[i] > 3*time.Second:
			d.fail(ph, "%s took %s to exit after SIGTERM, want at most 3s", n.name, round(fr.exits[i]))
		}
	}
	if err := d.endPhase(ctx, ph, d.nodes...); err != nil {
		return err
	}
	d.printf("every node exited after %s: %s", how, strings.Join(exits, ", "))

	ph = d.beginPhase("restart every node")
	for _, n := range d.nodes {
		if err := n.proc.Restart(); err != nil {
			return err
		}
	}
	for i, n := range d.nodes {
		wg.Go(func() {
			hctx, cancel := context.WithTimeout(ctx, d.cfg.readyTimeout)
			defer cancel()
			errs[i] = n.proc.WaitHealthy(hctx)
		})
	}
	wg.Wait()
	ph.end()
	fr.healthy = ph.dur
	for i, n := range d.nodes {
		if errs[i] != nil {
			d.fail(ph, "%s not healthy within %s of the restart: %v", n.name, d.cfg.readyTimeout, errs[i])
		}
	}
	f.rounds = append(f.rounds, fr)
	if err := d.endPhase(ctx, ph); err != nil {
		return err
	}
	d.printf("all %d nodes restarted and healthy in %s", len(d.nodes), round(ph.dur))
	return nil
}

// checkFleet checks, directly on every node, that every logged-in user is
// still logged in with its visits and that every logged-out one is still
// logged out, presenting its old cookie.
func (d *demo) checkFleet(ctx context.Context, f *fleetRestart, how string) error {
	r := &f.rounds[len(f.rounds)-1]
	ph := d.beginPhase("after " + how + " of all: /me on every node")
	d.printf("phase %d: GET /me of every user directly on every node; logged-out users present their old cookie", map[string]int{"SIGTERM": 5, "SIGKILL": 9}[how])
	var mu sync.Mutex
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		if !u.loggedIn {
			return
		}
		ok := true
		for _, n := range d.nodes {
			ok = d.me(ctx, ph, u, n) && ok
		}
		mu.Lock()
		r.users++
		if ok {
			r.survived++
		}
		mu.Unlock()
	})
	for _, u := range f.loggedOut {
		ok := true
		for _, n := range d.nodes {
			jar, _ := cookiejar.New(nil)
			jar.SetCookies(d.proxyURL, f.cookies[u])
			u.jar = jar // only this request's: a fresh jar with the old cookie
			res := d.send(ctx, ph, u, n, http.MethodGet, "/me", nil)
			if res.err != nil || res.status != http.StatusUnauthorized {
				d.fail(ph, "%s logged out before the stops: GET /me on %s with the old cookie: want 401, got %s", u.name, n.name, res)
				ok = false
			}
		}
		r.loggedOut++
		if ok {
			r.stillOut++
		}
	}
	if err := d.endPhase(ctx, ph); err != nil {
		return err
	}
	d.printf("after %s of every node: %d of %d sessions survived on every node, %d of %d logouts stayed final",
		how, r.survived, r.users, r.stillOut, r.loggedOut)
	return nil
}

// waitSnapshots waits one and a half snapshot intervals from since: a
// node starts a snapshot every interval (skipped when nothing changed
// since the last one began), so by then every write made before since is
// on disk. The wait is the scenario's premise, not a guess at a condition:
// what it proves is checked after the SIGKILL. It returns false if ctx
// ended first.
func (d *demo) waitSnapshots(ctx context.Context, since time.Time) bool {
	t := time.NewTimer(time.Until(since.Add(3 * d.cfg.snapshotInterval / 2)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	var ages []string
	for _, n := range d.nodes {
		if fi, err := os.Stat(filepath.Join(d.snapshotDir(n.name), "sessions.snap")); err == nil {
			ages = append(ages, fmt.Sprintf("%s %s", n.name, round(time.Since(fi.ModTime()))))
		}
	}
	d.printf("age of each node's snapshot file: %s (a node whose sessions did not change since its last snapshot began writes none)", strings.Join(ages, ", "))
	return true
}

// describeFleetRestart is the summary's lines on the fleet-restart
// scenario.
func (d *demo) describeFleetRestart() []string {
	if d.fleet == nil {
		return nil
	}
	var out []string
	for _, r := range d.fleet.rounds {
		var exits []string
		for i, e := range r.exits {
			exits = append(exits, fmt.Sprintf("%s %s", d.nodes[i].name, round(e)))
		}
		out = append(out, fmt.Sprintf("%s of all %d: %d/%d sessions survived, %d/%d logouts stayed final; exits %s; healthy again %s after the restart",
			r.how, len(d.nodes), r.survived, r.users, r.stillOut, r.loggedOut, strings.Join(exits, ", "), round(r.healthy)))
	}
	return out
}
