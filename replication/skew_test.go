package replication_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// skewedCluster starts nodes whose wall clocks are off the manual clock
// it returns by the given offsets.
func skewedCluster(t *testing.T, offsets map[string]time.Duration) (*testcluster.Cluster, *hlc.ManualClock) {
	return skewedClusterMode(t, replication.AllToAll, offsets)
}

// skewedClusterMode is skewedCluster in the given replication mode.
func skewedClusterMode(t *testing.T, mode replication.Mode, offsets map[string]time.Duration) (*testcluster.Cluster, *hlc.ManualClock) {
	clock := hlc.NewManualClock(replication.SystemClock().Now())
	c := testcluster.New(t, testcluster.Options{Seed: 41, Config: func(name string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = mode
		off := offsets[name]
		cfg.Clock = replication.WallClock(func() time.Time { return clock.Now().Add(off) })
		return cfg
	}})
	for name := range offsets {
		c.Start(name)
	}
	c.WaitReady(t)
	return c, clock
}

// Writes made one after another on nodes whose clocks are seconds apart
// are ordered as they happened: the hybrid logical clock carries the order
// from node to node, so a slow clock never makes a later write lose.
func TestSkew_SequentialWritesOnSkewedNodesKeepTheirOrder(t *testing.T) {
	c, clock := skewedCluster(t, map[string]time.Duration{"fast": 3 * time.Second, "slow": -3 * time.Second, "true": 0})
	ctx := context.Background()
	order := []string{"fast", "slow", "true", "slow", "fast", "slow"}
	for round := 0; round < 5; round++ {
		for i, name := range order {
			clock.Advance(100 * time.Millisecond)
			want := fmt.Sprint(round, "-", i)
			_, err := c.Node(name).Store.Save(ctx, "s", put("v", want))
			require.NoError(t, err)
			for _, n := range c.Nodes() {
				got, _ := value(t, n.Store, "s", "v")
				require.Equal(t, want, got, "after %s wrote, %s has an older value", name, n.Name)
			}
		}
	}
}

// A node whose clock is an hour ahead cannot drag the cluster's clocks
// along: its writes are refused, and the others' versions stay near real
// time.
func TestSkew_TimestampsFarAheadAreRefused(t *testing.T) {
	c, clock := skewedCluster(t, map[string]time.Duration{"a": 0, "b": 0, "wild": time.Hour})
	ctx := context.Background()
	// Before its first lease exchange the wild node does not know its
	// clock is off: it applies its own write, and its peers refuse it.
	// After, it refuses the write itself (TestSkew_NodeFarAheadRefuses...).
	_, err := c.Node("wild").Store.Save(ctx, "s", put("user", "mallory"))
	if err != nil {
		require.ErrorIs(t, err, replication.ErrClockOffset)
	}
	for _, name := range []string{"a", "b"} {
		_, ok := value(t, c.Node(name).Store, "s", "user")
		assert.False(t, ok, "%s adopted a write from an hour in the future", name)
		if err == nil {
			assert.Positive(t, c.Node(name).Store.Stats().Rejected)
		}
	}
	v, err := c.Node("a").Store.Save(ctx, "t", put("k", "v"))
	require.NoError(t, err)
	sess, _, err := c.Node("a").Store.Get(ctx, "t")
	require.NoError(t, err)
	assert.Equal(t, v, sess.Version())
	assert.WithinDuration(t, clock.Now(), sess.Created(), time.Second, "a's clock was not dragged an hour ahead")
	assert.WithinDuration(t, clock.Now(), time.UnixMilli(0).Add(time.Duration(v)>>16*time.Millisecond), time.Second,
		"a's versions stay near its wall clock")
}

// Each node expires sessions on its own clock: with clocks seconds apart
// the session ends on each within that skew of its deadline.
func TestSkew_ExpiryFollowsEachNodesClock(t *testing.T) {
	c, clock := skewedCluster(t, map[string]time.Duration{"ahead": 2 * time.Second, "behind": 0})
	ctx := context.Background()
	_, err := c.Node("behind").Store.Save(ctx, "s", replication.Changes{Set: map[string][]byte{"k": []byte("v")}, Lifetime: 3 * time.Second})
	require.NoError(t, err)
	clock.Advance(1500 * time.Millisecond)
	_, ok := value(t, c.Node("ahead").Store, "s", "k")
	assert.False(t, ok, "the node 2 s ahead ends the 3 s session 1.5 s in")
	_, ok = value(t, c.Node("behind").Store, "s", "k")
	assert.True(t, ok)
	clock.Advance(1500 * time.Millisecond)
	_, ok = value(t, c.Node("behind").Store, "s", "k")
	assert.False(t, ok)
}

// Updates between nodes whose wall clocks are seconds apart, well inside
// MaxClockOffset, all succeed: a coordinator judges whether an update came
// too late on its own monotonic clock, from the caller's budget, never by
// comparing the caller's wall clock with its own. (An update used to carry
// a deadline on the caller's wall clock: a coordinator more than
// WriteTimeout ahead refused every update from it. Found by the cluster
// simulator.)
func TestSkew_UpdatesSucceedAcrossSkewedClocks(t *testing.T) {
	offsets := map[string]time.Duration{"ahead": 5 * time.Second, "true": 0, "behind": -5 * time.Second}
	c := testcluster.New(t, testcluster.Options{Seed: 43, Config: func(name string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = replication.Backups(1) // coordinators differ by session
		off := offsets[name]
		cfg.Clock = replication.SkewedClock(func() time.Duration { return off })
		return cfg
	}})
	for name := range offsets {
		c.Start(name)
	}
	c.WaitConverged(t)
	ctx := context.Background()
	want := map[string]int{}
	for i := 0; i < 6; i++ {
		require.NoError(t, errOf(c.Node("true").Store.Save(ctx, fmt.Sprint("s", i), put("user", "ann"))))
	}
	for i := 0; i < 30; i++ {
		id := fmt.Sprint("s", i%6)
		for _, n := range c.Nodes() {
			_, _, err := n.Store.Update(ctx, id, "visits", increment)
			require.NoError(t, err, "update of %s from %s", id, n.Name)
			want[id]++
		}
	}
	for id, n := range want {
		assert.Equal(t, n, counter(t, []*replication.Store{c.Node("true").Store}, id), id)
	}
}

// A node whose wall clock is two minutes ahead, beyond what its peers
// accept (MaxClockOffset), finds out from the lease exchanges within a
// lease period, refuses writes before acknowledging any (so none is lost
// to its peers' refusal) and says why in Health; the others measure its
// offset and keep serving every session.
func TestSkew_NodeFarAheadRefusesWritesAndSaysWhy(t *testing.T) {
	offsets := map[string]time.Duration{"a": 0, "b": 0, "ahead": 2 * time.Minute}
	c := testcluster.New(t, testcluster.Options{Seed: 44, Config: func(name string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		off := offsets[name]
		cfg.Clock = replication.SkewedClock(func() time.Duration { return off })
		return cfg
	}})
	for _, name := range []string{"a", "b", "ahead"} {
		c.Start(name)
	}
	c.WaitReady(t)
	ahead := c.Node("ahead").Store
	require.Eventually(t, func() bool { return ahead.Health() != nil }, 5*time.Second, 10*time.Millisecond,
		"the node ahead never noticed")
	assert.ErrorIs(t, ahead.Health(), replication.ErrClockOffset)
	assert.Contains(t, ahead.Health().Error(), "ahead of the cluster")
	assert.NoError(t, c.Node("a").Store.Health())

	ctx := context.Background()
	_, err := ahead.Save(ctx, "s1", put("user", "ann"))
	require.ErrorIs(t, err, replication.ErrClockOffset, "refused before it is acknowledged")
	_, _, err = ahead.Update(ctx, "s1", "visits", increment)
	require.ErrorIs(t, err, replication.ErrClockOffset)

	require.NoError(t, errOf(c.Node("a").Store.Save(ctx, "s2", put("user", "bob"))))
	for _, n := range []string{"a", "b"} {
		v, ok := value(t, c.Node(n).Store, "s2", "user")
		require.True(t, ok, n)
		assert.Equal(t, "bob", v)
	}
	// a measures the offset at its lease exchanges with the node ahead
	// (ahead noticed first, from its own).
	offsetOfAhead := func() time.Duration {
		for _, p := range c.Node("a").Store.Peers() {
			if p.Name == "ahead" {
				return p.ClockOffset
			}
		}
		return 0
	}
	require.Eventually(t, func() bool { return offsetOfAhead() != 0 }, 5*time.Second, 10*time.Millisecond, "a never measured the offset")
	assert.InDelta(t, (2 * time.Minute).Seconds(), offsetOfAhead().Seconds(), 0.5, "a measures the offset")
}

// A node far ahead drops the copies its clock says have expired, so its
// answer to a read is no proof that a session does not exist: a session
// with a short lifetime, written from a node that does not own it, reads
// back and counts on every healthy node, whichever owner is the primary.
// (The node ahead used to answer as an up-to-date owner, and a login
// throttle on another node found its window records "vanishing".)
func TestSkew_NodeFarAheadIsNoProofThatASessionEnded(t *testing.T) {
	offsets := map[string]time.Duration{"a": 0, "b": 0, "ahead": 2 * time.Minute}
	c := testcluster.New(t, testcluster.Options{Seed: 45, Config: func(name string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = replication.Backups(1)
		off := offsets[name]
		cfg.Clock = replication.SkewedClock(func() time.Duration { return off })
		return cfg
	}})
	for _, name := range []string{"a", "b", "ahead"} {
		c.Start(name)
	}
	c.WaitConverged(t)
	ahead := c.Node("ahead").Store
	require.Eventually(t, func() bool { return ahead.Health() != nil }, 5*time.Second, 10*time.Millisecond,
		"the node ahead never noticed")

	ctx := context.Background()
	for i := range 30 {
		id := fmt.Sprint("w", i)
		for _, writer := range []string{"a", "b"} {
			s := c.Node(writer).Store
			_, err := s.Save(ctx, id+writer, replication.Changes{Set: map[string][]byte{"user": []byte("ann")}, Lifetime: time.Minute})
			require.NoError(t, err)
			v, ok := value(t, s, id+writer, "user")
			require.True(t, ok, "%s reads %s back", writer, id+writer)
			assert.Equal(t, "ann", v)
			_, _, err = s.Update(ctx, id+writer, "visits", increment)
			require.NoError(t, err, "%s counts on %s", writer, id+writer)
		}
	}
}

// A write acknowledged after another write of the same attribute stays,
// although its node's clock is behind and it never saw the other write
// (made on a node whose clock is ahead, after the writer read the session):
// an owner holding the other write says that its version won, and the
// writer writes again above it. Without that, the earlier write wins on
// every replica (found by the cluster simulator).
func TestSkew_WriteAfterAnUnseenWriteFromAClockAheadStays(t *testing.T) {
	c, clock := skewedClusterMode(t, replication.Backups(1), map[string]time.Duration{
		"ahead": 2 * time.Second, "behind": 0, "o1": 0, "o2": 0})
	c.WaitConverged(t)
	ahead, behind := c.Node("ahead").Store, c.Node("behind").Store
	ctx := context.Background()
	var id string
	for i := 0; ; i++ {
		id = fmt.Sprint("s", i)
		if owners := ownersOf(t, behind, id); !slices.Contains(owners, "ahead") && !slices.Contains(owners, "behind") {
			break
		}
	}
	_, err := behind.Save(ctx, id, put("w", "5"))
	require.NoError(t, err)
	base, ok, err := behind.Get(ctx, id)
	require.NoError(t, err)
	require.True(t, ok)

	clock.Advance(100 * time.Millisecond)
	_, err = ahead.Save(ctx, id, put("w", "6"))
	require.NoError(t, err)
	c7 := put("w", "7")
	c7.Base = base // read before w=6: behind's clock has not seen w=6's version
	_, err = behind.Save(ctx, id, c7)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), behind.Stats().RewrittenWrites, "behind wrote again above ahead's version")
	c.WaitConverged(t)
	for _, n := range c.Nodes() {
		got, _ := value(t, n.Store, id, "w")
		assert.Equal(t, "7", got, "%s lost the acknowledged write to an earlier one", n.Name)
	}
}
