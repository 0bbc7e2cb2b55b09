package replication

// The decisions of a maintenance round (maintain.go), as pure functions:
// given the view, this node's partitions and the statuses its peers
// answered this round, which partitions to copy and from whom, which to
// repair with whom, which to hand over, and how many are below their copy
// count. No clock, no network, no lock: the round gathers the inputs,
// calls these, and carries out what they return.

// partState is what a round knows of one of this node's partitions.
type partState struct {
	ready  bool   // held completely (as an owner)
	digest uint64 // of the records held
	count  int    // records held, tombstones included
}

// statuses are the peer statuses polled this round; a peer that did not
// answer has none.
type statuses map[*peer]*peerStatus

// transferPlan says how to make partition complete on this node: copy it
// from the first of owners that works (owners that hold it completely, in
// the view's order), or, when there is none, merge what every one of
// holders has (a rebalance moved every copy, or the cluster is starting).
type transferPlan struct {
	partition int
	owners    []*peer
	holders   []*peer
}

// planTransfers returns a plan for each partition this node owns but does
// not hold completely.
func planTransfers(v *view, local []partState, st statuses) []transferPlan {
	var plans []transferPlan
	for pi := range local {
		if !v.owns(pi) || local[pi].ready {
			continue
		}
		plan := transferPlan{partition: pi}
		for _, q := range v.owners[pi] {
			if s := st[q]; !q.self && s != nil && s.ready[pi] {
				plan.owners = append(plan.owners, q)
			}
		}
		for _, q := range v.peers {
			if s := st[q]; s != nil && s.counts[pi] > 0 {
				plan.holders = append(plan.holders, q)
			}
		}
		plans = append(plans, plan)
	}
	return plans
}

// repairPlan lists the partitions whose records to exchange with peer: those
// both hold completely and whose digests differ. A peer that answered this
// round has a plan even when nothing differs: once every exchange with it
// has succeeded, it is repaired.
type repairPlan struct {
	peer       *peer
	partitions []int
}

// planRepairs returns a plan for each peer that answered this round, in the
// view's order.
func planRepairs(v *view, local []partState, st statuses) []repairPlan {
	var plans []repairPlan
	for _, q := range v.peers {
		s := st[q]
		if s == nil {
			continue
		}
		plan := repairPlan{peer: q}
		for pi, p := range local {
			if p.ready && s.ready[pi] && p.digest != s.digests[pi] {
				plan.partitions = append(plan.partitions, pi)
			}
		}
		plans = append(plans, plan)
	}
	return plans
}

// resyncPlan is what a node that missed writes (a lease carried a new
// epoch) must merge before it answers reads from its copies again: with
// each other owner of every partition it holds completely, the partitions
// whose digests differ. It is possible only if every such owner answered
// this round (complete).
type resyncPlan struct {
	exchanges []exchangePlan
	complete  bool
}

// exchangePlan is one partition to exchange with one peer.
type exchangePlan struct {
	peer      *peer
	partition int
}

func planResync(v *view, local []partState, st statuses) resyncPlan {
	var plan resyncPlan
	for pi, p := range local {
		if !v.owns(pi) || !p.ready {
			continue
		}
		for _, q := range v.targets(pi) {
			s := st[q]
			if s == nil {
				return resyncPlan{}
			}
			if p.digest != s.digests[pi] {
				plan.exchanges = append(plan.exchanges, exchangePlan{q, pi})
			}
		}
	}
	plan.complete = true
	return plan
}

// handOffPlan says where the records of a partition this node holds but
// does not own go (owners), and whether they may be dropped here once
// pushed: only when every owner reported it holds the partition completely.
type handOffPlan struct {
	partition int
	owners    []*peer
	droppable bool
}

// planHandOffs returns a plan for each partition that this node holds
// records of without owning it.
func planHandOffs(v *view, local []partState, st statuses) []handOffPlan {
	var plans []handOffPlan
	for pi, p := range local {
		if v.owns(pi) || p.count == 0 {
			continue
		}
		plan := handOffPlan{partition: pi, owners: v.targets(pi), droppable: true}
		for _, q := range plan.owners {
			if s := st[q]; s == nil || !s.ready[pi] {
				plan.droppable = false
			}
		}
		plans = append(plans, plan)
	}
	return plans
}

// underReplicated counts the partitions with an owner that does not hold
// them completely, as far as this round's statuses tell: an owner that did
// not answer counts as not holding it.
func underReplicated(v *view, local []partState, st statuses) int {
	under := 0
	for pi := range local {
		for _, q := range v.owners[pi] {
			var ready bool
			if q.self {
				ready = local[pi].ready
			} else if s := st[q]; s != nil {
				ready = s.ready[pi]
			}
			if !ready {
				under++
				break
			}
		}
	}
	return under
}
