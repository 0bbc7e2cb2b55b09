package replication

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// planView returns a view of self and peers in which partition 0 is owned
// by owners (names, primary first), partition 1 by everyone, and the other
// partitions by nobody, so that each test reads on one or two partitions.
func planView(t *testing.T, owners []string, peers ...string) (*view, map[string]*peer) {
	t.Helper()
	byName := map[string]*peer{"self": {name: "self", self: true}}
	v := &view{self: byName["self"], byName: map[string]*peer{}}
	for _, n := range peers {
		q := &peer{name: n}
		byName[n] = q
		v.peers = append(v.peers, q)
		v.byName[n] = q
	}
	for _, n := range owners {
		v.owners[0] = append(v.owners[0], byName[n])
		v.owned[0] = v.owned[0] || n == "self"
	}
	v.owners[1] = append([]*peer{v.self}, v.peers...)
	v.owned[1] = true
	return v, byName
}

// status returns a peer status in which the given partitions are ready,
// with digest d and count n for each partition.
func status(d uint64, n uint32, ready ...int) *peerStatus {
	st := &peerStatus{ready: make([]bool, numPartitions), digests: make([]uint64, numPartitions), counts: make([]uint32, numPartitions)}
	for i := range st.digests {
		st.digests[i], st.counts[i] = d, n
	}
	for _, p := range ready {
		st.ready[p] = true
	}
	return st
}

// local returns this node's partitions, all ready with digest d and one
// record, but for the overrides.
func local(d uint64, overrides map[int]partState) []partState {
	out := make([]partState, numPartitions)
	for i := range out {
		out[i] = partState{ready: true, digest: d, count: 1}
	}
	for i, s := range overrides {
		out[i] = s
	}
	return out
}

func TestPlanTransfers(t *testing.T) {
	v, q := planView(t, []string{"a", "self", "b"}, "a", "b", "c")
	notReady := map[int]partState{0: {}}

	t.Run("from the complete owners, in the view's order", func(t *testing.T) {
		st := statuses{q["a"]: status(1, 1, 0, 1), q["b"]: status(1, 1, 0), q["c"]: status(1, 1)}
		plans := planTransfers(v, local(1, notReady), st)
		assert.Equal(t, []transferPlan{{partition: 0, owners: []*peer{q["a"], q["b"]}, holders: []*peer{q["a"], q["b"], q["c"]}}}, plans)
	})
	t.Run("no complete owner: merge what every holder has", func(t *testing.T) {
		st := statuses{q["a"]: status(1, 0), q["c"]: status(1, 4)}
		plans := planTransfers(v, local(1, notReady), st)
		assert.Equal(t, []transferPlan{{partition: 0, holders: []*peer{q["c"]}}}, plans,
			"a holds nothing; b did not answer")
	})
	t.Run("nothing to copy when ready, or not an owner", func(t *testing.T) {
		assert.Empty(t, planTransfers(v, local(1, nil), statuses{}))
		w, _ := planView(t, []string{"a", "b"}, "a", "b")
		w.owned[1] = true
		assert.Empty(t, planTransfers(w, local(1, notReady), statuses{}), "partition 0 is not this node's")
	})
}

func TestPlanRepairs(t *testing.T) {
	v, q := planView(t, []string{"self", "a"}, "a", "b")
	st := statuses{q["a"]: status(2, 1, 0, 1)} // b did not answer
	plans := planRepairs(v, local(1, map[int]partState{1: {ready: true, digest: 2}}), st)
	assert.Equal(t, []repairPlan{{peer: q["a"], partitions: []int{0}}}, plans,
		"a differs on partition 0 only; b gets no plan: it may not be repaired")

	plans = planRepairs(v, local(1, nil), statuses{q["a"]: status(1, 1, 0, 1)})
	assert.Equal(t, []repairPlan{{peer: q["a"]}}, plans, "nothing differs, but a answered: it counts as repaired")

	plans = planRepairs(v, local(1, map[int]partState{0: {digest: 9}}), statuses{q["a"]: status(1, 1, 0)})
	assert.Equal(t, []repairPlan{{peer: q["a"]}}, plans, "a partition not held completely here is transferred, not repaired")
}

func TestPlanResync(t *testing.T) {
	v, q := planView(t, []string{"self", "a"}, "a", "b")
	st := statuses{q["a"]: status(1, 1, 0, 1), q["b"]: status(2, 1, 1)}
	plan := planResync(v, local(1, nil), st)
	assert.True(t, plan.complete)
	assert.Equal(t, []exchangePlan{{q["b"], 1}}, plan.exchanges, "only b differs, on the partition both own")

	plan = planResync(v, local(1, nil), statuses{q["a"]: status(1, 1, 0, 1)})
	assert.False(t, plan.complete, "b, an owner of partition 1, did not answer")
	assert.Empty(t, plan.exchanges)
}

func TestPlanHandOffs(t *testing.T) {
	v, q := planView(t, []string{"a", "b"}, "a", "b")
	v.owned[1] = true
	held := local(1, map[int]partState{0: {count: 3}})
	for i := 2; i < numPartitions; i++ {
		held[i] = partState{} // owned by nobody, held by nobody
	}

	plans := planHandOffs(v, held, statuses{q["a"]: status(1, 1, 0), q["b"]: status(1, 1, 0)})
	assert.Equal(t, []handOffPlan{{partition: 0, owners: []*peer{q["a"], q["b"]}, droppable: true}}, plans)

	plans = planHandOffs(v, held, statuses{q["a"]: status(1, 1, 0), q["b"]: status(1, 1)})
	assert.Equal(t, []handOffPlan{{partition: 0, owners: []*peer{q["a"], q["b"]}}}, plans,
		"b is not complete yet: push, but keep the records")
	plans = planHandOffs(v, held, statuses{q["a"]: status(1, 1, 0)})
	assert.False(t, plans[0].droppable, "b did not answer")
}

func TestUnderReplicated(t *testing.T) {
	v, q := planView(t, []string{"self", "a"}, "a", "b")
	for i := 2; i < numPartitions; i++ {
		v.owners[i] = []*peer{v.self}
	}
	mine := local(1, nil)
	assert.Zero(t, underReplicated(v, mine, statuses{q["a"]: status(1, 1, 0, 1), q["b"]: status(1, 1, 1)}))
	assert.Equal(t, 1, underReplicated(v, mine, statuses{q["a"]: status(1, 1, 0, 1)}), "b did not answer: partition 1 counts")
	assert.Equal(t, 2, underReplicated(v, mine, statuses{q["a"]: status(1, 1, 1), q["b"]: status(1, 1)}))
	mine[5] = partState{}
	assert.Equal(t, 1, underReplicated(v, mine, statuses{q["a"]: status(1, 1, 0, 1), q["b"]: status(1, 1, 1)}), "this node's own copy counts too")
}
