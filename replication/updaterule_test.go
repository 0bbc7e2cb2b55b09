package replication

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCoordinateRule(t *testing.T) {
	lim := DefaultLimits().withDefaults()
	v1, next := version{time: 10, node: 1}, version{time: 30, node: 3}
	live := &record{id: "s", created: 1, expires: 1000, idleMs: 100, attrs: []attr{{name: "visits", value: []byte("1"), version: v1}}}
	req := updateRequest{id: "s", key: "visits", expected: v1, value: []byte("2")}

	res := coordinateRule(live, req, 50, next, lim)
	assert.Equal(t, updateApplied, res.outcome)
	assert.Equal(t, []attr{{name: "visits", value: []byte("2"), version: next}}, res.delta.attrs)
	assert.Equal(t, int64(150), res.delta.idleUntil, "an update is a use of the session")
	assert.Equal(t, live.expires, res.delta.expires)

	stale := req
	stale.expected = version{}
	res = coordinateRule(live, stale, 50, next, lim)
	assert.Equal(t, updateConflict, res.outcome, "the caller read another version")
	assert.Equal(t, attrState{value: []byte("1"), exists: true, version: v1}, res.current)
	assert.Nil(t, res.delta)

	assert.Equal(t, updateEnded, coordinateRule(nil, req, 50, next, lim).outcome)
	assert.Equal(t, updateEnded, coordinateRule(live, req, 2000, next, lim).outcome, "expired")
	gone := &record{id: "s", destroyed: true, expires: 1000}
	assert.Equal(t, updateEnded, coordinateRule(gone, req, 50, next, lim).outcome)

	fresh := updateRequest{id: "s", key: "cart", value: []byte("x")}
	assert.Equal(t, updateApplied, coordinateRule(live, fresh, 50, next, lim).outcome, "a new attribute: expected is the zero version")

	// The caller has seen version 20 of the session (an asynchronous
	// write this owner has not received yet): another owner coordinates.
	ahead := req
	ahead.atLeast = 20
	assert.Equal(t, updateNotReady, coordinateRule(live, ahead, 50, next, lim).outcome, "the caller's last write is not here")
	assert.Equal(t, updateNotReady, coordinateRule(nil, ahead, 50, next, lim).outcome, "nor its login: not 'ended'")
	ahead.atLeast = 10
	assert.Equal(t, updateApplied, coordinateRule(live, ahead, 50, next, lim).outcome, "this copy has reached it")
	assert.Equal(t, updateEnded, coordinateRule(gone, ahead, 50, next, lim).outcome, "a destroyed session has reached every version")
}

func TestReplicaRule(t *testing.T) {
	base := version{time: 10, node: 1}
	mine := version{time: 20, node: 2}  // what the coordinator wrote
	other := version{time: 25, node: 3} // another coordinator's write from the same base
	delta := &record{id: "s", attrs: []attr{{name: "visits", value: []byte("2"), version: mine}}}
	at := func(v version) *record {
		return &record{id: "s", attrs: []attr{{name: "visits", version: v}}}
	}
	assert.True(t, replicaRule(nil, base, delta), "a replica that does not hold the session takes it")
	assert.True(t, replicaRule(at(base), base, delta), "the replica is at the base: no competition")
	assert.False(t, replicaRule(at(other), base, delta), "a competing update from another coordinator won here")
	assert.True(t, replicaRule(at(version{time: 30, node: 2}), base, delta), "a later update of the same coordinator includes this one")
	two := &record{id: "s", attrs: []attr{{name: "a", version: mine}, {name: "b", version: mine}}}
	assert.False(t, replicaRule(nil, base, two), "an update copy changes one attribute")
}
