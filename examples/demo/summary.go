package main

import (
	"fmt"
	"strings"
	"time"
)

// summary prints the results.
func (d *demo) summary() {
	var requests, failed int64
	byNode := map[string]int{}
	for _, ph := range d.phases {
		requests += ph.requests.Load()
		failed += ph.failures.Load()
		ph.mu.Lock()
		for k, v := range ph.byNode {
			byNode[k] += v
		}
		ph.mu.Unlock()
	}
	loggedIn := 0
	for _, u := range d.users {
		if u.loggedIn {
			loggedIn++
		}
	}
	ps := d.proxy.Stats()
	var proxyLines []string
	for _, b := range ps.Backends {
		name := b.Backend
		for _, n := range d.nodes {
			if n.url == b.Backend {
				name = n.name
			}
		}
		proxyLines = append(proxyLines, fmt.Sprintf("%s %d answered/%d connection errors", name, b.Responses, b.Errors))
	}

	before := "the kill"
	switch d.cfg.scenario {
	case scenarioBackups:
		before = "the first kill"
	case scenarioRolling:
		before = "the rolling restart"
	case scenarioUpgrade:
		before = "the upgrade"
	case scenarioFleetRestart:
		before = "the stops of every node"
	}
	d.printf("summary")
	if d.mode != "" {
		d.println("mode          %s (node flags %q)", d.mode, strings.Join(d.cfg.nodeArgs, " "))
	}
	d.println("users         %d logged in of %d, %d visits each before %s", loggedIn, len(d.users), d.cfg.visits, before)
	d.println("requests      %d (health polls not counted)", requests)
	d.println("failures      %d", d.nFail)
	d.println("answered by   %s", distribution(byNode))
	d.println("proxy         %d requests, %d retried on the next node, %d failed (502): %s",
		ps.Requests, ps.Retries, ps.Failed, strings.Join(proxyLines, ", "))
	for i, k := range d.kills {
		first := "none"
		if ns := k.firstOK.Load(); ns > 0 {
			first = round(time.Duration(ns)).String() + " after the SIGKILL"
		}
		d.println("SIGKILL %-5s first good answer %s, %d errors after it", k.node.name, first, k.ph.failures.Load())
		if i == 0 && d.rereplicated != nil {
			d.println("              %s", d.describeRereplication())
		}
	}
	if d.restartHealthy > 0 {
		d.println("restart %-5s healthy %s after the restart", d.victim.name, round(d.restartHealthy))
	}
	if len(d.restarts) > 0 {
		var parts []string
		for _, r := range d.restarts {
			parts = append(parts, r.String())
		}
		d.println("restarts      %s", strings.Join(parts, ", "))
	}
	for _, line := range d.describeFleetRestart() {
		d.println("fleet         %s", line)
	}
	if l := d.load; l != nil {
		d.println("load          %d visits acknowledged during the roll, %d failed and were not resent, %d answered 401 (not logged in)",
			l.acked.Load(), l.errors.Load(), l.loggedOut.Load())
	}
	d.println("phases:")
	var total time.Duration
	for _, ph := range d.phases {
		total += ph.dur
		line := fmt.Sprintf("  %-52s %8s", ph.name, round(ph.dur))
		if n := ph.requests.Load(); n > 0 {
			line += fmt.Sprintf("  %5d requests  %d failed  p50 %s  p99 %s", n, ph.failures.Load(),
				round(ph.percentile(50)), round(ph.percentile(99)))
		}
		d.println("%s", line)
	}
	d.println("  %-52s %8s", "total (since the demo started)", round(time.Since(d.start)))
	if d.nFail == 0 {
		switch d.cfg.scenario {
		case scenarioBackups:
			d.printf("PASS: %d users stayed logged in through the SIGKILL of %s, the re-replication and the SIGKILL of %s; every visit was counted exactly once",
				loggedIn, d.victim.name, d.victim2.name)
		case scenarioFleetRestart:
			d.printf("PASS: %d users stayed logged in and %d stayed logged out through a SIGTERM and a SIGKILL of all %d nodes at once; every visit was counted exactly once",
				loggedIn, len(d.fleet.loggedOut), len(d.nodes))
		case scenarioRolling:
			d.printf("PASS: %d users stayed logged in through a graceful rolling restart of all %d nodes; every acknowledged visit was counted exactly once",
				loggedIn, len(d.nodes))
		case scenarioUpgrade:
			d.printf("PASS: %d users stayed logged in through the rolling upgrade of all %d nodes from the previous release to this build and back; every visit was answered and counted exactly once",
				loggedIn, len(d.nodes))
		default:
			d.printf("PASS: %d users stayed logged in through the SIGKILL of %s and its restart; every visit was counted exactly once",
				loggedIn, d.victim.name)
		}
		return
	}
	d.printf("FAIL: %d checks failed; the first %d:", d.nFail, len(d.failures))
	for _, f := range d.failures {
		d.println("- %s", f)
	}
}
