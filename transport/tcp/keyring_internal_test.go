package tcp

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/wire"
	"github.com/sessionmesh/sessionmesh/transport"
)

func testSecret(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, SecretKeySize)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func TestDeriveTCPKey(t *testing.T) {
	s1, s2 := testSecret(t), testSecret(t)
	a, err := deriveKey(s1, "prod")
	require.NoError(t, err)
	again, err := deriveKey(s1, "prod")
	require.NoError(t, err)
	assert.Equal(t, a.pub, again.pub, "deterministic")
	otherLabel, err := deriveKey(s1, "staging")
	require.NoError(t, err)
	assert.NotEqual(t, a.pub, otherLabel.pub, "the label is mixed in")
	otherSecret, err := deriveKey(s2, "prod")
	require.NoError(t, err)
	assert.NotEqual(t, a.pub, otherSecret.pub)
	_, err = deriveKey(s1[:16], "prod")
	assert.NoError(t, err, "16 bytes, like the gossip keyring")
	_, err = deriveKey(s1[:20], "prod")
	assert.Error(t, err)
}

// dialSecret dials addr as a peer that sends preface p and then runs a TLS
// handshake presenting cert; it returns the TLS connection or the
// handshake's error.
func dialSecret(t *testing.T, addr string, p wire.Preface, cert *tls.Certificate) (*tls.Conn, error) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = raw.Close() })
	_, err = raw.Write(wire.AppendPreface(nil, p))
	require.NoError(t, err)
	require.NoError(t, raw.SetDeadline(time.Now().Add(5*time.Second)))
	tc := tls.Client(raw, &tls.Config{
		MinVersion:           tls.VersionTLS13,
		InsecureSkipVerify:   true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
	})
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	// In TLS 1.3 the server's verdict on the client certificate arrives
	// after the client's handshake is done: read to see it.
	if err := tc.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		return nil, err
	}
	if _, err := tc.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
		return nil, err
	}
	require.NoError(t, raw.SetDeadline(time.Time{}))
	return tc, nil
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func listenSecret(t *testing.T, secret []byte, label string, tweak func(*Config)) *Transport {
	t.Helper()
	cfg := DefaultConfig("127.0.0.1:0")
	cfg.SecretKey, cfg.Label = secret, label
	cfg.HandshakeTimeout = time.Second
	if tweak != nil {
		tweak(&cfg)
	}
	tr, err := Listen(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, tr.Close()) })
	tr.Serve(func(req []byte) []byte { return append([]byte(nil), req...) })
	return tr
}

func TestTransport_SecretHandshake(t *testing.T) {
	secret := testSecret(t)
	srv := listenSecret(t, secret, "prod", nil)
	good, err := deriveKey(secret, "prod")
	require.NoError(t, err)

	t.Run("the derived certificate", func(t *testing.T) {
		_, err := dialSecret(t, srv.Addr(), wire.Preface{Security: wire.SecuritySecret, Label: "prod"}, good.cert)
		require.NoError(t, err)
	})
	t.Run("keys derived for another label", func(t *testing.T) {
		// The preface claims the right label; the keys tell the truth.
		other, err := deriveKey(secret, "staging")
		require.NoError(t, err)
		_, err = dialSecret(t, srv.Addr(), wire.Preface{Security: wire.SecuritySecret, Label: "prod"}, other.cert)
		require.Error(t, err)
	})
	t.Run("the right certificate without its private key", func(t *testing.T) {
		// Anyone may learn the public key (a node presents it to every
		// client): it must be worthless without the secret.
		_, wrongKey, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		stolen := &tls.Certificate{Certificate: good.cert.Certificate, PrivateKey: wrongKey}
		_, err = dialSecret(t, srv.Addr(), wire.Preface{Security: wire.SecuritySecret, Label: "prod"}, stolen)
		require.Error(t, err)
	})
	t.Run("no certificate", func(t *testing.T) {
		_, err := dialSecret(t, srv.Addr(), wire.Preface{Security: wire.SecuritySecret, Label: "prod"}, &tls.Certificate{})
		require.Error(t, err)
	})
	waitFor := func() bool { return srv.Stats().HandshakeFailures == 3 }
	require.Eventually(t, waitFor, 5*time.Second, time.Millisecond)
	assert.Equal(t, uint64(1), srv.Stats().Accepted)
}

// TestTransport_IgnoredGoAway retires an inbound connection whose peer
// ignores the go-away frame: it is closed after DrainTimeout.
func TestTransport_IgnoredGoAway(t *testing.T) {
	oldKey, newKey := testSecret(t), testSecret(t)
	srv := listenSecret(t, newKey, "", func(c *Config) {
		c.SecondaryKeys = [][]byte{oldKey}
		c.DrainTimeout = 100 * time.Millisecond
	})
	k, err := deriveKey(oldKey, "")
	require.NoError(t, err)
	tc, err := dialSecret(t, srv.Addr(), wire.Preface{Security: wire.SecuritySecret}, k.cert)
	require.NoError(t, err)
	_, err = tc.Write(wire.AppendFrame(nil, 1, wire.KindRequest, []byte("hi")))
	require.NoError(t, err)
	br := bufio.NewReader(tc)
	f, _, err := wire.ReadFrame(br, 1024, nil)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(f.Payload))
	require.Eventually(t, func() bool { return srv.Stats().Accepted == 1 }, 5*time.Second, time.Millisecond)

	start := time.Now()
	require.NoError(t, srv.RemoveKey(oldKey))
	f, _, err = wire.ReadFrame(br, 1024, nil)
	require.NoError(t, err)
	assert.Equal(t, wire.KindGoAway, f.Kind)
	// Requests still in flight are answered during the grace period.
	_, err = tc.Write(wire.AppendFrame(nil, 2, wire.KindRequest, []byte("late")))
	require.NoError(t, err)
	f, _, err = wire.ReadFrame(br, 1024, nil)
	require.NoError(t, err)
	assert.Equal(t, "late", string(f.Payload))
	_, _, err = wire.ReadFrame(br, 1024, nil)
	require.ErrorIs(t, err, io.EOF)
	assert.GreaterOrEqual(t, time.Since(start), 100*time.Millisecond)
	assert.Equal(t, uint64(1), srv.Stats().RetiredConns)
}

// TestTransport_RemoveKeyDuringHandshake covers a handshake that
// completes with a key removed meanwhile: the connection is retired.
func TestTransport_RemoveKeyDuringHandshake(t *testing.T) {
	k1, k2 := testSecret(t), testSecret(t)
	a := listenSecret(t, k1, "", func(c *Config) { c.SecondaryKeys = [][]byte{k2} })
	b := listenSecret(t, k1, "", func(c *Config) { c.SecondaryKeys = [][]byte{k2} })
	hs := &handshake{}
	kr := a.keyring
	k1pub := kr.primary().pub
	hs.local, hs.peer = k1pub, k1pub
	assert.True(t, a.keysInstalled(hs))
	require.NoError(t, a.UseKey(k2))
	require.NoError(t, a.RemoveKey(k1))
	assert.False(t, a.keysInstalled(hs))
	_, err := a.Call(context.Background(), b.Addr(), []byte("x"))
	require.ErrorIs(t, err, transport.ErrUnreachable, "b still presents k1")
	require.NoError(t, b.UseKey(k2))
	require.Eventually(t, func() bool {
		_, err := a.Call(context.Background(), b.Addr(), []byte("x"))
		return err == nil
	}, 5*time.Second, 50*time.Millisecond, "both present k2 (after RedialBackoff)")
}
