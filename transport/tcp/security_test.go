package tcp_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/wire"
	"github.com/sessionmesh/sessionmesh/transport"
	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

// newSecret returns a random cluster secret.
func newSecret() []byte {
	b := make([]byte, tcp.SecretKeySize)
	_, _ = rand.Read(b)
	return b
}

// withSecret configures a transport with a cluster secret, a label and
// quick timeouts.
func withSecret(secret []byte, label string, secondary ...[]byte) func(*tcp.Config) {
	return func(c *tcp.Config) {
		c.SecretKey = secret
		c.SecondaryKeys = secondary
		c.Label = label
		c.HandshakeTimeout = time.Second
		// Retired connections a peer keeps using are closed after this;
		// it must stay well under waitFor's 5 s on a loaded machine.
		c.DrainTimeout = time.Second
	}
}

// recordingProxy forwards TCP connections to target and records every byte
// that passes in either direction.
type recordingProxy struct {
	ln  net.Listener
	mu  sync.Mutex
	buf bytes.Buffer // guards: all bytes seen
	wg  sync.WaitGroup
}

func newRecordingProxy(t *testing.T, target string) *recordingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &recordingProxy{ln: ln}
	var conns sync.Map
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			conns.Store(c, u)
			for _, pair := range [][2]net.Conn{{c, u}, {u, c}} {
				p.wg.Go(func() {
					// Record before forwarding: bytes are then recorded
					// in the order they crossed, since an answer can only
					// follow what it answers.
					_, _ = io.Copy(io.MultiWriter(p, pair[1]), pair[0])
					_ = pair[1].Close()
				})
			}
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		conns.Range(func(c, u any) bool { _ = c.(net.Conn).Close(); _ = u.(net.Conn).Close(); return true })
		p.wg.Wait()
	})
	return p
}

func (p *recordingProxy) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.Write(b)
}

func (p *recordingProxy) seen() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.buf.Bytes())
}

func TestTransport_SecretKeyAuthenticatesAndEncrypts(t *testing.T) {
	secret := newSecret()
	a := listenTCP(t, withSecret(secret, "prod"))
	b := listenTCP(t, withSecret(secret, "prod"))
	b.Serve(echo)
	proxy := newRecordingProxy(t, b.Addr())

	secretText := []byte("user=ann; password-hash=0123456789abcdef")
	resp, err := a.Call(context.Background(), proxy.ln.Addr().String(), secretText)
	require.NoError(t, err)
	assert.Equal(t, secretText, resp)

	seen := proxy.seen()
	assert.True(t, bytes.HasPrefix(seen, []byte("SMSH\x02\x01\x04prod")), "clear-text preface announcing the cluster secret")
	assert.False(t, bytes.Contains(seen, secretText), "the request crossed the network in clear text")
	assert.False(t, bytes.Contains(seen, secret), "the secret crossed the network")
	assert.Equal(t, uint64(1), b.Stats().Accepted)
	assert.Zero(t, b.Stats().HandshakeFailures)
}

func TestTransport_RefusesPeersWithoutTheSecret(t *testing.T) {
	secret := newSecret()
	ca := newTestCA(t)
	tests := []struct {
		name   string
		client func(*tcp.Config)
	}{
		{"wrong secret", withSecret(newSecret(), "prod")},
		{"no secret", func(c *tcp.Config) { c.Label = "prod" }},
		{"right secret, other label", withSecret(secret, "staging")},
		{"right secret, no label", withSecret(secret, "")},
		{"TLS certificates", func(c *tcp.Config) { c.TLSConfig = ca.config(t); c.Label = "prod" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var handled atomic.Int64
			srv := listenTCP(t, withSecret(secret, "prod"))
			srv.Serve(func(req []byte) []byte { handled.Add(1); return echo(req) })
			intruder := listenTCP(t, tt.client)
			intruder.Serve(echo)

			_, err := intruder.Call(context.Background(), srv.Addr(), []byte("get session"))
			require.ErrorIs(t, err, transport.ErrUnreachable)
			require.ErrorIs(t, err, transport.ErrHandshake, "a live peer refusing is not silence")
			require.ErrorIs(t, err, transport.ErrNotSent)
			require.NotErrorIs(t, err, transport.ErrRefused, "the peer is not gone")
			waitFor(t, func() bool { return srv.Stats().HandshakeFailures == 1 }, "the server counts the refused handshake")
			assert.Zero(t, handled.Load(), "a request of an unauthenticated peer reached the handler")
			assert.Zero(t, srv.Stats().Accepted)

			// Nor can the server be tricked into talking to it.
			_, err = srv.Call(context.Background(), intruder.Addr(), []byte("apply session"))
			require.ErrorIs(t, err, transport.ErrUnreachable)
			require.ErrorIs(t, err, transport.ErrHandshake)
		})
	}
}

// TestTransport_ExplainsRefusals checks that a dialer refused for its
// preface learns why, in every security mode, and that the acceptor logs a
// peer that keeps trying the same way once, not once per attempt.
func TestTransport_ExplainsRefusals(t *testing.T) {
	secret := newSecret()
	tests := []struct {
		name           string
		server, client func(*tcp.Config)
		reason         string
	}{
		{"clear text, other label",
			func(c *tcp.Config) { c.Label = "prod" }, func(c *tcp.Config) { c.Label = "staging" }, `labelled "staging"`},
		{"secret, other label", withSecret(secret, "prod"), withSecret(secret, "staging"), `labelled "staging"`},
		{"secret against clear text", func(c *tcp.Config) {}, withSecret(secret, ""), "security is cluster secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			srv := listenTCP(t, func(c *tcp.Config) {
				tt.server(c)
				c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			})
			srv.Serve(echo)
			for i := range 3 { // a new dialer each time: every attempt reaches the server
				cl := listenTCP(t, tt.client)
				_, err := cl.Call(context.Background(), srv.Addr(), []byte("hello"))
				require.ErrorIs(t, err, transport.ErrHandshake, "attempt %d", i)
				assert.ErrorContains(t, err, tt.reason, "the refusal says why")
				assert.ErrorContains(t, err, "refused by "+srv.Addr())
				require.NoError(t, cl.Close())
			}
			waitFor(t, func() bool { return srv.Stats().HandshakeFailures == 3 }, "the server counts every refusal")
			assert.Equal(t, 1, strings.Count(logs.String(), "inbound handshake failed"), "one WARN line for three refusals:\n%s", logs.String())
		})
	}

	t.Run("another protocol version", func(t *testing.T) {
		srv := listenTCP(t, func(c *tcp.Config) {})
		srv.Serve(echo)
		nc, err := net.Dial("tcp", srv.Addr())
		require.NoError(t, err)
		defer nc.Close()
		_, err = nc.Write([]byte("SMSH\x09\x00\x00"))
		require.NoError(t, err)
		require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
		reason, err := wire.ReadRefusal(nil, nc)
		require.NoError(t, err)
		assert.Contains(t, reason, "unsupported protocol version 9")
	})
}

// TestTransport_RotateKeysUnderLoad rotates the secret of three
// transports that call each other without pause: no call may fail, and at
// the end only the new key opens a connection.
func TestTransport_RotateKeysUnderLoad(t *testing.T) {
	oldKey, newKey := newSecret(), newSecret()
	nodes := make([]*tcp.Transport, 3)
	for i := range nodes {
		nodes[i] = listenTCP(t, withSecret(oldKey, "prod"))
		nodes[i].Serve(echo)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var calls, failed atomic.Int64
	var firstErr atomic.Value
	for i, from := range nodes {
		for j, to := range nodes {
			if i == j {
				continue
			}
			wg.Go(func() {
				for k := 0; ctx.Err() == nil; k++ {
					msg := fmt.Appendf(nil, "%d->%d #%d", i, j, k)
					resp, err := from.Call(context.Background(), to.Addr(), msg)
					calls.Add(1)
					if err != nil || !bytes.Equal(resp, msg) {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", msg, err))
					}
				}
			})
		}
	}
	step := func(name string, f func(*tcp.Transport) error) {
		t.Helper()
		for _, n := range nodes {
			require.NoError(t, f(n), name)
		}
		// Let traffic run on the new state before the next step.
		target := calls.Load() + 200
		waitFor(t, func() bool { return calls.Load() >= target }, "traffic after "+name)
	}
	target := int64(200)
	waitFor(t, func() bool { return calls.Load() >= target }, "traffic before the rotation")
	step("install", func(n *tcp.Transport) error { return n.InstallKey(newKey) })
	step("use", func(n *tcp.Transport) error { return n.UseKey(newKey) })
	step("remove", func(n *tcp.Transport) error { return n.RemoveKey(oldKey) })
	cancel()
	wg.Wait()
	require.Zero(t, failed.Load(), "failed calls during the rotation; the first: %v", firstErr.Load())

	var retired uint64
	for _, n := range nodes {
		assert.Equal(t, [][]byte{newKey}, n.Keys())
		retired += n.Stats().RetiredConns
	}
	assert.NotZero(t, retired, "connections authenticated by the old key were retired")
	waitFor(t, func() bool {
		open := 0
		for _, n := range nodes {
			open += n.Stats().OpenConns
		}
		return open == 2*6 // each of the 6 directed pairs: one outbound and one inbound connection
	}, "retired connections closed")

	stale := listenTCP(t, withSecret(oldKey, "prod"))
	_, err := stale.Call(context.Background(), nodes[0].Addr(), []byte("hi"))
	require.ErrorIs(t, err, transport.ErrUnreachable, "the removed key still opens connections")
}

// TestTransport_RemoveKeyRetiresInboundConnections removes a key on the
// accepting side only: the dialer is told to move to a new connection, and
// its calls go on without a failure.
func TestTransport_RemoveKeyRetiresInboundConnections(t *testing.T) {
	oldKey, newKey := newSecret(), newSecret()
	a := listenTCP(t, withSecret(oldKey, "", newKey))
	b := listenTCP(t, withSecret(oldKey, "", newKey))
	b.Serve(echo)
	ctx := context.Background()
	_, err := a.Call(ctx, b.Addr(), []byte("on the old key"))
	require.NoError(t, err)

	require.NoError(t, a.UseKey(newKey))
	require.NoError(t, b.UseKey(newKey))
	require.NoError(t, b.RemoveKey(oldKey))
	waitFor(t, func() bool { return a.Stats().RetiredConns == 1 }, "a receives the go-away and retires its connection")
	resp, err := a.Call(ctx, b.Addr(), []byte("on the new key"))
	require.NoError(t, err)
	assert.Equal(t, "on the new key", string(resp))
	assert.Equal(t, uint64(2), a.Stats().Dials)
	waitFor(t, func() bool { return b.Stats().OpenConns == 1 && a.Stats().OpenConns == 1 }, "the retired connection is closed")
	assert.Zero(t, a.Stats().ConnFailures)
	assert.Equal(t, uint64(1), b.Stats().RetiredConns)
}

func TestTransport_KeyManagement(t *testing.T) {
	k1, k2, k3 := newSecret(), newSecret(), newSecret()
	tr := listenTCP(t, withSecret(k1, "", k2))
	assert.Equal(t, [][]byte{k1, k2}, tr.Keys())
	require.NoError(t, tr.InstallKey(k3))
	require.NoError(t, tr.InstallKey(k3), "installing twice is harmless")
	assert.Equal(t, [][]byte{k1, k2, k3}, tr.Keys())
	require.NoError(t, tr.UseKey(k3))
	assert.Equal(t, [][]byte{k3, k1, k2}, tr.Keys())
	assert.ErrorIs(t, tr.UseKey(newSecret()), tcp.ErrUnknownKey)
	assert.ErrorIs(t, tr.RemoveKey(k3), tcp.ErrPrimaryKey)
	require.NoError(t, tr.RemoveKey(k1))
	require.NoError(t, tr.RemoveKey(k1), "removing twice is harmless")
	assert.Equal(t, [][]byte{k3, k2}, tr.Keys())
	assert.ErrorContains(t, tr.InstallKey([]byte("short")), "want 16, 24 or 32")
	short := bytes.Repeat([]byte{7}, 16)
	require.NoError(t, tr.InstallKey(short), "16 bytes, like the gossip keyring")
	require.NoError(t, tr.RemoveKey(short))
	keys := tr.Keys()
	keys[0][0]++
	assert.Equal(t, k3, tr.Keys()[0], "Keys returns copies")

	plain := listenTCP(t, nil)
	assert.ErrorIs(t, plain.InstallKey(k1), tcp.ErrNoKeyring)
	assert.ErrorIs(t, plain.UseKey(k1), tcp.ErrNoKeyring)
	assert.ErrorIs(t, plain.RemoveKey(k1), tcp.ErrNoKeyring)
	assert.Nil(t, plain.Keys())
}

func TestListenTCP_SecurityConfig(t *testing.T) {
	ca := newTestCA(t)
	for name, tt := range map[string]struct {
		cfg  tcp.Config
		want string
	}{
		"short secret":        {tcp.Config{SecretKey: []byte("short")}, "SecretKey: secret key is 5 bytes"},
		"short secondary":     {tcp.Config{SecretKey: newSecret(), SecondaryKeys: [][]byte{{1}}}, "SecondaryKeys[0]: secret key is 1 bytes"},
		"secondary alone":     {tcp.Config{SecondaryKeys: [][]byte{newSecret()}}, "require a SecretKey"},
		"secret and TLS":      {tcp.Config{SecretKey: newSecret(), TLSConfig: ca.config(t)}, "exclusive"},
		"long label":          {tcp.Config{Label: strings.Repeat("l", 256)}, "label is 256 bytes"},
		"TLS without cert":    {tcp.Config{TLSConfig: &tls.Config{}}, "no certificate"},
		"TLS without mutual":  {tcp.Config{TLSConfig: &tls.Config{Certificates: ca.config(t).Certificates, ClientAuth: tls.VerifyClientCertIfGiven}}, "does not require a client certificate"},
		"negative per host":   {tcp.Config{MaxInboundConnsPerHost: -1}, "MaxInboundConnsPerHost"},
		"negative drain time": {tcp.Config{DrainTimeout: -1}, "DrainTimeout"},
	} {
		tt.cfg.BindAddr = "127.0.0.1:0"
		_, err := tcp.Listen(tt.cfg)
		assert.ErrorContains(t, err, tt.want, name)
	}
}

// testCA issues certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// config returns a mutual TLS configuration with a fresh certificate of
// the CA for 127.0.0.1, trusting the CA in both roles.
func (ca *testCA) config(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "node"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool,
		ClientCAs:    ca.pool,
	}
}

func TestTransport_UserTLS(t *testing.T) {
	ca := newTestCA(t)
	withTLS := func(cfg *tls.Config) func(*tcp.Config) {
		return func(c *tcp.Config) {
			c.TLSConfig = cfg
			c.HandshakeTimeout = time.Second
		}
	}
	srv := listenTCP(t, withTLS(ca.config(t)))
	srv.Serve(echo)
	good := listenTCP(t, withTLS(ca.config(t)))
	resp, err := good.Call(context.Background(), srv.Addr(), []byte("hello"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(resp))

	other := newTestCA(t).config(t)
	other.RootCAs = ca.pool // trusts the server, but its own certificate is from another CA
	noCert := ca.config(t)
	noCert.Certificates = nil
	noCert.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, io.EOF }
	for name, cfg := range map[string]*tls.Config{"certificate of another CA": other, "no client certificate": noCert} {
		bad := listenTCP(t, withTLS(cfg))
		before := srv.Stats().HandshakeFailures
		_, err := bad.Call(context.Background(), srv.Addr(), []byte("hello"))
		assert.ErrorIs(t, err, transport.ErrUnreachable, name)
		waitFor(t, func() bool { return srv.Stats().HandshakeFailures == before+1 }, name+": handshake refused")
	}
	assert.Equal(t, uint64(1), srv.Stats().Accepted)
}

func TestTransport_MaxInboundConnsPerHost(t *testing.T) {
	srv := listenTCP(t, func(c *tcp.Config) { c.MaxInboundConnsPerHost = 2 })
	srv.Serve(echo)
	for range 2 {
		c := rawConn(t, srv.Addr())
		_, err := c.Write(wire.AppendPreface(nil, wire.Preface{}))
		require.NoError(t, err)
	}
	waitFor(t, func() bool { return srv.Stats().Accepted == 2 }, "two connections accepted")
	requireClosedByPeer(t, rawConn(t, srv.Addr()))
	assert.Equal(t, uint64(1), srv.Stats().RejectedConns)
}

// TestTransport_UnreadAnswersAreBounded sends requests for large answers
// and never reads them: the server stops reading requests instead of
// queueing the answers.
func TestTransport_UnreadAnswersAreBounded(t *testing.T) {
	const answer = 1 << 20
	var handled atomic.Int64
	srv := listenTCP(t, func(c *tcp.Config) { c.MaxFrameSize = 2 * answer })
	big := make([]byte, answer)
	srv.Serve(func([]byte) []byte { handled.Add(1); return big })
	c := rawConn(t, srv.Addr())
	in := wire.AppendPreface(nil, wire.Preface{})
	for i := range 200 {
		in = wire.AppendFrame(in, uint64(i+1), wire.KindRequest, []byte("give me a megabyte"))
	}
	_, err := c.Write(in)
	require.NoError(t, err)
	// The kernel's socket buffers take some answers; the transport holds
	// at most about MaxFrameSize more.
	waitFor(t, func() bool { return handled.Load() > 2 }, "requests handled")
	var last int64
	require.Eventually(t, func() bool {
		n := handled.Load()
		stable := n == last
		last = n
		return stable
	}, 5*time.Second, 100*time.Millisecond, "the server keeps reading requests")
	assert.Less(t, last, int64(40), "answers handled for a peer that reads none")
}

// BenchmarkTransport_CallWithSecret is BenchmarkTransport_Call over
// TLS 1.3 with a cluster secret: the cost of encryption.
func BenchmarkTransport_CallWithSecret(b *testing.B) {
	secret := newSecret()
	req := bytes.Repeat([]byte{'x'}, benchPayload)
	pair := func(b *testing.B) (*tcp.Transport, string) {
		a := listenTCP(b, withSecret(secret, "bench"))
		srv := listenTCP(b, withSecret(secret, "bench"))
		ack := []byte{1}
		srv.Serve(func([]byte) []byte { return ack })
		_, err := a.Call(context.Background(), srv.Addr(), req)
		require.NoError(b, err)
		return a, srv.Addr()
	}
	b.Run("sequential", func(b *testing.B) {
		a, addr := pair(b)
		ctx := context.Background()
		b.ReportAllocs()
		b.SetBytes(benchPayload)
		for b.Loop() {
			if _, err := a.Call(ctx, addr, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel64", func(b *testing.B) {
		a, addr := pair(b)
		ctx := context.Background()
		b.ReportAllocs()
		b.SetBytes(benchPayload)
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.Call(ctx, addr, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("handshake", func(b *testing.B) {
		srv := listenTCP(b, withSecret(secret, "bench"))
		srv.Serve(echo)
		b.ReportAllocs()
		for b.Loop() {
			a := listenTCP(b, withSecret(secret, "bench"))
			if _, err := a.Call(context.Background(), srv.Addr(), nil); err != nil {
				b.Fatal(err)
			}
			_ = a.Close()
		}
	})
}

// syncBuffer is a bytes.Buffer that a logger and the test may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
