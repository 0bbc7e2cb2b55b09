package replication

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testLease = time.Second

var (
	peerA = memberKey{"a", 1}
	peerB = memberKey{"b", 1}
	// wrote is the mark of a node that has sent a write since the leases
	// it granted (none in flight now).
	wrote = writeMark{started: 1}
)

// granted is a reply granting a lease of the test duration at epoch.
func granted(epoch uint64) leaseAnswer {
	return leaseAnswer{reply: leaseReply{outcome: leaseGranted, epoch: epoch, duration: testLease}}
}

func outcome(o byte) leaseAnswer { return leaseAnswer{reply: leaseReply{outcome: o}} }

func TestLeaseTable_Authority(t *testing.T) {
	sec := int64(time.Second)
	for _, tc := range []struct {
		name    string
		peers   []memberKey
		answers map[memberKey][]leaseAnswer // each asked at 0, then at 1 s, ...
		want    int64
	}{
		{name: "alone: nobody can write behind its back", want: math.MaxInt64},
		{name: "a peer not asked yet", peers: []memberKey{peerA}, want: 0},
		{name: "leases from every peer: the earliest deadline",
			peers:   []memberKey{peerA, peerB},
			answers: map[memberKey][]leaseAnswer{peerA: {granted(0)}, peerB: {granted(0), granted(0)}},
			want:    sec},
		{name: "a lease no longer than this node's own ReadLease",
			peers:   []memberKey{peerA},
			answers: map[memberKey][]leaseAnswer{peerA: {{reply: leaseReply{outcome: leaseGranted, duration: time.Hour}}}},
			want:    sec},
		{name: "silence is not proof of death: the lease runs out",
			peers:   []memberKey{peerA},
			answers: map[memberKey][]leaseAnswer{peerA: {granted(0), {failed: true}, {failed: true}}},
			want:    sec},
		{name: "a refused connection proves the peer gone",
			peers:   []memberKey{peerA, peerB},
			answers: map[memberKey][]leaseAnswer{peerA: {granted(0), {refused: true}}, peerB: {granted(0), granted(0), granted(0)}},
			want:    3 * sec},
		{name: "another incarnation answering proves it gone",
			peers:   []memberKey{peerA},
			answers: map[memberKey][]leaseAnswer{peerA: {outcome(leaseNotYou)}},
			want:    math.MaxInt64},
		{name: "a peer that has not met this node yet writes to the owners of its own view, without it",
			peers:   []memberKey{peerA},
			answers: map[memberKey][]leaseAnswer{peerA: {outcome(leaseUnknown)}},
			want:    0},
		{name: "a peer that granted once and then forgot this node stays required",
			peers:   []memberKey{peerA},
			answers: map[memberKey][]leaseAnswer{peerA: {granted(0), outcome(leaseUnknown)}},
			want:    sec},
		{name: "behind at a peer: required until it repairs this node, also while its requests fail",
			peers:   []memberKey{peerA},
			answers: map[memberKey][]leaseAnswer{peerA: {granted(0), outcome(leaseBehind), {failed: true}}},
			want:    sec},
		{name: "a new epoch: not authoritative until resynced",
			peers:   []memberKey{peerA},
			answers: map[memberKey][]leaseAnswer{peerA: {granted(0), granted(1)}},
			want:    0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lt := newLeaseTable(9, testLease)
			lt.viewChanged(nil, tc.peers, nil, wrote)
			for _, k := range tc.peers {
				for i, a := range tc.answers[k] {
					lt.answered(k, int64(i)*sec, a)
				}
			}
			assert.Equal(t, tc.want, lt.authority())
		})
	}
}

func TestLeaseTable_ResyncRestoresAuthority(t *testing.T) {
	lt := newLeaseTable(9, testLease)
	lt.viewChanged(nil, []memberKey{peerA}, nil, wrote)
	require.False(t, lt.answered(peerA, 0, granted(0)))
	_, due := lt.resyncDue()
	require.False(t, due)

	require.True(t, lt.answered(peerA, 0, granted(1)), "a new epoch asks for a resync")
	mark, due := lt.resyncDue()
	require.True(t, due)
	assert.Zero(t, lt.authority())
	require.True(t, lt.answered(peerA, 0, granted(2)), "another fence during the resync")
	lt.resynced(mark)
	assert.Zero(t, lt.authority(), "the resync started before the second fence")
	mark, _ = lt.resyncDue()
	lt.resynced(mark)
	assert.Equal(t, int64(testLease), lt.authority())
}

func TestLeaseTable_Grant(t *testing.T) {
	lt := newLeaseTable(9, testLease)
	assert.Equal(t, leaseNotYou, lt.grant(peerA, 8, true, true, false, 0, writeMark{}).outcome, "addressed to an earlier incarnation")
	assert.Equal(t, leaseUnknown, lt.grant(peerA, 9, false, true, false, 0, writeMark{}).outcome)
	assert.Equal(t, leaseBehind, lt.grant(peerA, 9, true, true, true, 0, writeMark{}).outcome)
	assert.Equal(t, leaseOtherView, lt.grant(peerA, 9, true, false, false, 0, writeMark{}).outcome, "the asker's view has other owners")
	r := lt.grant(peerA, 9, true, true, false, 5, writeMark{})
	assert.Equal(t, leaseReply{outcome: leaseGranted, epoch: 0, duration: testLease}, r)
	assert.Equal(t, 5+int64(testLease), lt.granted[peerA].until)
}

func TestLeaseTable_FenceWaitsOutTheLeasesGranted(t *testing.T) {
	lt := newLeaseTable(9, testLease)
	lt.viewChanged(nil, []memberKey{peerA, peerB}, nil, wrote)
	lt.grant(peerA, 9, true, true, false, 100, writeMark{})
	assert.LessOrEqual(t, lt.fenceWait(100), time.Duration(0), "nothing fenced yet")
	lt.fence(peerA)
	assert.Equal(t, testLease, lt.fenceWait(100))
	assert.Equal(t, uint64(2), lt.grant(peerA, 9, true, true, false, 200, writeMark{}).epoch, "the view change and the fence each bumped the epoch")
	lt.fence(peerB) // never granted anything: adds no wait
	assert.Equal(t, testLease, lt.fenceWait(100))
}

func TestLeaseTable_ViewChange(t *testing.T) {
	lt := newLeaseTable(9, testLease)
	lt.viewChanged(nil, []memberKey{peerA, peerB}, nil, wrote)
	lt.grant(peerA, 9, true, true, false, 0, writeMark{})
	lt.grant(peerB, 9, true, true, false, 0, writeMark{})
	lt.answered(peerA, 0, granted(0))

	restartedA := memberKey{"a", 2}
	fenced := lt.viewChanged([]memberKey{peerA, peerB}, []memberKey{restartedA}, nil, wrote)
	assert.Equal(t, []memberKey{peerB}, fenced, "b left: fenced; a restarted: its old process is gone")
	assert.Equal(t, int64(testLease), int64(lt.fenceWait(0)), "b's lease must run out before the next acknowledgement")
	assert.NotContains(t, lt.held, peerA, "what a's old incarnation granted is forgotten")
	assert.NotContains(t, lt.granted, peerA)
	assert.Contains(t, lt.granted, peerB, "b's fence outlives its departure")
	assert.Zero(t, lt.authority(), "the new incarnation has not been asked yet")
}

// A view change tells a peer to merge only when this node may have sent a
// write since its last grant to it: one started since, or one in flight
// at the grant.
func TestLeaseTable_ViewChangeBumpsEpochOnlyAfterWrites(t *testing.T) {
	lt := newLeaseTable(9, testLease)
	peers := []memberKey{peerA, peerB}
	lt.viewChanged(nil, peers, nil, writeMark{})
	assert.Zero(t, lt.grant(peerA, 9, true, true, false, 0, writeMark{}).epoch, "no write ever: nothing to merge")

	lt.grant(peerB, 9, true, true, false, 0, writeMark{started: 3, busy: true})
	lt.viewChanged(peers, peers, nil, writeMark{started: 3})
	assert.Equal(t, uint64(1), lt.grant(peerA, 9, true, true, false, 0, writeMark{started: 3}).epoch,
		"a write started after a's grant")
	assert.Equal(t, uint64(1), lt.grant(peerB, 9, true, true, false, 0, writeMark{started: 3}).epoch,
		"a write was in flight at b's grant")

	lt.viewChanged(peers, peers, nil, writeMark{started: 3})
	assert.Equal(t, uint64(1), lt.grant(peerA, 9, true, true, false, 0, writeMark{started: 3}).epoch,
		"no write since the grants: the epoch stays")

	lt.fence(peerA)
	assert.Equal(t, uint64(2), lt.grant(peerA, 9, true, true, false, 0, writeMark{started: 3}).epoch,
		"a fence bumps the epoch whatever the writes")
}

// While views differ, nodes may disagree on a partition's owners: a view
// change ends the leases this node holds, tells every peer to merge before
// it answers from its copies again, and fences the peers that lost a
// partition. Found by the cluster simulator: a node that declared a member
// dead first took over its partitions and answered from its copy under
// leases granted by peers that still wrote to the old owners.
func TestLeaseTable_ViewChangeWhileViewsDiffer(t *testing.T) {
	lt := newLeaseTable(9, testLease)
	lt.viewChanged(nil, []memberKey{peerA, peerB}, nil, wrote)
	lt.answered(peerA, 0, granted(1))
	lt.answered(peerB, 0, granted(1))
	mark, _ := lt.resyncDue()
	lt.resynced(mark)
	require.Equal(t, int64(testLease), lt.authority())
	lt.grant(peerA, 9, true, true, false, 0, writeMark{})
	lt.grant(peerB, 9, true, true, false, 0, writeMark{})

	fenced := lt.viewChanged([]memberKey{peerA, peerB}, []memberKey{peerA, peerB}, []memberKey{peerB}, wrote)
	assert.Equal(t, []memberKey{peerB}, fenced, "b lost a partition to the new view")
	assert.Equal(t, testLease, lt.fenceWait(0), "the next write waits out b's lease...")
	assert.Zero(t, lt.authority(), "the leases held under the old view ended")
	assert.Equal(t, uint64(2), lt.grant(peerA, 9, true, true, false, 0, writeMark{}).epoch, "a is told to merge")

	assert.Equal(t, leaseOtherView, lt.grant(peerB, 9, true, false, false, 0, writeMark{}).outcome, "b still has the old view")
	assert.Equal(t, testLease, lt.fenceWait(0))
	lt.grant(peerB, 9, true, true, false, 0, writeMark{})
	assert.LessOrEqual(t, lt.fenceWait(0), time.Duration(0), "...or until b asks with the new owners: its view changed, which ended its leases")

	lt.answered(peerA, 0, outcome(leaseOtherView))
	lt.answered(peerB, 0, granted(3))
	assert.Zero(t, lt.authority(), "a has not changed its view yet: not renewed")
}

func TestLeaseTable_MissedWrites(t *testing.T) {
	lt := newLeaseTable(9, testLease)
	lt.viewChanged(nil, []memberKey{peerA, peerB}, nil, wrote)
	lt.answered(peerA, 0, granted(0))
	assert.False(t, lt.missedWrites())
	lt.answered(peerB, 0, outcome(leaseBehind))
	assert.True(t, lt.missedWrites(), "degraded at b")
	lt.viewChanged([]memberKey{peerA, peerB}, []memberKey{peerA}, nil, wrote)
	assert.False(t, lt.missedWrites(), "b left the view: its last answer no longer counts")
	lt.answered(peerA, 0, granted(1))
	assert.True(t, lt.missedWrites(), "a new epoch from a: a resync is due")
}
