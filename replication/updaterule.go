package replication

// The rules of Update (update.go), as pure functions: what a coordinator
// does with an update request, and whether a replica takes an update that
// another node coordinated. No clock, no lock: callers pass the record as
// it stands and apply what the rule returns under the partition's lock.

// coordinateRule is the coordinator's compare-and-set on the session cur,
// at wall time now: an update of a session that ended is refused; one
// whose attribute moved on since the caller read it is answered with the
// attribute's current state; otherwise the new value gets version next
// and the result carries the delta to apply and replicate.
func coordinateRule(cur *record, req updateRequest, now int64, next version, lim Limits) updateResult {
	if req.atLeast != 0 && !reached(cur, req.atLeast) {
		return updateResult{outcome: updateNotReady} // the caller's last write is not here yet
	}
	if cur == nil || !cur.live(now) {
		return updateResult{outcome: updateEnded}
	}
	if st := attrOf(cur, req.key); st.version != req.expected {
		return updateResult{outcome: updateConflict, current: st}
	}
	delta := &record{id: req.id, created: cur.created, expires: cur.expires, idleMs: cur.idleMs,
		attrs: []attr{{name: req.key, value: req.value, version: next}}}
	if delta.idleMs > 0 {
		delta.idleUntil = now + delta.idleMs
	}
	if lim.checkWrite(cur, delta) != nil {
		return updateResult{outcome: updateEnded} // unreachable in practice: a value within limits came in
	}
	return updateResult{outcome: updateApplied, delta: delta}
}

// replicaRule reports whether a replica holding cur takes an update of one
// attribute coordinated elsewhere from the state expected. It refuses a
// competing update: the replica holds a newer version than expected from
// another coordinator. A newer version from the same coordinator is a
// later update that arrived first: coordinators apply one attribute's
// updates one at a time, so it already includes this one.
func replicaRule(cur *record, expected version, delta *record) bool {
	if len(delta.attrs) != 1 {
		return false
	}
	if cur == nil {
		return true
	}
	want := delta.attrs[0]
	st := attrOf(cur, want.name)
	competing := expected.less(st.version) && st.version.node != want.version.node
	return !competing
}
