package cluster

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCluster_ThreeNodes(t *testing.T) {
	a := start(t, testConfig("a"))
	b := start(t, testConfig("b", a.LocalMember().Addr))
	c := start(t, testConfig("c", a.LocalMember().Addr))

	waitFor(t, "3 members everywhere", sees([]string{"a", "b", "c"}, a, b, c))

	nodes := []*Cluster{a, b, c}
	for _, observer := range nodes {
		for _, n := range nodes {
			want := n.LocalMember()
			got, ok := member(observer, want.Name)
			require.True(t, ok)
			assert.Equal(t, want.Addr, got.Addr, "%s seen by %s", want.Name, observer.LocalMember().Name)
			assert.Equal(t, want.Incarnation, got.Incarnation)
			assert.Equal(t, map[string]string{"repl": "repl-of-" + want.Name}, got.Tags)
			assert.Equal(t, StateAlive, got.State)
		}
		assert.True(t, isSettled(observer))
		assert.Equal(t, 3, observer.Stats().Members)
	}
	assert.NotZero(t, a.LocalMember().Incarnation)

	// Members returns copies.
	ms := a.Members()
	ms[0].Tags["repl"] = "changed"
	got, _ := member(a, ms[0].Name)
	assert.Equal(t, "repl-of-"+ms[0].Name, got.Tags["repl"])
}

func TestCluster_JoinRetry(t *testing.T) {
	port := reservePort(t)
	b := start(t, testConfig("b", addr(port)))

	// The first attempt fails (nobody listens): b is settled and alone.
	select {
	case <-b.Settled():
	case <-time.After(waitTimeout):
		t.Fatal("b never settled")
	}
	assert.Equal(t, []string{"b"}, names(b))
	assert.GreaterOrEqual(t, b.Stats().JoinFailures, uint64(1))

	cfg := testConfig("a")
	cfg.BindAddr = addr(port)
	a := start(t, cfg)
	waitFor(t, "b to join a once a is up", sees([]string{"a", "b"}, a, b))
}

func TestCluster_SeedsIncludeSelf(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		port := reservePort(t)
		cfg := testConfig("solo", addr(port), "0.0.0.0:"+itoa(port))
		cfg.BindAddr = addr(port)
		c := start(t, cfg)
		waitFor(t, "settled", func() bool { return isSettled(c) })
		assert.Equal(t, []string{"solo"}, names(c))
		assert.Zero(t, c.Stats().JoinAttempts, "joined itself")
	})

	t.Run("all list all", func(t *testing.T) {
		ports := []int{reservePort(t), reservePort(t), reservePort(t)}
		var seeds []string
		for _, p := range ports {
			seeds = append(seeds, addr(p))
		}
		var nodes []*Cluster
		for i, name := range nodeNames(3) {
			cfg := testConfig(name, seeds...)
			cfg.BindAddr = addr(ports[i])
			nodes = append(nodes, start(t, cfg))
		}
		waitFor(t, "3 members everywhere", sees(nodeNames(3), nodes...))
	})
}

// A node that has members still re-joins seeds that are not among them: here
// d starts alone after a and b formed a cluster, and b's seed list names it.
func TestCluster_RejoinMergesGroups(t *testing.T) {
	dPort := reservePort(t)
	a := start(t, testConfig("a"))
	b := start(t, testConfig("b", a.LocalMember().Addr, addr(dPort)))
	waitFor(t, "a and b", sees([]string{"a", "b"}, a, b))

	cfg := testConfig("d") // no seeds: alone until b re-joins it
	cfg.BindAddr = addr(dPort)
	d := start(t, cfg)
	waitFor(t, "merged", sees([]string{"a", "b", "d"}, a, b, d))
}

func TestCluster_SeedHostname(t *testing.T) {
	a := start(t, testConfig("a"))
	b := start(t, testConfig("b", "localhost:"+itoa(portOf(t, a))))
	waitFor(t, "joined through a host name", sees([]string{"a", "b"}, a, b))
}

func TestCluster_Events(t *testing.T) {
	a := start(t, testConfig("a"))
	ch := make(chan Event, 256)
	a.Notify(ch)

	b := start(t, testConfig("b", a.LocalMember().Addr))
	ev := nextEvent(t, ch, "b")
	assert.Equal(t, EventJoin, ev.Type)
	assert.Equal(t, StateAlive, ev.Member.State)
	assert.Equal(t, b.LocalMember().Incarnation, ev.Member.Incarnation)
	assert.Equal(t, "repl-of-b", ev.Member.Tags["repl"])

	c := start(t, testConfig("c", a.LocalMember().Addr))
	assert.Equal(t, EventJoin, nextEvent(t, ch, "c").Type)
	waitFor(t, "3 members everywhere", sees([]string{"a", "b", "c"}, a, b, c))

	// Graceful leave.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, b.Leave(ctx))
	ev = nextEvent(t, ch, "b", EventUpdate)
	assert.Equal(t, EventLeave, ev.Type)
	assert.Equal(t, StateLeft, ev.Member.State)
	assert.Equal(t, b.LocalMember().Incarnation, ev.Member.Incarnation)
	waitFor(t, "b gone", sees([]string{"a", "c"}, a, c))
	assert.Equal(t, StateLeft, b.LocalMember().State)
	require.NoError(t, b.Close())

	// Crash: Close without Leave.
	crashed := time.Now()
	require.NoError(t, c.Close())
	ev = nextEvent(t, ch, "c", EventUpdate)
	t.Logf("crash detected after %v", time.Since(crashed).Round(time.Millisecond))
	assert.Equal(t, EventFail, ev.Type)
	assert.Equal(t, StateDead, ev.Member.State)
	assert.Equal(t, []string{"a"}, names(a))

	for _, e := range drain(ch) {
		assert.NotEqual(t, "a", e.Member.Name, "event about the local node")
	}
	a.StopNotify(ch)
	assert.Zero(t, a.Stats().DroppedEvents)
}

func TestCluster_FullChannelNeverBlocks(t *testing.T) {
	a := start(t, testConfig("a"))
	full := make(chan Event, 1)
	a.Notify(full)
	a.Notify(full) // twice is once

	var nodes []*Cluster
	for _, name := range []string{"b", "c", "d"} {
		nodes = append(nodes, start(t, testConfig(name, a.LocalMember().Addr)))
	}
	waitFor(t, "4 members everywhere", sees([]string{"a", "b", "c", "d"}, append(nodes, a)...))
	assert.Len(t, full, 1)
	assert.Equal(t, uint64(1), a.Stats().DeliveredEvents)
	assert.GreaterOrEqual(t, a.Stats().DroppedEvents, uint64(2))

	// Membership keeps working: a leave still goes through.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, nodes[0].Leave(ctx))
	waitFor(t, "b gone", sees([]string{"a", "c", "d"}, a, nodes[1], nodes[2]))
	assert.GreaterOrEqual(t, a.Stats().DroppedEvents, uint64(3))

	// After StopNotify nothing more is sent, even with room.
	a.StopNotify(full)
	<-full
	require.NoError(t, nodes[1].Leave(ctx))
	waitFor(t, "c gone", sees([]string{"a", "d"}, a, nodes[2]))
	assert.Empty(t, full)
}

func TestCluster_Restart(t *testing.T) {
	t.Run("same address before detection", func(t *testing.T) {
		testRestart(t, false)
	})
	t.Run("same address after detection", func(t *testing.T) {
		testRestart(t, true)
	})
}

func testRestart(t *testing.T, waitDead bool) {
	a := start(t, testConfig("a"))
	x1, err := New(testConfig("x", a.LocalMember().Addr))
	require.NoError(t, err)
	waitFor(t, "x joined", sees([]string{"a", "x"}, a, x1))
	old := x1.LocalMember()
	port := portOf(t, x1)
	require.NoError(t, x1.Close())
	if waitDead {
		waitFor(t, "x failed", sees([]string{"a"}, a))
	}

	ch := make(chan Event, 256)
	a.Notify(ch)
	restarted := time.Now()
	cfg := testConfig("x", a.LocalMember().Addr)
	cfg.BindAddr = addr(port)
	x2 := start(t, cfg)
	require.Greater(t, x2.LocalMember().Incarnation, old.Incarnation)
	waitFor(t, "a to see the new x", func() bool {
		m, ok := member(a, "x")
		return ok && m.Incarnation == x2.LocalMember().Incarnation
	})
	t.Logf("restart seen after %v", time.Since(restarted).Round(time.Millisecond))
	m, _ := member(a, "x")
	assert.Equal(t, old.Addr, m.Addr)
	waitFor(t, "x to see a", sees([]string{"a", "x"}, a, x2))

	// The event that brought the new life: EventJoin when the old one had
	// been declared failed, else EventUpdate (or, if detection won the race,
	// EventFail then EventJoin).
	for {
		ev := nextEvent(t, ch, "x")
		if ev.Member.Incarnation != x2.LocalMember().Incarnation {
			continue
		}
		t.Logf("restart reported as %v", ev.Type)
		if waitDead {
			assert.Equal(t, EventJoin, ev.Type)
		} else {
			assert.Contains(t, []EventType{EventJoin, EventUpdate}, ev.Type)
		}
		break
	}
}

func TestCluster_RestartNewAddress(t *testing.T) {
	// Without push/pull, only the joiner's retries of seeds that still know
	// the old address can make a accept the new one.
	slow := func(cfg Config) Config {
		cfg.PushPullInterval = time.Hour
		return cfg
	}
	a := start(t, slow(testConfig("a")))
	x1, err := New(slow(testConfig("x", a.LocalMember().Addr)))
	require.NoError(t, err)
	waitFor(t, "x joined", sees([]string{"a", "x"}, a, x1))
	oldAddr := x1.LocalMember().Addr
	require.NoError(t, x1.Close())
	waitFor(t, "x failed", sees([]string{"a"}, a))

	// Same name, new port: accepted once DeadNodeReclaimTime has passed.
	restarted := time.Now()
	x2 := start(t, slow(testConfig("x", a.LocalMember().Addr)))
	require.NotEqual(t, oldAddr, x2.LocalMember().Addr)
	waitFor(t, "a to see x at its new address", func() bool {
		m, ok := member(a, "x")
		return ok && m.Addr == x2.LocalMember().Addr && m.Incarnation == x2.LocalMember().Incarnation
	})
	t.Logf("new address accepted after %v", time.Since(restarted).Round(time.Millisecond))
}

func TestCluster_Close(t *testing.T) {
	c, err := New(testConfig("a"))
	require.NoError(t, err)
	port := portOf(t, c)

	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")

	// Both ports are free again.
	ln, err := net.Listen("tcp", addr(port))
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	pc, err := net.ListenPacket("udp", addr(port))
	require.NoError(t, err)
	require.NoError(t, pc.Close())

	require.ErrorIs(t, c.Leave(context.Background()), ErrClosed)
	assert.Nil(t, c.Members())
	assert.Zero(t, c.Stats().Members)
	assert.True(t, isSettled(c))
	assert.Equal(t, StateDead, c.LocalMember().State)
	c.Notify(make(chan Event, 1)) // harmless
}

func TestCluster_CloseWhileJoining(t *testing.T) {
	// Seeds that never answer: Close must stop the joiner promptly.
	c, err := New(testConfig("a", addr(reservePort(t))))
	require.NoError(t, err)
	waitFor(t, "settled", func() bool { return isSettled(c) })
	done := make(chan struct{})
	go func() {
		_ = c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(waitTimeout):
		t.Fatal("Close hangs")
	}
}

func TestCluster_LeaveAlone(t *testing.T) {
	c := start(t, testConfig("a"))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, c.Leave(ctx))
	require.NoError(t, c.Leave(ctx), "second Leave")
	assert.Equal(t, StateLeft, c.LocalMember().State)
	require.NoError(t, c.Close())
	require.ErrorIs(t, c.Leave(ctx), ErrClosed)
}

func TestCluster_LeaveContextEnds(t *testing.T) {
	a := start(t, testConfig("a"))
	b := start(t, testConfig("b", a.LocalMember().Addr))
	waitFor(t, "joined", sees([]string{"a", "b"}, a, b))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.Leave(ctx), context.Canceled)
	// The leave goes on in the background; Close waits for it.
	require.NoError(t, b.Close())
	waitFor(t, "b gone", sees([]string{"a"}, a))
}

func TestNew_TagsTooLarge(t *testing.T) {
	cfg := testConfig("a")
	cfg.Tags = map[string]string{"big": strings.Repeat("x", 600)}
	c, err := New(cfg)
	require.Error(t, err)
	assert.Nil(t, c)
	assert.Contains(t, err.Error(), "512")

	// Many small tags too.
	cfg.Tags = map[string]string{}
	for i := range 100 {
		cfg.Tags["key"+itoa(i)] = "value"
	}
	_, err = New(cfg)
	require.Error(t, err)
}

func TestCluster_SecretKeyAndLabel(t *testing.T) {
	key1 := []byte("0123456789abcdef")
	key2 := []byte("fedcba9876543210")

	cfgA := testConfig("a")
	cfgA.SecretKey = key1
	cfgA.Label = "prod"
	a := start(t, cfgA)

	cfgB := testConfig("b", a.LocalMember().Addr)
	cfgB.SecretKey = key1
	cfgB.Label = "prod"
	b := start(t, cfgB)
	waitFor(t, "same key joins", sees([]string{"a", "b"}, a, b))

	for name, mutate := range map[string]func(*Config){
		"wrong key":   func(c *Config) { c.SecretKey = key2 },
		"no key":      func(c *Config) { c.SecretKey = nil },
		"wrong label": func(c *Config) { c.Label = "staging" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig("intruder", a.LocalMember().Addr)
			cfg.SecretKey = key1
			cfg.Label = "prod"
			mutate(&cfg)
			x := start(t, cfg)
			waitFor(t, "settled", func() bool { return isSettled(x) })
			assert.Equal(t, []string{"intruder"}, names(x))
			assert.NotZero(t, x.Stats().JoinFailures)
			require.NoError(t, x.Close())
			assert.Equal(t, []string{"a", "b"}, names(a))
		})
	}
}

// TestCluster_RotateKey rotates the gossip key of a running 3-node cluster:
// nobody fails or leaves, a node restarted mid-rotation joins with both
// keys, and at the end only the new key opens the cluster.
func TestCluster_RotateKey(t *testing.T) {
	oldKey := []byte("0123456789abcdef0123456789abcdef")
	newKey := []byte("fedcba9876543210fedcba9876543210")
	var nodes []*Cluster
	events := make(chan Event, 1024)
	for _, name := range []string{"a", "b", "c"} {
		cfg := testConfig(name)
		if len(nodes) > 0 {
			cfg.Seeds = []string{nodes[0].LocalMember().Addr}
		}
		cfg.SecretKey = oldKey
		n := start(t, cfg)
		nodes = append(nodes, n)
	}
	waitFor(t, "three members", sees([]string{"a", "b", "c"}, nodes...))
	nodes[0].Notify(events)

	joins := func(name string, keys ...[]byte) bool {
		cfg := testConfig(name, nodes[0].LocalMember().Addr)
		cfg.SecretKey, cfg.SecondaryKeys = keys[0], keys[1:]
		x := start(t, cfg)
		defer func() { require.NoError(t, x.Close()) }()
		waitFor(t, name+" settled", func() bool { return isSettled(x) })
		_, ok := member(x, "a")
		return ok
	}
	for _, n := range nodes {
		require.NoError(t, n.InstallKey(newKey))
	}
	assert.True(t, joins("mid-rotation", newKey, oldKey), "a node with both keys joins")
	for _, n := range nodes {
		require.NoError(t, n.UseKey(newKey))
	}
	for _, n := range nodes {
		require.NoError(t, n.RemoveKey(oldKey))
		assert.Equal(t, [][]byte{newKey}, n.Keys())
	}
	assert.False(t, joins("stale", oldKey), "the old key still opens the cluster")
	assert.True(t, joins("fresh", newKey), "the new key opens the cluster")
	for _, ev := range drain(events) {
		if ev.Member.Name == "b" || ev.Member.Name == "c" {
			assert.Equal(t, EventUpdate, ev.Type, "event %v during the rotation", ev)
		}
	}
	waitFor(t, "three members", sees([]string{"a", "b", "c"}, nodes...))
}

func TestCluster_KeyManagementErrors(t *testing.T) {
	k1 := []byte("0123456789abcdef")
	k2 := []byte("0123456789abcdef01234567")
	cfg := testConfig("a")
	cfg.SecretKey = k1
	c := start(t, cfg)
	assert.ErrorIs(t, c.UseKey(k2), ErrUnknownKey)
	assert.ErrorIs(t, c.RemoveKey(k1), ErrPrimaryKey)
	assert.NoError(t, c.RemoveKey(k2), "removing a key that is not installed does nothing")
	assert.Error(t, c.InstallKey([]byte("short")))
	require.NoError(t, c.InstallKey(k2))
	require.NoError(t, c.InstallKey(k2))
	assert.Equal(t, [][]byte{k1, k2}, c.Keys())
	c.Keys()[0][0] = 'x'
	assert.Equal(t, k1, c.Keys()[0], "Keys returns copies")
	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.InstallKey(k2), ErrClosed)

	plain := start(t, testConfig("plain"))
	assert.ErrorIs(t, plain.InstallKey(k1), ErrNoKeyring)
	assert.ErrorIs(t, plain.UseKey(k1), ErrNoKeyring)
	assert.ErrorIs(t, plain.RemoveKey(k1), ErrNoKeyring)
	assert.Nil(t, plain.Keys())

	bad := testConfig("bad")
	bad.SecondaryKeys = [][]byte{k1}
	_, err := New(bad)
	assert.ErrorContains(t, err, "require a SecretKey")
	bad.SecretKey = k1
	bad.SecondaryKeys = [][]byte{[]byte("short")}
	_, err = New(bad)
	assert.ErrorContains(t, err, "SecondaryKeys[0]")
}

// A member whose metadata is garbage (here a bare memberlist node) is still
// reported, with zero Incarnation and nil Tags.
func TestCluster_ForeignMetadata(t *testing.T) {
	a := start(t, testConfig("a"))

	mlc := memberlist.DefaultLocalConfig()
	mlc.Name = "foreign"
	mlc.BindAddr = "127.0.0.1"
	mlc.BindPort = 0
	mlc.Delegate = &delegate{}
	mlc.Delegate.(*delegate).setMeta([]byte{0xff, 0x01, 0x80})
	mlc.Logger = newMemberlistLogger(slog.New(slog.DiscardHandler), nil)
	ml, err := memberlist.Create(mlc)
	require.NoError(t, err)
	defer func() { _ = ml.Shutdown() }()
	_, err = ml.Join([]string{a.LocalMember().Addr})
	require.NoError(t, err)

	waitFor(t, "foreign member", func() bool { _, ok := member(a, "foreign"); return ok })
	m, _ := member(a, "foreign")
	assert.Zero(t, m.Incarnation)
	assert.Nil(t, m.Tags)
	assert.Equal(t, StateAlive, m.State)
}

func TestCluster_NotifyNil(t *testing.T) {
	c := start(t, testConfig("a"))
	assert.Panics(t, func() { c.Notify(nil) })
}

func drain(ch <-chan Event) []Event {
	var out []Event
	for {
		select {
		case e := <-ch:
			out = append(out, e)
		default:
			return out
		}
	}
}

// A node that missed the gossip of a join learns of it from the state
// exchanges it makes while the membership changes, not at the next periodic
// push/pull. Here nothing gossips at all (the gossip, probe and push/pull
// periods are an hour), so a learns of c, which joined through b, only that
// way.
func TestCluster_StateSyncWhileMembershipChanges(t *testing.T) {
	deaf := func(name string, seeds ...string) Config {
		cfg := testConfig(name, seeds...)
		cfg.GossipInterval, cfg.ProbeInterval, cfg.PushPullInterval = time.Hour, time.Hour, time.Hour
		cfg.JoinRetryInterval = time.Second // syncs every second, for 5 s after a change
		return cfg
	}
	a := start(t, deaf("a"))
	b := start(t, deaf("b", a.LocalMember().Addr))
	waitFor(t, "a and b to see each other", sees([]string{"a", "b"}, a, b))
	c := start(t, deaf("c", b.LocalMember().Addr))
	waitFor(t, "b and c to see all three", sees([]string{"a", "b", "c"}, b, c))
	waitFor(t, "a to learn of c", sees([]string{"a", "b", "c"}, a))
	// With gossip, probes and push-pull an hour apart, only a state sync
	// tells a of c: its own, or one that b or c started with it.
	assert.NotZero(t, a.Stats().StateSyncs+b.Stats().StateSyncs+c.Stats().StateSyncs)
}

// A node tells when every peer is leaving too (a stop of the whole fleet),
// from their leaving flags: its Leave then does not wait out memberlist's
// full timeout for a leave broadcast that the departing peers may never
// hear.
func TestCluster_LeaveSeesEveryPeerLeaving(t *testing.T) {
	a := start(t, testConfig("a"))
	b := start(t, testConfig("b", a.LocalMember().Addr))
	c := start(t, testConfig("c", a.LocalMember().Addr))
	waitFor(t, "joined", sees([]string{"a", "b", "c"}, a, b, c))
	assert.False(t, a.events.everyPeerLeaving())

	for i, p := range []*Cluster{b, c} {
		md, err := nodeMeta{flags: metaFlagLeaving, incarnation: p.local.Incarnation, tags: p.cfg.Tags}.encode()
		require.NoError(t, err)
		p.delegate.setMeta(md)
		require.NoError(t, p.ml.UpdateNode(p.leaveTimeout))
		if i == 0 {
			waitFor(t, "b's flag", func() bool { return a.events.peerLeaving("b") })
			assert.False(t, a.events.everyPeerLeaving(), "c is not leaving")
		}
	}
	waitFor(t, "every peer's flag", a.events.everyPeerLeaving)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, a.Leave(ctx))
}
