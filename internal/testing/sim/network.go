package sim

import (
	"slices"
	"time"
)

// setFrozen freezes or thaws name.
func (w *world) setFrozen(name string, frozen bool, delays map[string]time.Duration) {
	w.mu.Lock()
	w.frozen[name] = frozen
	if frozen {
		w.isolations[name]++
	} else {
		w.back[name] = time.Now().Add(time.Second)
	}
	w.applyNetLocked()
	w.mu.Unlock()
	w.tracef("frozen %s: %v", name, frozen)
	w.reconcile(delays)
}

// setSuspected makes observers declare name dead, or take it back.
func (w *world) setSuspected(name string, observers []string, on bool, delays map[string]time.Duration) {
	w.mu.Lock()
	for _, o := range observers {
		if on {
			w.suspected[pair{o, name}] = true
		} else {
			delete(w.suspected, pair{o, name})
		}
	}
	w.mu.Unlock()
	w.tracef("suspected %s by %v: %v", name, observers, on)
	w.reconcile(delays)
}

// setCut partitions side off (nil heals).
func (w *world) setCut(side []string, delays map[string]time.Duration) {
	w.mu.Lock()
	if side == nil {
		for _, n := range w.cut {
			w.back[n] = time.Now().Add(time.Second)
		}
	}
	for _, n := range side {
		w.isolations[n]++
	}
	w.cut = side
	w.applyNetLocked()
	w.mu.Unlock()
	w.tracef("partition %v", side)
	w.reconcile(delays)
}

// setLoss makes the link a<->b lose requests and responses with
// probability p.
func (w *world) setLoss(a, b string, p float64) {
	w.net.Drop(a, b, p)
	w.net.Drop(b, a, p)
	w.net.DropResponses(a, b, p)
	w.net.DropResponses(b, a, p)
	w.mu.Lock()
	w.lossy[[2]string{a, b}] = p > 0
	if p == 0 {
		delete(w.lossy, [2]string{a, b})
	}
	w.mu.Unlock()
	w.tracef("loss %s<->%s %.2f", a, b, p)
}

// setDelay adds d to every call between a and b.
func (w *world) setDelay(a, b string, d time.Duration) {
	w.net.Delay(a, b, d)
	w.net.Delay(b, a, d)
	w.tracef("delay %s<->%s %v", a, b, d)
}

// applyNetLocked tells memnet who reaches whom: each frozen node alone,
// the cut-off side, and the rest.
func (w *world) applyNetLocked() {
	w.netChanges++
	var rest, side []string
	var groups [][]string
	for _, n := range w.names {
		switch {
		case w.frozen[n]:
			groups = append(groups, []string{n})
		case slices.Contains(w.cut, n):
			side = append(side, n)
		default:
			rest = append(rest, n)
		}
	}
	if len(groups) == 0 && len(side) == 0 {
		w.net.Partition()
		return
	}
	for _, g := range [][]string{rest, side} {
		if len(g) > 0 {
			groups = append(groups, g)
		}
	}
	w.net.Partition(groups...)
}

// sideLocked returns 1 for a node on the cut-off side, else 0.
func (w *world) sideLocked(name string) int {
	if slices.Contains(w.cut, name) {
		return 1
	}
	return 0
}

// reachesLocked reports whether a's messages reach b at all.
func (w *world) reachesLocked(a, b string) bool {
	return w.procs[a] != nil && w.procs[b] != nil && !w.frozen[a] && !w.frozen[b] && w.sideLocked(a) == w.sideLocked(b)
}

func (w *world) lossyLocked(a, b string) bool {
	return w.lossy[[2]string{a, b}] || w.lossy[[2]string{b, a}]
}

// troubled reports whether some node is down or cut off from name, or a
// link of name loses messages.
func (w *world) troubled(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.names {
		if n != name && (!w.reachesLocked(name, n) || w.lossyLocked(name, n)) {
			return true
		}
	}
	return false
}

// linksTo reports whether any of owners is reachable from name, and
// whether the link to any of them is cut or loses messages.
func (w *world) linksTo(name string, owners []string) (reach, faulty bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range owners {
		r := w.reachesLocked(name, o)
		reach = reach || r
		faulty = faulty || !r || w.lossyLocked(name, o)
	}
	return reach, faulty
}

// serving returns the nodes in the load balancer's rotation: running,
// not frozen, not leaving, not cut off, and back for a second since a
// thaw or a heal.
func (w *world) serving() []*process {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	var out []*process
	for _, n := range w.names {
		p := w.procs[n]
		if p == nil || w.frozen[n] || w.leaving[n] || slices.Contains(w.cut, n) || now.Before(w.back[n]) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// unavailable returns the nodes the serving side cannot use: down,
// frozen or cut off.
func (w *world) unavailable() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for _, n := range w.names {
		if w.procs[n] == nil || w.frozen[n] || slices.Contains(w.cut, n) {
			out[n] = true
		}
	}
	return out
}

// stamp is what an operation records of the world when it starts, to
// tell afterwards whether the world changed under it.
type stamp struct {
	isolations, netChanges uint64
}

func (w *world) stampOf(name string) stamp {
	w.mu.Lock()
	defer w.mu.Unlock()
	return stamp{w.isolations[name], w.netChanges}
}
