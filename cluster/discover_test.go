package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeResolver answers from tables the test changes while nodes run.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]net.IPAddr // guards: A/AAAA records by name
	srv   map[string][]*net.SRV   // guards: SRV records by name
	fail  map[string]error        // guards: names whose lookups fail
	calls atomic.Int64
}

var _ Resolver = (*fakeResolver)(nil)

func newFakeResolver() *fakeResolver {
	return &fakeResolver{hosts: map[string][]net.IPAddr{}, srv: map[string][]*net.SRV{}, fail: map[string]error{}}
}

func (f *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[host]; err != nil {
		return nil, err
	}
	if a, ok := f.hosts[host]; ok {
		return append([]net.IPAddr(nil), a...), nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (f *fakeResolver) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	f.calls.Add(1)
	if service != "" || proto != "" {
		return "", nil, errors.New("fake: only full SRV names")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[name]; err != nil {
		return "", nil, err
	}
	if s, ok := f.srv[name]; ok {
		out := make([]*net.SRV, len(s))
		for i, r := range s {
			c := *r
			out[i] = &c
		}
		return name + ".", out, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// setSRV makes name's SRV records point at the gossip ports of nodes, all
// on 127.0.0.1 through the target localhost.test.
func (f *fakeResolver) setSRV(name string, ports ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts["localhost.test"] = []net.IPAddr{{IP: net.IPv4(127, 0, 0, 1)}}
	recs := make([]*net.SRV, len(ports))
	for i, p := range ports {
		recs[i] = &net.SRV{Target: "localhost.test.", Port: uint16(p), Priority: 10, Weight: 10}
	}
	f.srv[name] = recs
}

func ips(ss ...string) []net.IPAddr {
	out := make([]net.IPAddr, len(ss))
	for i, s := range ss {
		out[i] = net.IPAddr{IP: net.ParseIP(s)}
	}
	return out
}

func TestDNSSeeds(t *testing.T) {
	r := newFakeResolver()
	r.hosts["mesh.test"] = ips("10.0.0.2", "10.0.0.1", "fd00::1")
	r.hosts["a.mesh.test"] = ips("10.0.1.1")
	r.hosts["b.mesh.test"] = ips("10.0.1.2", "10.0.1.1")
	r.srv["_gossip._tcp.mesh.test"] = []*net.SRV{
		{Target: "a.mesh.test.", Port: 7001}, {Target: "b.mesh.test.", Port: 7002},
		{Target: "gone.mesh.test.", Port: 7003}, {Target: ".", Port: 7004}, {Target: "a.mesh.test.", Port: 0},
	}
	r.srv["mesh-srv.test"] = []*net.SRV{{Target: "10.9.9.9", Port: 7010}}
	r.fail["broken.test"] = &net.DNSError{Err: "server misbehaving", Name: "broken.test", IsTemporary: true}

	for _, tc := range []struct {
		names   []string
		want    []string
		wantErr bool
	}{
		{names: []string{"mesh.test:7000"}, want: []string{"10.0.0.1:7000", "10.0.0.2:7000", "[fd00::1]:7000"}},
		{names: []string{"dns+mesh.test"}, want: []string{"10.0.0.1:7946", "10.0.0.2:7946", "[fd00::1]:7946"}},
		{names: []string{"mesh.test.:7000"}, want: []string{"10.0.0.1:7000", "10.0.0.2:7000", "[fd00::1]:7000"}},
		{names: []string{"_gossip._tcp.mesh.test"}, want: []string{"10.0.1.1:7001", "10.0.1.1:7002", "10.0.1.2:7002"}},
		{names: []string{"dnssrv+_gossip._tcp.mesh.test"}, want: []string{"10.0.1.1:7001", "10.0.1.1:7002", "10.0.1.2:7002"}},
		{names: []string{"dnssrv+mesh-srv.test"}, want: []string{"10.9.9.9:7010"}},
		{names: []string{"10.5.5.5:7946", "[fd00::5]"}, want: []string{"10.5.5.5:7946", "[fd00::5]:7946"}},
		{names: []string{"nobody.test:7000", "_none._tcp.nobody.test"}, want: nil},
		{names: []string{"a.mesh.test:7000", "b.mesh.test:7000"}, want: []string{"10.0.1.1:7000", "10.0.1.2:7000"}},
		{names: []string{"broken.test:7000", "a.mesh.test:7000"}, want: []string{"10.0.1.1:7000"}, wantErr: true},
	} {
		discover, err := DNSSeeds(r, tc.names...)
		require.NoError(t, err, tc.names)
		got, err := discover(context.Background())
		if tc.wantErr {
			require.Error(t, err, tc.names)
			assert.Contains(t, err.Error(), "broken.test")
		} else {
			require.NoError(t, err, tc.names)
		}
		assert.Equal(t, tc.want, got, tc.names)
		for _, s := range got {
			_, _, err := splitSeed(s)
			assert.NoError(t, err, "%s is a valid seed", s)
		}
	}

	for _, bad := range [][]string{
		nil, {""}, {"dnssrv+"}, {"dnssrv+_gossip._tcp.mesh.test:7946"}, {"_x._tcp.bad name"},
		{"mesh.test:0"}, {"mesh.test:http"}, {"dns+"}, {"bad host!"}, {"mesh.test:7000", ":7000"},
	} {
		_, err := DNSSeeds(r, bad...)
		assert.Error(t, err, "%q", bad)
	}
	d, err := DNSSeeds(nil, "localhost:7946")
	require.NoError(t, err, "nil means net.DefaultResolver")
	assert.NotNil(t, d)
}

// TestCluster_DiscoverDNS starts nodes that find each other only through
// SRV records of a fake resolver, which change while the nodes run.
func TestCluster_DiscoverDNS(t *testing.T) {
	const name = "_gossip._udp.mesh.test"
	r := newFakeResolver()
	discover, err := DNSSeeds(r, name)
	require.NoError(t, err)

	// The first node finds only itself: it runs alone.
	pa := reservePort(t)
	r.setSRV(name, pa)
	cfgA := testConfig("a")
	cfgA.BindAddr = addr(pa)
	cfgA.Discover = discover
	a := start(t, cfgA)
	waitFor(t, "a settled", func() bool { return isSettled(a) })
	assert.Equal(t, []string{"a"}, names(a))

	// The second finds the first through DNS at its first attempt.
	pb := reservePort(t)
	r.setSRV(name, pa, pb)
	cfgB := testConfig("b")
	cfgB.BindAddr = addr(pb)
	cfgB.Discover = discover
	b := start(t, cfgB)
	waitFor(t, "a and b together", sees([]string{"a", "b"}, a, b))

	// A third node with no seeds and no discovery stays alone until it
	// appears in DNS: the others re-resolve every RejoinInterval and join
	// it.
	c := start(t, testConfig("c"))
	waitFor(t, "c settled", func() bool { return isSettled(c) })
	assert.Equal(t, []string{"c"}, names(c))
	r.setSRV(name, pa, pb, portOf(t, c))
	waitFor(t, "all three together", sees([]string{"a", "b", "c"}, a, b, c))
	assert.Greater(t, r.calls.Load(), int64(3), "looked up again while running")
}

// TestCluster_DiscoverFailures checks that a failing or odd Discover does
// not stop the joiner: static seeds and the valid addresses it returned are
// still tried.
func TestCluster_DiscoverFailures(t *testing.T) {
	a := start(t, testConfig("a"))
	var calls atomic.Int64
	cfg := testConfig("b")
	cfg.Discover = func(ctx context.Context) ([]string, error) {
		require.NotNil(t, ctx.Done(), "a context that can end")
		calls.Add(1)
		return []string{"not an address!", "", a.LocalMember().Addr}, errors.New("one name failed")
	}
	b := start(t, cfg)
	waitFor(t, "b joined a despite the error", sees([]string{"a", "b"}, a, b))

	// A Discover function alone, failing, leaves the node alone and
	// settled; it keeps being called.
	cfg = testConfig("c")
	cfg.Discover = func(context.Context) ([]string, error) {
		calls.Add(1)
		return nil, errors.New("dns down")
	}
	c := start(t, cfg)
	waitFor(t, "c settled", func() bool { return isSettled(c) })
	before := calls.Load()
	waitFor(t, "c retried discovery", func() bool { return calls.Load() > before+1 })
	assert.Equal(t, []string{"c"}, names(c))
}
