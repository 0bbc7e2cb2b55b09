package status_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/internal/testing/leaktest"
	"github.com/sessionmesh/sessionmesh/internal/testing/meshtest"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/replication/status"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

func get(t testing.TB, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(body)
}

func report(t testing.TB, url string) status.Report {
	t.Helper()
	resp, body := get(t, url+"?format=json")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var r status.Report
	require.NoError(t, json.Unmarshal([]byte(body), &r))
	return r
}

func names(ms []status.MemberReport) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

// TestHandler_ThreeNodes serves the page of a real 3-node cluster and
// watches a killed node go from the members to the departed.
func TestHandler_ThreeNodes(t *testing.T) {
	nodes := meshtest.Start(t, 3, meshtest.Options{Store: func(_ string, cfg *replication.Config) {
		cfg.Mode = replication.Backups(1)
		cfg.MaxSessions = 1000
	}})
	srv := httptest.NewServer(status.Handler(nodes[0].Store, nodes[0].Cluster))
	defer srv.Close()
	for i := range 30 {
		_, err := nodes[i%3].Store.Save(context.Background(), "s"+string(rune('a'+i)), replication.Changes{
			Set: map[string][]byte{"k": []byte("v")}, Lifetime: time.Hour,
		})
		require.NoError(t, err)
	}

	resp, page := get(t, srv.URL)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, page, `"name":"n3"`, "the initial report is in the page")

	// Peers' numbers come from their last answer to a status poll: wait
	// for one after the writes.
	var r status.Report
	require.Eventually(t, func() bool {
		r = report(t, srv.URL)
		sessions := 0
		for _, m := range r.Members {
			sessions += m.Sessions
		}
		return r.FullyReplicated && r.UnderReplicated == 0 && sessions == 60
	}, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, "n1", r.Node)
	assert.Equal(t, "backups(1)", r.Mode)
	assert.Equal(t, "sync", r.WriteConcern)
	assert.True(t, r.Ready)
	assert.Equal(t, 1000, r.MaxSessions, "the budget")
	assert.Positive(t, r.MaxBytes, "the default byte budget")
	assert.Positive(t, r.Bytes, "the fill level")
	require.Equal(t, []string{"n1", "n2", "n3"}, names(r.Members))
	require.Len(t, r.Partitions, replication.Partitions)
	var primaries, owned int
	for _, m := range r.Members {
		assert.Equal(t, "alive", m.State, m.Name)
		assert.Equal(t, m.Name == "n1", m.Self)
		assert.NotEmpty(t, m.Addr)
		assert.NotEmpty(t, m.ReplAddr)
		assert.False(t, m.Started.IsZero())
		primaries += m.Primary
		owned += m.Owned
		if !m.Self {
			assert.False(t, m.LastStatus.IsZero(), "%s answered a status poll", m.Name)
		}
	}
	assert.Equal(t, replication.Partitions, primaries)
	assert.Equal(t, 2*replication.Partitions, owned)
	for i, p := range r.Partitions {
		assert.Len(t, p.Owners, 2, "partition %d", i)
	}
	assert.Empty(t, r.Departed)

	// The page of the crashed node's peer keeps answering at once, and the
	// node moves to the departed once failure detection has noticed.
	nodes[2].Kill()
	require.Eventually(t, func() bool {
		r = report(t, srv.URL)
		return slices.Equal(names(r.Members), []string{"n1", "n2"}) && len(r.Departed) == 1
	}, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, "n3", r.Departed[0].Name)
	assert.NotEmpty(t, r.Departed[0].Addr)
	require.Eventually(t, func() bool {
		r = report(t, srv.URL)
		return r.FullyReplicated && r.UnderReplicated == 0
	}, 20*time.Second, 20*time.Millisecond, "re-replicated")
	for _, p := range r.Partitions {
		assert.NotContains(t, p.Owners, "n3")
	}
}

// TestHandler_Escaping checks that hostile names and addresses reach the
// page only as escaped JSON data.
func TestHandler_Escaping(t *testing.T) {
	evil := `</script><script>alert(1)</script><img src=x onerror=alert(2)>&`
	cl := &fakeCluster{
		self:    cluster.Member{Name: "n1", Addr: "127.0.0.1:1", State: cluster.StateAlive},
		members: []cluster.Member{{Name: evil, Addr: evil, State: cluster.StateAlive}},
	}
	st := &fakeStore{
		parts: []replication.PartitionInfo{{Owners: []string{evil, "n1"}, Owned: true, Complete: true}},
		peers: []replication.PeerInfo{{Name: evil, Addr: evil}},
	}
	srv := httptest.NewServer(status.Handler(st, cl))
	defer srv.Close()

	resp, page := get(t, srv.URL)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotContains(t, page, "alert(1)</script>")
	assert.NotContains(t, page, "<img")
	assert.Equal(t, 2, strings.Count(page, "<script"), "the JSON block and the page's script only")
	assert.Contains(t, page, `\u003c/script\u003e\u003cscript\u003ealert(1)`)

	// The JSON round-trips the name intact.
	r := report(t, srv.URL)
	assert.Contains(t, names(r.Members), evil)
}

// TestHandler_Headers checks the content security policy: it allows the
// page's own script and style by hash, and nothing else.
func TestHandler_Headers(t *testing.T) {
	srv := httptest.NewServer(status.Handler(&fakeStore{}, &fakeCluster{self: cluster.Member{Name: "n1"}}))
	defer srv.Close()
	resp, page := get(t, srv.URL+"/any/prefix")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	csp := resp.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "default-src 'none'")
	assert.Contains(t, csp, "connect-src 'self'")
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	assert.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))

	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	script := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindStringSubmatch(page)
	require.NotNil(t, script)
	assert.Contains(t, csp, "script-src "+hash(script[1]))
	style := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(page)
	require.NotNil(t, style)
	assert.Contains(t, csp, "style-src "+hash(style[1]))
	assert.NotRegexp(t, `(?i)(src|href)="https?:`, page, "no external assets")

	// JSON by Accept header, not for browsers.
	resp, body := get(t, srv.URL, "Accept", "application/json")
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.True(t, json.Valid([]byte(body)))
	resp, _ = get(t, srv.URL, "Accept", "text/html,application/json;q=0.9")
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))

	post, err := http.Post(srv.URL, "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	post.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, post.StatusCode)
	assert.Equal(t, "GET, HEAD", post.Header.Get("Allow"))
}

// TestHandler_Report checks the report's arithmetic on a static node.
func TestHandler_Report(t *testing.T) {
	cl := &fakeCluster{
		self: cluster.Member{Name: "b", Addr: "10.0.0.2:7946", Incarnation: uint64(time.Unix(100, 0).UnixNano())},
		members: []cluster.Member{
			{Name: "c", Addr: "10.0.0.3:7946"},
			{Name: "a", Addr: "10.0.0.1:7946"}, // no replication address
		},
	}
	cl.members = append(cl.members, cl.self)
	last := time.Unix(200, 0)
	st := &fakeStore{
		stats: replication.Stats{Addr: "10.0.0.2:7947", Sessions: 12, ReadyPartitions: 1, UnderReplicated: 1, DegradedPeers: 1, Ready: true},
		parts: []replication.PartitionInfo{
			{Owners: []string{"b", "c"}, Owned: true, Complete: true, Sessions: 5},
			{Owners: []string{"c", "b"}, Owned: true, Sessions: 7},
			{Owners: []string{"c", "d"}},
		},
		peers: []replication.PeerInfo{
			{Name: "c", Addr: "10.0.0.3:7947", Degraded: true, LastStatus: last, CompletePartitions: 2, Sessions: 9},
			{Name: "d", Addr: "10.0.0.4:7947", CompletePartitions: 1, Sessions: 3}, // no longer a member
		},
		mode: replication.Backups(1),
	}
	srv := httptest.NewServer(status.Handler(st, cl))
	defer srv.Close()
	r := report(t, srv.URL)
	assert.Equal(t, "b", r.Node)
	assert.Equal(t, 12, r.Sessions)
	assert.Equal(t, 1, r.UnderReplicated)
	assert.Equal(t, 1, r.DegradedPeers)
	assert.False(t, r.FullyReplicated)
	require.Equal(t, []string{"a", "b", "c"}, names(r.Members), "d is no longer a member")
	a, b, c := r.Members[0], r.Members[1], r.Members[2]
	assert.Equal(t, status.MemberReport{Name: "a", Addr: "10.0.0.1:7946", State: "alive"}, a)
	assert.True(t, b.Self)
	assert.Equal(t, "10.0.0.2:7947", b.ReplAddr)
	assert.Equal(t, "10.0.0.3:7947", c.ReplAddr)
	assert.Equal(t, time.Unix(100, 0).UTC(), b.Started)
	assert.Equal(t, [4]int{1, 2, 1, 12}, [4]int{b.Primary, b.Owned, b.Complete, b.Sessions})
	assert.True(t, c.Degraded)
	assert.True(t, c.LastStatus.Equal(last))
	assert.Equal(t, [4]int{2, 3, 2, 9}, [4]int{c.Primary, c.Owned, c.Complete, c.Sessions})
	assert.Equal(t, []status.PartitionReport{
		{Owners: []string{"b", "c"}, Owned: true, Complete: true, Sessions: 5},
		{Owners: []string{"c", "b"}, Owned: true, Sessions: 7},
		{Owners: []string{"c", "d"}},
	}, r.Partitions)
	assert.NotNil(t, r.Departed)
}

func TestHandler_PanicsWithoutStore(t *testing.T) {
	assert.Panics(t, func() { status.Handler(nil, &fakeCluster{}) })
	assert.Panics(t, func() { status.Handler(&fakeStore{}, nil) })
}

type fakeCluster struct {
	self    cluster.Member
	members []cluster.Member
}

func (f *fakeCluster) LocalMember() cluster.Member { return f.self }
func (f *fakeCluster) Members() []cluster.Member   { return slices.Clone(f.members) }

type fakeStore struct {
	stats replication.Stats
	parts []replication.PartitionInfo
	peers []replication.PeerInfo
	mode  replication.Mode
}

func (f *fakeStore) Stats() replication.Stats                { return f.stats }
func (f *fakeStore) Partitions() []replication.PartitionInfo { return f.parts }
func (f *fakeStore) Peers() []replication.PeerInfo           { return f.peers }
func (f *fakeStore) FullyReplicated() bool                   { return f.stats.UnderReplicated == 0 }
func (f *fakeStore) Mode() replication.Mode                  { return f.mode }
func (f *fakeStore) WriteConcern() replication.WriteConcern  { return replication.Sync }
