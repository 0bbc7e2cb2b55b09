package metrics_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/internal/testing/leaktest"
	"github.com/sessionmesh/sessionmesh/internal/testing/meshtest"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/replication/metrics"
	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// scrape is a parsed /metrics answer.
type scrape map[string]*dto.MetricFamily

// value returns the value of the sample of family name whose labels
// include labels ("k=v" pairs), summed over the samples that match, and
// whether any matched.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	mf := s[name]
	if mf == nil {
		return 0, false
	}
	var sum float64
	found := false
next:
	for _, m := range mf.GetMetric() {
		for _, want := range labels {
			k, v, _ := strings.Cut(want, "=")
			ok := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == k && lp.GetValue() == v {
					ok = true
				}
			}
			if !ok {
				continue next
			}
		}
		found = true
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

// v is value for samples that must exist.
func (s scrape) v(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	x, ok := s.value(name, labels...)
	require.True(t, ok, "no sample %s%v", name, labels)
	return x
}

// server serves one node's metrics the way an application would.
type server struct {
	node *meshtest.Node
	srv  *httptest.Server
}

func serve(t *testing.T, n *meshtest.Node) *server {
	reg := prometheus.NewPedanticRegistry()
	_, err := metrics.Register(reg, metrics.Config{
		Store: n.Store, Cluster: n.Cluster, Transport: n.Transport,
		// Seven anti-entropy rounds of the nodes; failure detection takes
		// longer (see TestCollector_ThreeNodes).
		PeerTimeout: 700 * time.Millisecond,
	})
	require.NoError(t, err)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	t.Cleanup(srv.Close)
	return &server{node: n, srv: srv}
}

func (s *server) scrape(t testing.TB) scrape {
	t.Helper()
	resp, err := http.Get(s.srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mfs
}

// TestCollector_ThreeNodes scrapes a real 3-node cluster (memberlist, TCP
// transports, Backups(1)) through promhttp: before and after writes, and
// through the crash of a node until the survivors have re-replicated.
func TestCollector_ThreeNodes(t *testing.T) {
	nodes := meshtest.Start(t, 3, meshtest.Options{
		Store: func(_ string, cfg *replication.Config) { cfg.Mode = replication.Backups(1) },
		// Failure detection after about 2 s instead of 1 s, so that the
		// killed node is unresponsive (no status answer for PeerTimeout)
		// for a while before the membership drops it.
		Cluster: func(_ string, cfg *cluster.Config) { cfg.SuspicionMult = 8 },
	})
	servers := make([]*server, len(nodes))
	for i, n := range nodes {
		servers[i] = serve(t, n)
	}
	for _, s := range servers {
		problems, err := testutil.CollectAndLint(mustCollector(t, s.node))
		require.NoError(t, err)
		assert.Empty(t, problems, "promlint")
	}

	first := servers[0].scrape(t)
	assert.Equal(t, 3.0, first.v(t, "sessionmesh_cluster_members", "state=alive"))
	assert.Equal(t, 0.0, first.v(t, "sessionmesh_cluster_members", "state=suspect"))
	assert.Equal(t, 1.0, first.v(t, "sessionmesh_info", "mode=backups(1)", "write_concern=sync"))
	assert.Equal(t, 1.0, first.v(t, "sessionmesh_ready"))
	writesBefore := first.v(t, "sessionmesh_write_duration_seconds")

	// Writes on every node.
	const sessions = 90
	ctx := context.Background()
	for i := range sessions {
		_, err := nodes[i%3].Store.Save(ctx, fmt.Sprintf("session-%03d", i), replication.Changes{
			Set: map[string][]byte{"user": []byte("u")}, Lifetime: time.Hour,
		})
		require.NoError(t, err)
	}

	// Every session has one primary and one backup somewhere, once the
	// nodes' views have settled.
	roleSums := func(ss []*server) (primary, backup, other float64) {
		for _, s := range ss {
			m := s.scrape(t)
			primary += m.v(t, "sessionmesh_sessions", "role=primary")
			backup += m.v(t, "sessionmesh_sessions", "role=backup")
			other += m.v(t, "sessionmesh_sessions", "role=copying") + m.v(t, "sessionmesh_sessions", "role=handoff")
		}
		return primary, backup, other
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		p, b, o := roleSums(servers)
		return p == sessions && b == sessions && o == 0, fmt.Sprintf("roles: primary %v backup %v other %v", p, b, o)
	})

	m := servers[0].scrape(t)
	assert.GreaterOrEqual(t, m.v(t, "sessionmesh_write_duration_seconds")-writesBefore, float64(sessions/3), "histogram count")
	assert.GreaterOrEqual(t, m.v(t, "sessionmesh_writes_total"), float64(sessions/3))
	h := m["sessionmesh_write_duration_seconds"].GetMetric()[0].GetHistogram()
	assert.Greater(t, h.GetSampleSum(), 0.0)
	assert.NotEmpty(t, h.GetBucket())
	var owned float64
	for _, s := range servers {
		sm := s.scrape(t)
		owned += sm.v(t, "sessionmesh_partitions", "role=primary") + sm.v(t, "sessionmesh_partitions", "role=backup")
		assert.Greater(t, sm.v(t, "sessionmesh_transport_frames_sent_total"), 0.0)
		assert.Greater(t, sm.v(t, "sessionmesh_transport_received_bytes_total"), 0.0)
		assert.Greater(t, sm.v(t, "sessionmesh_transport_open_connections"), 0.0)
		assert.Equal(t, 2.0, sm.v(t, "sessionmesh_peers"), "peers in all states")
	}
	assert.Equal(t, 2.0*replication.Partitions, owned, "every partition has a primary and a backup")
	// Every peer answers the status polls (a loaded machine may slow a
	// round past PeerTimeout for a moment).
	waitFor(t, 10*time.Second, func() (bool, string) {
		for _, s := range servers {
			if ok := s.scrape(t).v(t, "sessionmesh_peers", "state=ok"); ok != 2 {
				return false, fmt.Sprintf("%s: %v peers ok", s.node.Name, ok)
			}
		}
		return true, ""
	})

	// A crash: an owner lost (fully_replicated falls to 0) and an
	// unresponsive peer until the survivors notice and re-replicate, then
	// healthy again. The loss is asserted on its counter: the gauge of
	// under-replicated partitions may go from "not counted yet" (-1)
	// straight to 0 when the refused connection moves the partitions and
	// the next round copies them at once.
	lossesBefore := servers[0].scrape(t).v(t, "sessionmesh_owner_losses_total")
	nodes[2].Kill()
	sawUnresponsive := false
	waitFor(t, 20*time.Second, func() (bool, string) {
		m := servers[0].scrape(t)
		if m.v(t, "sessionmesh_peers", "state=unresponsive") > 0 {
			sawUnresponsive = true
		}
		losses, alive := m.v(t, "sessionmesh_owner_losses_total"), m.v(t, "sessionmesh_cluster_members", "state=alive")
		return losses > lossesBefore && alive == 2, fmt.Sprintf("after the kill: owner losses %v (before %v), alive members %v", losses, lossesBefore, alive)
	})
	require.Eventually(t, func() bool {
		for _, s := range servers[:2] {
			m := s.scrape(t)
			if m.v(t, "sessionmesh_partitions_under_replicated") != 0 || m.v(t, "sessionmesh_fully_replicated") != 1 {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "not fully replicated again")
	waitFor(t, 10*time.Second, func() (bool, string) {
		p, b, o := roleSums(servers[:2])
		return p == sessions && b == sessions && o == 0, fmt.Sprintf("roles after re-replication: primary %v backup %v other %v", p, b, o)
	})
	var transferred float64
	for _, s := range servers[:2] {
		m := s.scrape(t)
		transferred += m.v(t, "sessionmesh_state_transfer_records_total")
		assert.Equal(t, 1.0, m.v(t, "sessionmesh_peers"), "the dead peer left the view")
	}
	assert.Greater(t, transferred, 0.0, "re-replication copied records")
	assert.True(t, sawUnresponsive, "the killed node was never reported unresponsive")
}

// waitFor polls cond every 20ms until it holds, and fails the test with
// cond's last reason after d.
func waitFor(t *testing.T, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	timeout := time.After(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		select {
		case <-timeout:
			t.Fatalf("after %v: %s", d, why)
		case <-tick.C:
		}
	}
}

func mustCollector(t *testing.T, n *meshtest.Node) *metrics.Collector {
	c, err := metrics.New(metrics.Config{Store: n.Store, Cluster: n.Cluster, Transport: n.Transport})
	require.NoError(t, err)
	return c
}

func TestNew_Errors(t *testing.T) {
	_, err := metrics.New(metrics.Config{})
	require.ErrorIs(t, err, metrics.ErrNoStore)
	var st *replication.Store
	_, err = metrics.New(metrics.Config{Store: st})
	require.ErrorIs(t, err, metrics.ErrNoStore, "a typed nil store")
	_, err = metrics.Register(nil, metrics.Config{Store: &fakeStore{}})
	require.Error(t, err)

	reg := prometheus.NewRegistry()
	_, err = metrics.Register(reg, metrics.Config{Store: &fakeStore{}})
	require.NoError(t, err)
	_, err = metrics.Register(reg, metrics.Config{Store: &fakeStore{}})
	require.Error(t, err, "registering twice on one registry")
	assert.Contains(t, err.Error(), "metrics: register")
}

// TestCollector_OptionalParts checks that a nil *cluster.Cluster and a nil
// *tcp.Transport leave their metrics out instead of panicking,
// and that roles are told apart without the local name.
func TestCollector_OptionalParts(t *testing.T) {
	var cl *cluster.Cluster
	var tr *tcp.Transport
	st := &fakeStore{
		parts: []replication.PartitionInfo{
			{Partition: 0, Owners: []string{"me", "p1"}, Owned: true, Complete: true, Sessions: 3},
			{Partition: 1, Owners: []string{"p1", "me"}, Owned: true, Complete: true, Sessions: 5},
			{Partition: 2, Owners: []string{"p1", "me"}, Owned: true, Sessions: 7},
			{Partition: 3, Owners: []string{"p1", "p2"}, Sessions: 11},
			{Partition: 4, Owners: []string{"p2", "p1"}},
		},
		peers: []replication.PeerInfo{{Name: "p1"}, {Name: "p2"}},
	}
	c, err := metrics.New(metrics.Config{Store: st, Cluster: cl, Transport: tr})
	require.NoError(t, err)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := scrape{}
	for _, mf := range mfs {
		got[mf.GetName()] = mf
		assert.False(t, strings.HasPrefix(mf.GetName(), "sessionmesh_cluster_"), mf.GetName())
		assert.False(t, strings.HasPrefix(mf.GetName(), "sessionmesh_transport_"), mf.GetName())
	}
	for role, want := range map[string][2]float64{
		"primary": {1, 3}, "backup": {1, 5}, "copying": {1, 7}, "handoff": {1, 11},
	} {
		assert.Equal(t, want[0], got.v(t, "sessionmesh_partitions", "role="+role), role)
		assert.Equal(t, want[1], got.v(t, "sessionmesh_sessions", "role="+role), role)
	}
	assert.Equal(t, -1.0, got.v(t, "sessionmesh_partitions_under_replicated"), "before the first round")
}

// TestCollector_Budget checks the fill level of the budget: the higher
// of the two ratios.
func TestCollector_Budget(t *testing.T) {
	for _, tc := range []struct {
		st   replication.Stats
		used float64
	}{
		{replication.Stats{Sessions: 50, MaxSessions: 100, Bytes: 3 << 20, MaxBytes: 4 << 20, Overloaded: 7}, 0.75},
		{replication.Stats{Sessions: 100, MaxSessions: 100, Bytes: 1 << 20}, 1},
		{replication.Stats{Sessions: 100, Bytes: 1 << 20}, 0},
	} {
		tc.st.Addr = "x"
		c, err := metrics.New(metrics.Config{Store: &fakeStore{stats: tc.st}})
		require.NoError(t, err)
		reg := prometheus.NewPedanticRegistry()
		require.NoError(t, reg.Register(c))
		mfs, err := reg.Gather()
		require.NoError(t, err)
		got := scrape{}
		for _, mf := range mfs {
			got[mf.GetName()] = mf
		}
		assert.InDelta(t, tc.used, got.v(t, "sessionmesh_budget_used_ratio"), 1e-9)
		assert.Equal(t, float64(tc.st.Bytes), got.v(t, "sessionmesh_session_bytes"))
		assert.Equal(t, float64(tc.st.MaxSessions), got.v(t, "sessionmesh_budget_sessions"))
		assert.Equal(t, float64(tc.st.MaxBytes), got.v(t, "sessionmesh_budget_bytes"))
		assert.Equal(t, float64(tc.st.Overloaded), got.v(t, "sessionmesh_sessions_refused_total"))
	}
}

// TestCollector_PeerStates drives peer health with a manual clock.
func TestCollector_PeerStates(t *testing.T) {
	now := time.Unix(1000, 0)
	st := &fakeStore{}
	c, err := metrics.New(metrics.Config{Store: st, PeerTimeout: 3 * time.Second, Now: func() time.Time { return now }})
	require.NoError(t, err)
	peers := func() (ok, degraded, unresponsive float64) {
		reg := prometheus.NewPedanticRegistry()
		require.NoError(t, reg.Register(c))
		mfs, err := reg.Gather()
		require.NoError(t, err)
		got := scrape{}
		for _, mf := range mfs {
			got[mf.GetName()] = mf
		}
		return got.v(t, "sessionmesh_peers", "state=ok"), got.v(t, "sessionmesh_peers", "state=degraded"),
			got.v(t, "sessionmesh_peers", "state=unresponsive")
	}

	// A peer that never answered yet is fine until PeerTimeout after it
	// was first seen.
	st.peers = []replication.PeerInfo{{Name: "a", Incarnation: 1}, {Name: "b", Incarnation: 1, Degraded: true}}
	ok, deg, unr := peers()
	assert.Equal(t, [3]float64{1, 1, 0}, [3]float64{ok, deg, unr})
	now = now.Add(4 * time.Second)
	ok, deg, unr = peers()
	assert.Equal(t, [3]float64{0, 0, 2}, [3]float64{ok, deg, unr}, "silent past the timeout")

	st.peers[0].LastStatus = now.Add(-time.Second)
	st.peers[1].LastStatus = now
	ok, deg, unr = peers()
	assert.Equal(t, [3]float64{1, 1, 0}, [3]float64{ok, deg, unr}, "answering again")

	// A new life of a peer starts its grace period again.
	st.peers = []replication.PeerInfo{{Name: "a", Incarnation: 2}}
	now = now.Add(10 * time.Second)
	ok, deg, unr = peers()
	assert.Equal(t, [3]float64{1, 0, 0}, [3]float64{ok, deg, unr})
}

// TestDoc_ListsEveryMetric keeps doc.go's list in step with the
// descriptors.
func TestDoc_ListsEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	c, err := metrics.New(metrics.Config{Store: &fakeStore{}})
	require.NoError(t, err)
	ch := make(chan *prometheus.Desc, 100)
	c.Describe(ch)
	close(ch)
	name := regexp.MustCompile(`fqName: "([^"]+)"`)
	n := 0
	for d := range ch {
		m := name.FindStringSubmatch(d.String())
		require.NotNil(t, m, d.String())
		assert.Regexp(t, `//\s+`+regexp.QuoteMeta(m[1])+`[{ ]`, string(doc), "doc.go does not list %s", m[1])
		n++
	}
	assert.Greater(t, n, 30)
}

// fakeStore is a static metrics.Store.
type fakeStore struct {
	parts []replication.PartitionInfo
	peers []replication.PeerInfo
	stats replication.Stats
}

func (f *fakeStore) Stats() replication.Stats {
	if f.stats.Addr == "" {
		return replication.Stats{UnderReplicated: -1}
	}
	return f.stats
}
func (f *fakeStore) Partitions() []replication.PartitionInfo { return f.parts }
func (f *fakeStore) Peers() []replication.PeerInfo           { return f.peers }
func (f *fakeStore) FullyReplicated() bool                   { return false }
func (f *fakeStore) Mode() replication.Mode                  { return replication.AllToAll }
func (f *fakeStore) WriteConcern() replication.WriteConcern  { return replication.Sync }
func (f *fakeStore) Health() error                           { return nil }

var quiet = slog.New(slog.DiscardHandler)
