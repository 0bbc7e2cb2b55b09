package sim

import "time"

// inject starts fault f now, on the driver goroutine, and tells the
// checker which nodes may miss writes or lose them.
func (h *history) inject(f Fault) {
	w, c := h.world, h.check
	h.injected[f.Kind]++
	if f.Kind != ClockStep && f.Kind != Delay {
		w.unsettle()
	}
	switch f.Kind {
	case Crash:
		owners := w.owners() // as the nodes see them before the crash
		c.crashed(f.Node, w.now(), &owners)
		w.kill(f.Node, f.Detect)
	case Freeze:
		c.missed(f.Node)
		w.setFrozen(f.Node, true, f.Detect)
	case Suspect:
		c.missed(f.Node)
		w.setSuspected(f.Node, f.Side, true, f.Detect)
	case Partition:
		c.missed(f.Side...)
		w.setCut(f.Side, f.Detect)
	case Loss:
		c.missed(f.Node, f.Peer)
		w.setLoss(f.Node, f.Peer, f.Loss)
	case Delay:
		w.setDelay(f.Node, f.Peer, f.Lag)
	case Leave:
		w.beginLeave(f.Node, func(p *process) { w.endLeave(p, f.Detect) })
	case ClockStep:
		w.stepClock(f.Node, f.Step)
	}
	owners := w.owners()
	c.unavailable(w.unavailable(), w.now(), &owners)
}

// repair ends fault f now. A node whose Leave has not returned yet is
// started when it has.
func (h *history) repair(f Fault) {
	w := h.world
	if f.Kind != Delay {
		w.unsettle()
	}
	switch f.Kind {
	case Crash, Leave:
		if w.isLeaving(f.Node) {
			h.queue.after(100*time.Millisecond, func() { h.repair(f) })
			return
		}
		if f.KeepState {
			w.tracef("%s restarts keeping its state: the store has no snapshots, so it starts empty", f.Node)
		}
		if err := w.startProcess(f.Node, f.Rejoin); err != nil {
			h.t.Fatalf("restart %s: %v", f.Node, err)
		}
	case Freeze:
		w.setFrozen(f.Node, false, f.Rejoin)
	case Suspect:
		w.setSuspected(f.Node, f.Side, false, f.Rejoin)
	case Partition:
		w.setCut(nil, f.Rejoin)
	case Loss:
		w.setLoss(f.Node, f.Peer, 0)
	case Delay:
		w.setDelay(f.Node, f.Peer, 0)
	}
}
