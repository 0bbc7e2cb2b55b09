package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// runBackups is the backups scenario: in backup mode
// (each session on a primary and one backup by default), SIGKILL a node,
// wait until the survivors report every partition fully replicated again,
// SIGKILL another, and check that every user is still logged in with an
// exact visit count, through the proxy and directly on every survivor.
func (d *demo) runBackups(ctx context.Context) error {
	v1, v2 := d.victim, d.victim2
	if err := d.loginAndVisit(ctx); err != nil {
		return err
	}
	if err := d.meEverywhere(ctx); err != nil {
		return err
	}
	d.printClusterState(ctx, d.nodes)

	survivors := slices.DeleteFunc(slices.Clone(d.nodes), func(n *node) bool { return n == v1 })
	d.printf("phase 3: SIGKILL %s (pid %d), then at once GET /me + 1 visit per user through the proxy, while polling /healthz of the %d survivors",
		v1.name, v1.proc.Pid(), len(survivors))
	// The survivors are polled from the SIGKILL on, while the users visit:
	// re-replication may well be over before the visits are.
	repl := make(chan *replWait, 1)
	polling := false
	err := d.killAndCheck(ctx, v1, nil, func(k *killRecord) {
		polling = true
		go func() { repl <- d.waitReplicated(ctx, survivors, k.at, d.cfg.readyTimeout) }()
	})
	if err != nil {
		// The poller ends with ctx, or at its deadline: wait for it, so
		// that nothing uses the transport after run returns.
		if polling {
			<-repl
		}
		return err
	}

	ph := d.beginPhase("wait until the survivors are fully replicated")
	d.printf("phase 4: wait until every survivor reports \"fully_replicated\": true (and sees exactly the survivors, with every partition it owns complete), at most %s after the SIGKILL",
		d.cfg.readyTimeout)
	r := <-repl
	ph.end()
	d.rereplicated = r
	if ctx.Err() != nil {
		return d.endPhase(ctx, ph, v1)
	}
	if !r.ok {
		d.fail(ph, "the survivors did not all report fully replicated within %s of the SIGKILL of %s (%d polls, most under-replicated partitions seen %d); the last answers:%s",
			d.cfg.readyTimeout, v1.name, r.polls, r.maxUnder, r.describe(survivors))
		d.printf("%d FAILED: not fully replicated %s after the SIGKILL; stopping here, %s is not killed", ph.failures.Load(), round(r.took), v2.name)
		return d.endPhase(ctx, ph, v1)
	}
	d.printf("fully replicated again %s after the SIGKILL of %s: every survivor saw it gone after %s, re-replication took %s more (up to %d partitions under-replicated on one node; %d sessions held by the %d survivors; %d polls)",
		round(r.took), v1.name, round(r.seen), round(r.took-r.seen), r.maxUnder, r.sessions, len(survivors), r.polls)
	d.noteStale(r)
	if err := d.endPhase(ctx, ph, v1); err != nil {
		return err
	}
	d.printClusterState(ctx, survivors)

	d.printf("phase 5: SIGKILL %s (pid %d), then at once GET /me + 1 visit per user through the proxy", v2.name, v2.proc.Pid())
	if err := d.killAndCheck(ctx, v2, []*node{v1}, nil); err != nil {
		return err
	}

	last := slices.DeleteFunc(slices.Clone(survivors), func(n *node) bool { return n == v2 })
	var names []string
	for _, n := range last {
		names = append(names, n.name)
	}
	ph = d.beginPhase("GET /me directly on every survivor")
	d.printf("phase 6: GET /me of every user directly on each of the %d survivors (%s)", len(last), strings.Join(names, ", "))
	d.forEachUser(ctx, false, func(ctx context.Context, u *user) {
		for _, n := range last {
			d.me(ctx, ph, u, n)
		}
	})
	return d.endPhase(ctx, ph, v1, v2)
}

// describeRereplication is the summary's line on the re-replication after
// the first kill of the backups scenario.
func (d *demo) describeRereplication() string {
	r := d.rereplicated
	if r == nil {
		return ""
	}
	if !r.ok {
		return fmt.Sprintf("NOT fully replicated within %s", round(r.took))
	}
	return fmt.Sprintf("fully replicated again %s after the SIGKILL (failure detected after %s; %d sessions on the survivors)",
		round(r.took), round(r.seen), r.sessions)
}
