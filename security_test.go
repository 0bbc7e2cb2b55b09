package sessionmesh_test

// Multi-node security tests: real gossip, real replication connections and
// real HTTP servers on 127.0.0.1, ports picked at run time.

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/internal/wire"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

// secNode is one complete node: gossip, replication transport, store, and
// an HTTP server with a small login application.
type secNode struct {
	name string
	cl   *cluster.Cluster
	tr   *tcp.Transport
	st   *replication.Store
	http *httptest.Server
}

type secOpts struct {
	name   string
	secret []byte // nil: no encryption
	label  string
	seeds  []string
}

func secLogger() *slog.Logger {
	if os.Getenv("SESSIONMESH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startSecNode starts a node; it is closed when the test ends.
func startSecNode(t *testing.T, o secOpts) *secNode {
	t.Helper()
	log := secLogger().With("test_node", o.name)
	tcfg := tcp.DefaultConfig("127.0.0.1:0")
	tcfg.SecretKey, tcfg.Label, tcfg.Logger = o.secret, o.label, log
	tcfg.HandshakeTimeout = 500 * time.Millisecond
	tr, err := tcp.Listen(tcfg)
	require.NoError(t, err)

	ccfg := cluster.DefaultLocalConfig()
	ccfg.NodeName = o.name
	ccfg.Seeds = o.seeds
	ccfg.SecretKey, ccfg.Label, ccfg.Logger = o.secret, o.label, log
	ccfg.Tags = map[string]string{sessionmesh.AddrTag: tr.Addr()}
	cl, err := cluster.New(ccfg)
	if err != nil {
		_ = tr.Close()
		require.NoError(t, err)
	}
	rcfg := replication.DefaultLocalConfig()
	rcfg.Membership, rcfg.Transport, rcfg.Logger = sessionmesh.Membership(cl), tr, log
	st, err := replication.New(rcfg)
	if err != nil {
		_ = tr.Close()
		_ = cl.Close()
		require.NoError(t, err)
	}
	sessions := httpsession.New(st)
	sessions.Cookie.Secure = false // plain HTTP in tests
	sessions.Logger = log
	srv := httptest.NewUnstartedServer(sessions.LoadAndSave(loginApp(sessions)))
	srv.Config.ReadHeaderTimeout = 500 * time.Millisecond
	srv.Config.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	srv.Start()
	n := &secNode{name: o.name, cl: cl, tr: tr, st: st, http: srv}
	t.Cleanup(n.close)
	return n
}

func (n *secNode) close() {
	n.http.Close()
	_ = n.st.Close()
	_ = n.cl.Close()
}

func (n *secNode) gossipAddr() string { return n.cl.LocalMember().Addr }

// loginApp is the application of the tests: log in, count visits.
func loginApp(m *httpsession.Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") != "demo" {
			http.Error(w, "wrong password", http.StatusUnauthorized)
			return
		}
		if err := m.RenewID(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := m.Put(r.Context(), "user", r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "0")
	})
	mux.HandleFunc("POST /visit", func(w http.ResponseWriter, r *http.Request) {
		if m.GetString(r.Context(), "user") == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		visits := m.GetInt(r.Context(), "visits") + 1
		if err := m.Put(r.Context(), "visits", visits); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, visits)
	})
	return mux
}

// browser is one user: a cookie jar shared by every node (cookies do not
// depend on the port).
type browser struct {
	client *http.Client
	visits int
}

func newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{client: &http.Client{Jar: jar, Timeout: 5 * time.Second}}
}

// post sends a form to node and returns the body of a 200 answer.
func (b *browser) post(n *secNode, path string, form url.Values) (string, error) {
	resp, err := b.client.PostForm(n.http.URL+path, form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: %s: %s", n.name, path, resp.Status, body)
	}
	return string(body), nil
}

// login logs the user in on n.
func (b *browser) login(n *secNode, user string) error {
	_, err := b.post(n, "/login", url.Values{"user": {user}, "password": {"demo"}})
	b.visits = 0
	return err
}

// visit counts a visit on n and checks that n saw every earlier visit,
// wherever it happened.
func (b *browser) visit(n *secNode) error {
	got, err := b.post(n, "/visit", nil)
	if err != nil {
		return err
	}
	b.visits++
	if got != strconv.Itoa(b.visits) {
		return fmt.Errorf("%s: visit %d counted as %s: a write was missing on this node", n.name, b.visits, got)
	}
	return nil
}

// traffic runs users that log in and visit the nodes round robin until
// stop is called, and records every failed request.
type traffic struct {
	requests atomic.Int64
	failures atomic.Int64
	mu       sync.Mutex
	first    []error // guards: the first failures
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func startTraffic(t *testing.T, users int, nodes ...*secNode) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{cancel: cancel}
	for u := range users {
		tr.wg.Go(func() {
			b := newBrowser()
			defer b.client.CloseIdleConnections()
			tr.record(b.login(nodes[u%len(nodes)], fmt.Sprint("user", u)))
			for i := u; ctx.Err() == nil; i++ {
				tr.record(b.visit(nodes[i%len(nodes)]))
			}
		})
	}
	t.Cleanup(tr.stop)
	return tr
}

func (tr *traffic) record(err error) {
	tr.requests.Add(1)
	if err == nil {
		return
	}
	tr.failures.Add(1)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.first) < 5 {
		tr.first = append(tr.first, err)
	}
}

func (tr *traffic) stop() {
	tr.cancel()
	tr.wg.Wait()
}

// wait waits for n more requests.
func (tr *traffic) wait(t *testing.T, n int64, what string) {
	t.Helper()
	target := tr.requests.Load() + n
	require.Eventually(t, func() bool { return tr.requests.Load() >= target }, 10*time.Second, time.Millisecond,
		"traffic stalled %s", what)
}

func (tr *traffic) requireNoFailures(t *testing.T) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	require.Zero(t, tr.failures.Load(), "failed requests out of %d; the first: %v", tr.requests.Load(), tr.first)
}

// waitCluster waits until every node sees exactly the others and every
// store is ready.
func waitCluster(t *testing.T, nodes ...*secNode) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if len(n.cl.Members()) != len(nodes) || !n.st.IsReady() || n.st.Stats().Peers != len(nodes)-1 {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "cluster of %d", len(nodes))
}

// newSecret returns a random cluster secret.
func newSecret() []byte {
	b := make([]byte, tcp.SecretKeySize)
	if _, err := crand.Read(b); err != nil {
		panic(err)
	}
	return b
}

// frameHeader returns the header of a frame: payload length, request ID
// and kind (internal/wire).
func frameHeader(n uint32, id uint64, kind byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, n)
	b = binary.BigEndian.AppendUint64(b, id)
	return append(b, kind)
}

// rawConn dials addr with plain TCP; the connection is closed when the test
// ends.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requireClosedByPeer reads from c until the peer closes it; it fails if
// the connection stays open for seconds.
func requireClosedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := io.Copy(io.Discard, c)
	if err != nil {
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "connection still open: %v", err)
	}
}

// put returns changes that set the given key/value pairs.
func put(kv ...string) replication.Changes {
	c := replication.Changes{Set: map[string][]byte{}, Lifetime: time.Hour}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Set[kv[i]] = []byte(kv[i+1])
	}
	return c
}

// staticMembership makes a store believe that peers are its members.
type staticMembership struct {
	self  replication.Member
	peers []replication.Member
}

func (m staticMembership) LocalMember() replication.Member { return m.self }
func (m staticMembership) Members() []replication.Member {
	return append([]replication.Member{m.self}, m.peers...)
}
func (m staticMembership) Settled() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}
func (m staticMembership) Notify(chan<- struct{})     {}
func (m staticMembership) StopNotify(chan<- struct{}) {}

// TestSecurity_NodeWithoutTheSecretIsShutOut starts nodes with a wrong
// secret, or none, next to a running cluster: they cannot join, a store
// that is told the cluster's addresses can neither read nor write a
// session through them, and the cluster serves on without a failure.
func TestSecurity_NodeWithoutTheSecretIsShutOut(t *testing.T) {
	secret := newSecret()
	a := startSecNode(t, secOpts{name: "a", secret: secret, label: "prod"})
	b := startSecNode(t, secOpts{name: "b", secret: secret, label: "prod", seeds: []string{a.gossipAddr()}})
	waitCluster(t, a, b)
	tr := startTraffic(t, 4, a, b)
	tr.wait(t, 50, "before the intruders")

	// A session of the cluster the intruders are after.
	victim := newBrowser()
	require.NoError(t, victim.login(a, "victim"))
	victimID := cookieOf(t, victim, a)

	for _, tc := range []struct {
		name   string
		secret []byte
	}{{"wrong secret", newSecret()}, {"no secret", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			x := startSecNode(t, secOpts{name: "intruder", secret: tc.secret, label: "prod", seeds: []string{a.gossipAddr(), b.gossipAddr()}})
			require.Eventually(t, func() bool { return x.cl.Stats().JoinFailures >= 4 }, 10*time.Second, 5*time.Millisecond,
				"join attempts")
			assert.Len(t, x.cl.Members(), 1, "the intruder joined")
			assert.Len(t, a.cl.Members(), 2)
			assert.Len(t, b.cl.Members(), 2)

			// A store pointed straight at the cluster's replication ports.
			failedBefore := a.tr.Stats().HandshakeFailures + b.tr.Stats().HandshakeFailures
			spyTr, err := tcp.Listen(tcp.Config{BindAddr: "127.0.0.1:0", SecretKey: tc.secret, Label: "prod"})
			require.NoError(t, err)
			cfg := replication.DefaultLocalConfig()
			cfg.Transport, cfg.Logger = spyTr, secLogger()
			cfg.Membership = staticMembership{
				self: replication.Member{Name: "spy", Incarnation: 1, Addr: spyTr.Addr()},
				peers: []replication.Member{
					{Name: "a", Incarnation: a.cl.LocalMember().Incarnation, Addr: a.tr.Addr()},
					{Name: "b", Incarnation: b.cl.LocalMember().Incarnation, Addr: b.tr.Addr()},
				},
			}
			spy, err := replication.New(cfg)
			require.NoError(t, err)
			defer spy.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, found, err := spy.Get(ctx, victimID)
			assert.False(t, found && err == nil, "the spy read the victim's session")
			_, _ = spy.Save(ctx, "injected-session", put("user", "admin"))
			_, _ = spy.Save(ctx, victimID, put("user", "admin"))
			resp, err := spyTr.Call(ctx, a.tr.Addr(), []byte("anything"))
			assert.ErrorIs(t, err, replication.ErrUnreachable, "answer %q", resp)
			require.Eventually(t, func() bool {
				return a.tr.Stats().HandshakeFailures+b.tr.Stats().HandshakeFailures > failedBefore
			}, 5*time.Second, 5*time.Millisecond, "refused handshakes")

			for _, n := range []*secNode{a, b} {
				_, ok, err := n.st.Get(ctx, "injected-session")
				require.NoError(t, err)
				assert.False(t, ok, "%s holds the injected session", n.name)
				s, ok, err := n.st.Get(ctx, victimID)
				require.NoError(t, err)
				require.True(t, ok)
				user, _ := s.Value("user")
				assert.NotContains(t, string(user), "admin", "%s: the victim's session was overwritten", n.name)
			}
			tr.wait(t, 50, "with an intruder around")
		})
	}
	tr.stop()
	tr.requireNoFailures(t)
}

// cookieOf returns the session ID the browser holds for n.
func cookieOf(t *testing.T, b *browser, n *secNode) string {
	t.Helper()
	u, err := url.Parse(n.http.URL)
	require.NoError(t, err)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == "session" {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// TestSecurity_HostileClientsOnEveryPort connects raw TCP clients that send
// garbage, truncated frames, a 4 GiB length prefix, valid-looking frames
// without authentication, or nothing, to every TCP port of a node (gossip,
// replication, HTTP), and floods its gossip UDP port. Each connection is
// closed by the node, the node allocates little for it, and it keeps
// serving: its cluster stays whole and users' requests succeed.
func TestSecurity_HostileClientsOnEveryPort(t *testing.T) {
	secret := newSecret()
	n := startSecNode(t, secOpts{name: "target", secret: secret, label: "prod"})
	peer := startSecNode(t, secOpts{name: "peer", secret: secret, label: "prod", seeds: []string{n.gossipAddr()}})
	waitCluster(t, n, peer)
	user := newBrowser()
	require.NoError(t, user.login(n, "ann"))
	serves := func(t *testing.T) {
		t.Helper()
		require.NoError(t, user.visit(n))
		require.NoError(t, user.visit(peer))
	}

	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	gossipLabel := append([]byte{244, 4}, "prod"...) // memberlist's label header
	plain := wire.AppendPreface(nil, wire.Preface{Security: wire.SecurityNone, Label: "prod"})
	secretPreface := wire.AppendPreface(nil, wire.Preface{Security: wire.SecuritySecret, Label: "prod"})
	httpHost := strings.TrimPrefix(n.http.URL, "http://")

	type input struct {
		name  string
		bytes []byte
		// closeWrite half-closes after the input; otherwise the client
		// stays silent and a timeout must end the connection.
		closeWrite bool
	}
	ports := []struct {
		name   string
		addr   string
		inputs []input
	}{
		{"replication", n.tr.Addr(), []input{
			{"garbage", garbage, false},
			{"nothing", nil, false},
			{"truncated preface", secretPreface[:len(secretPreface)-2], true},
			{"truncated frame", append(append(bytes.Clone(plain), frameHeader(100, 1, wire.KindRequest)...), "short"...), true},
			{"4 GiB length prefix", append(bytes.Clone(plain), frameHeader(0xFFFFFFFF, 1, wire.KindRequest)...), false},
			{"valid frames without authentication", wire.AppendFrame(bytes.Clone(plain), 1, wire.KindRequest, []byte{2, 0x90}), false},
			{"valid frames without TLS", wire.AppendFrame(bytes.Clone(secretPreface), 1, wire.KindRequest, []byte{2, 0x90}), false},
			{"TLS garbage after the right preface", append(bytes.Clone(secretPreface), garbage...), false},
			{"a TLS record announcing 64 KiB", append(bytes.Clone(secretPreface), 0x16, 0x03, 0x01, 0xff, 0xff), false},
		}},
		{"gossip TCP", n.gossipAddr(), []input{
			{"garbage", garbage, false},
			{"nothing", nil, false},
			{"truncated stream", append(bytes.Clone(gossipLabel), 10, 0, 0, 1, 0, 1, 2, 3), true},
			{"4 GiB length prefix", append(append(bytes.Clone(gossipLabel), 10), u32(0xFFFFFFFF)...), false},
			{"valid-looking push/pull without encryption", append(bytes.Clone(gossipLabel), 6, 0x84, 0xa5, 'N', 'o', 'd', 'e', 's', 0x90), false},
		}},
		{"HTTP", httpHost, []input{
			{"garbage", garbage, false},
			{"nothing", nil, false},
			{"truncated request", []byte("POST /login HTTP/1.1\r\nHost: x\r\nContent-Le"), true},
			{"4 GiB body", []byte("POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4294967296\r\n\r\nuser=a&password=demo"), true},
			{"4 GiB length prefix", append(u32(0xFFFFFFFF), garbage[:64]...), false},
		}},
	}
	for _, port := range ports {
		for _, in := range port.inputs {
			t.Run(port.name+"/"+in.name, func(t *testing.T) {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				c := rawConn(t, port.addr)
				if len(in.bytes) > 0 {
					_, err := c.Write(in.bytes)
					require.NoError(t, err)
				}
				if in.closeWrite {
					// The node may have closed the connection already.
					_ = c.(*net.TCPConn).CloseWrite()
				}
				requireClosedByPeer(t, c)
				runtime.ReadMemStats(&after)
				assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "memory allocated for a hostile client")
				serves(t)
			})
		}
	}

	t.Run("gossip UDP", func(t *testing.T) {
		udp, err := net.Dial("udp", n.gossipAddr())
		require.NoError(t, err)
		defer udp.Close()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range 200 {
			var pkt []byte
			switch i % 4 {
			case 0:
				pkt = garbage[:1+rng.IntN(len(garbage)-1)]
			case 1:
				pkt = append(bytes.Clone(gossipLabel), garbage[:100]...) // right label, not encrypted
			case 2:
				pkt = append(append(bytes.Clone(gossipLabel), 10), u32(0xFFFFFFFF)...)
			case 3:
				pkt = []byte{0} // a ping without body
			}
			_, _ = udp.Write(pkt)
		}
		serves(t)
		runtime.ReadMemStats(&after)
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(16<<20), "memory allocated for hostile packets")
	})

	// The cluster stayed whole, and nobody got in.
	waitCluster(t, n, peer)
	assert.Equal(t, uint64(1), n.tr.Stats().Accepted, "only the peer's connection was accepted")
	assert.Equal(t, 1, n.st.Stats().Sessions, "sessions: the user's and nothing else")
}

// TestSecurity_RotateKeyUnderTraffic rotates the cluster secret of a
// running 3-node cluster, gossip and replication, while users log in and
// visit the nodes round robin: no request fails and no visit is lost. At
// the end a node with the old secret is shut out.
func TestSecurity_RotateKeyUnderTraffic(t *testing.T) {
	oldKey, newKey := newSecret(), newSecret()
	a := startSecNode(t, secOpts{name: "a", secret: oldKey, label: "prod"})
	seeds := []string{a.gossipAddr()}
	b := startSecNode(t, secOpts{name: "b", secret: oldKey, label: "prod", seeds: seeds})
	c := startSecNode(t, secOpts{name: "c", secret: oldKey, label: "prod", seeds: seeds})
	nodes := []*secNode{a, b, c}
	waitCluster(t, nodes...)
	tr := startTraffic(t, 6, nodes...)
	tr.wait(t, 100, "before the rotation")

	for _, step := range []struct {
		name string
		f    func(n *secNode) error
	}{
		{"install", func(n *secNode) error { return errors.Join(n.cl.InstallKey(newKey), n.tr.InstallKey(newKey)) }},
		{"use", func(n *secNode) error { return errors.Join(n.cl.UseKey(newKey), n.tr.UseKey(newKey)) }},
		{"remove", func(n *secNode) error { return errors.Join(n.cl.RemoveKey(oldKey), n.tr.RemoveKey(oldKey)) }},
	} {
		for _, n := range nodes {
			require.NoError(t, step.f(n), "%s on %s", step.name, n.name)
			tr.wait(t, 20, "after "+step.name+" on "+n.name)
		}
		tr.wait(t, 100, "after "+step.name)
	}
	tr.stop()
	tr.requireNoFailures(t)
	t.Logf("%d requests during the rotation", tr.requests.Load())

	var retired uint64
	for _, n := range nodes {
		assert.Equal(t, [][]byte{newKey}, n.cl.Keys())
		assert.Equal(t, [][]byte{newKey}, n.tr.Keys())
		retired += n.tr.Stats().RetiredConns
		assert.Len(t, n.cl.Members(), 3)
	}
	assert.NotZero(t, retired, "connections of the old key were retired")

	stale := startSecNode(t, secOpts{name: "stale", secret: oldKey, label: "prod", seeds: seeds})
	require.Eventually(t, func() bool { return stale.cl.Stats().JoinFailures >= 2 }, 10*time.Second, 5*time.Millisecond)
	assert.Len(t, stale.cl.Members(), 1)
	_, err := stale.tr.Call(context.Background(), a.tr.Addr(), []byte("x"))
	assert.ErrorIs(t, err, replication.ErrUnreachable)
}
