package sim

import (
	"slices"
	"time"

	"github.com/sessionmesh/sessionmesh/replication"
)

// pair is an observer and a member it lists or not.
type pair struct{ observer, member string }

// viewChange is a change of one observer's view, due at a time; it is
// void once another change replaces it in world.pending.
type viewChange struct {
	pair
	target *replication.Member // nil: drop the member
}

// shouldListLocked returns the member observer o lists once its failure
// detector has caught up, or nil.
func (w *world) shouldListLocked(o, m string) *replication.Member {
	p := w.procs[m]
	if p == nil || w.frozen[m] || w.sideLocked(o) != w.sideLocked(m) || w.suspected[pair{o, m}] {
		return nil
	}
	return &p.member
}

// reconcile schedules, for every running, unfrozen observer whose view
// differs from what it should list, the change after the observer's
// delay; a pending change to the same target keeps its time, one to
// another target is replaced. A frozen observer's view stands still; it
// is reconciled when it thaws.
func (w *world) reconcile(delays map[string]time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, o := range w.names {
		po := w.procs[o]
		if po == nil || w.frozen[o] {
			continue
		}
		for _, m := range w.names {
			if m == o {
				continue
			}
			pr := pair{o, m}
			want := w.shouldListLocked(o, m)
			cur, ok := po.view.lists(m)
			if (want == nil && !ok) || (want != nil && ok && cur == *want) {
				delete(w.pending, pr)
				continue
			}
			if pc := w.pending[pr]; pc != nil && sameMember(pc.target, want) {
				continue
			}
			vc := &viewChange{pair: pr, target: want}
			w.pending[pr] = vc
			w.q.after(delays[o], func() { w.applyViewChange(vc) })
		}
	}
}

// applyViewChange makes vc's observer list or drop its member, unless vc
// was replaced or its observer has died or frozen meanwhile.
func (w *world) applyViewChange(vc *viewChange) {
	w.mu.Lock()
	if w.pending[vc.pair] != vc {
		w.mu.Unlock()
		return
	}
	delete(w.pending, vc.pair)
	po := w.procs[vc.observer]
	if po == nil || w.frozen[vc.observer] {
		w.mu.Unlock()
		return
	}
	if cur, ok := po.view.lists(vc.member); vc.target != nil && (!ok || cur != *vc.target) {
		w.listedAt[vc.member] = w.now()
	}
	w.mu.Unlock()
	if vc.target == nil {
		w.tracef("%s drops %s", vc.observer, vc.member)
	} else {
		w.tracef("%s lists %s#%d", vc.observer, vc.member, vc.target.Incarnation)
	}
	po.view.set(vc.member, vc.target)
}

func sameMember(a, b *replication.Member) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// agreed reports whether every running node lists exactly the running
// nodes, at their current incarnations, and no view change is pending.
func (w *world) agreed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) > 0 {
		return false
	}
	for o, po := range w.procs {
		for _, m := range w.names {
			if m == o {
				continue
			}
			cur, ok := po.view.lists(m)
			pm := w.procs[m]
			if (pm == nil) == ok || (pm != nil && cur != pm.member) {
				return false
			}
		}
	}
	return true
}

// refreshAgreement recomputes agree after a driver action. While a node
// is leaving the views disagree too: Store.Leave announces the departure
// to one peer after another, and each stops counting the node as an owner
// when its announcement arrives.
func (w *world) refreshAgreement() {
	ps := w.running()
	w.mu.Lock()
	same := len(w.leaving) == 0
	w.mu.Unlock()
	var first []replication.Member
	for i, p := range ps {
		ms := p.view.Members()
		if !same {
			break
		}
		if i == 0 {
			first = ms
		} else if !slices.Equal(ms, first) {
			same = false
			break
		}
	}
	if w.agree.Swap(same) && !same {
		w.disagreements.Add(1)
	}
}

// lastListed returns when a peer last began to list name's current
// incarnation (or -1 if none did since it started).
func (w *world) lastListed(name string) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t, ok := w.listedAt[name]; ok {
		return t
	}
	return -1
}

// agreement returns whether the views agree and how often they stopped
// agreeing so far, for an operation to compare before and after.
func (w *world) agreement() (bool, uint64) {
	return w.agree.Load(), w.disagreements.Load()
}

// settledness returns whether the cluster is settled, and how often it
// stopped being so.
func (w *world) settledness() (bool, uint64) { return w.settled.Load(), w.unsettles.Load() }

// unsettle records that a fault began or was repaired.
func (w *world) unsettle() {
	if w.settled.Swap(false) {
		w.unsettles.Add(1)
	}
}

// quiet reports whether no fault is active (delays and clock offsets
// aside) and every view agrees.
func (w *world) quiet() bool {
	w.mu.Lock()
	q := len(w.cut) == 0 && len(w.suspected) == 0 && len(w.leaving) == 0 && len(w.lossy) == 0
	for _, f := range w.frozen {
		q = q && !f
	}
	w.mu.Unlock()
	return q && w.agreed()
}
