package tcp

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/wire"
)

// This file holds the transport's authentication: keys derived from the
// cluster secret, the TLS configurations of both roles, and key rotation.
//
// With a cluster secret, every connection runs TLS 1.3 with mutual
// authentication. Each installed secret determines an Ed25519 key pair:
//
//	seed = HKDF-SHA256(secret, salt: none, info: "sessionmesh replication v1" 0x00 label)
//
// and a self-signed certificate for it. Each side presents the certificate
// of its primary secret and accepts a peer only if the public key of the
// peer's certificate is one derived from a secret installed locally (the
// comparison is constant-time); TLS 1.3's CertificateVerify proves that the
// peer holds the matching private key, which only a holder of the secret
// can compute. Certificate chains, names and validity dates play no part.
// The label is mixed into the derivation, so two clusters that share a
// secret but not a label cannot talk either. Session resumption is off, so
// every connection proves its key afresh.

// SecretKeySize is the recommended size of a cluster secret in bytes: 32
// random bytes ("openssl rand -hex 32"). Config.SecretKey and InstallKey
// accept 16, 24 or 32 bytes, the sizes cluster.Config.SecretKey accepts, so
// that one secret serves both the gossip and the replication keyring.
const SecretKeySize = 32

// checkSecretLen reports an error for a secret of a size neither keyring
// accepts.
func checkSecretLen(secret []byte) error {
	switch len(secret) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("secret key is %d bytes, want 16, 24 or 32", len(secret))
}

// keyInfo is the HKDF info that makes replication keys differ from any
// other use of the secret. Protocol: changing it breaks compatibility.
const keyInfo = "sessionmesh replication v1"

// errPeerKey fails a handshake whose peer presented a key not derived from
// any installed secret.
var errPeerKey = errors.New("peer's key is not derived from an installed cluster secret (wrong secret or label)")

// pubKey is an Ed25519 public key as a comparable value.
type pubKey [ed25519.PublicKeySize]byte

// key is one installed secret and what derives from it.
type key struct {
	secret []byte
	pub    pubKey
	cert   *tls.Certificate
}

// deriveKey derives the key pair and certificate of secret for a
// cluster with the given label.
func deriveKey(secret []byte, label string) (*key, error) {
	if err := checkSecretLen(secret); err != nil {
		return nil, fmt.Errorf("tcp: %w", err)
	}
	seed, err := hkdf.Key(sha256.New, secret, nil, keyInfo+"\x00"+label, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("tcp: derive key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	k := &key{secret: slices.Clone(secret)}
	copy(k.pub[:], priv.Public().(ed25519.PublicKey))
	// Only the public key matters to the peer; the rest of the certificate
	// is there because TLS carries keys in certificates.
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sessionmesh replication"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return nil, fmt.Errorf("tcp: certificate for the derived key: %w", err)
	}
	k.cert = &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}
	return k, nil
}

// keyring holds the installed secrets of a transport. It is safe for
// concurrent use.
type keyring struct {
	label string

	mu   sync.RWMutex
	keys []*key // guards: the installed keys, the primary first; never empty
}

// newKeyring derives the keys of primary and others.
func newKeyring(label string, primary []byte, others [][]byte) (*keyring, error) {
	kr := &keyring{label: label}
	for _, s := range append([][]byte{primary}, others...) {
		k, err := deriveKey(s, label)
		if err != nil {
			return nil, err
		}
		if kr.find(s) < 0 {
			kr.keys = append(kr.keys, k)
		}
	}
	return kr, nil
}

// find returns the index of secret among the installed keys, or -1. It
// compares every key in constant time. The caller holds mu or owns kr.
func (kr *keyring) find(secret []byte) int {
	found := -1
	for i, k := range kr.keys {
		if subtle.ConstantTimeCompare(k.secret, secret) == 1 {
			found = i
		}
	}
	return found
}

// primary returns the key this transport presents.
func (kr *keyring) primary() *key {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.keys[0]
}

// accepts reports whether pub derives from an installed secret. It compares
// against every key in constant time.
func (kr *keyring) accepts(pub []byte) bool {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	ok := 0
	for _, k := range kr.keys {
		ok |= subtle.ConstantTimeCompare(k.pub[:], pub)
	}
	return ok == 1
}

// install adds secret; installing a key twice does nothing.
func (kr *keyring) install(secret []byte) error {
	k, err := deriveKey(secret, kr.label)
	if err != nil {
		return err
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.find(secret) < 0 {
		kr.keys = append(kr.keys, k)
	}
	return nil
}

// use makes the installed secret the primary key.
func (kr *keyring) use(secret []byte) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	i := kr.find(secret)
	if i < 0 {
		return ErrUnknownKey
	}
	k := kr.keys[i]
	kr.keys = append([]*key{k}, slices.Delete(kr.keys, i, i+1)...)
	return nil
}

// remove uninstalls secret and returns its public key; removed is false
// when it was not installed.
func (kr *keyring) remove(secret []byte) (pub pubKey, removed bool, err error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	i := kr.find(secret)
	switch {
	case i < 0:
		return pub, false, nil
	case i == 0:
		return pub, false, ErrPrimaryKey
	}
	pub = kr.keys[i].pub
	kr.keys = slices.Delete(kr.keys, i, i+1)
	return pub, true, nil
}

// secrets returns copies of the installed secrets, the primary first.
func (kr *keyring) secrets() [][]byte {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	out := make([][]byte, len(kr.keys))
	for i, k := range kr.keys {
		out[i] = slices.Clone(k.secret)
	}
	return out
}

// handshake records which keys authenticated a connection made with the
// cluster secret: the one this side presented and the peer's. Written by
// the TLS callbacks during the handshake, read-only afterwards.
type handshake struct {
	local, peer pubKey
}

// verifyPeer is the VerifyConnection callback of both roles in secret mode.
func (kr *keyring) verifyPeer(cs tls.ConnectionState, hs *handshake) error {
	if len(cs.PeerCertificates) != 1 {
		return fmt.Errorf("tcp: peer presented %d certificates, want 1", len(cs.PeerCertificates))
	}
	pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("tcp: peer's key is a %T, want Ed25519", cs.PeerCertificates[0].PublicKey)
	}
	if !kr.accepts(pub) {
		return errPeerKey
	}
	copy(hs.peer[:], pub)
	return nil
}

// secretTLS returns the TLS configuration of one handshake in secret mode,
// for the server role or the client role; hs receives the keys used.
func (kr *keyring) secretTLS(server bool, hs *handshake) *tls.Config {
	cfg := &tls.Config{
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
		VerifyConnection:       func(cs tls.ConnectionState) error { return kr.verifyPeer(cs, hs) },
	}
	present := func() *tls.Certificate {
		k := kr.primary()
		hs.local = k.pub
		return k.cert
	}
	if server {
		// Any certificate, checked by VerifyConnection instead of a CA.
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return present(), nil }
	} else {
		// The chain is not verified: VerifyConnection checks the key.
		cfg.InsecureSkipVerify = true
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return present(), nil }
	}
	return cfg
}

// userTLS prepares the caller's mutual TLS configuration: TLS 1.3 at
// least, and client certificates required (verified against ClientCAs
// unless the caller chose RequireAnyClientCert with its own checks).
func userTLS(cfg *tls.Config) (*tls.Config, error) {
	c := cfg.Clone()
	switch c.ClientAuth {
	case tls.NoClientCert:
		c.ClientAuth = tls.RequireAndVerifyClientCert
	case tls.RequireAndVerifyClientCert, tls.RequireAnyClientCert:
	default:
		return nil, fmt.Errorf("TLSConfig.ClientAuth %v does not require a client certificate", c.ClientAuth)
	}
	if c.MinVersion < tls.VersionTLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	if len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		return nil, errors.New("TLSConfig has no certificate")
	}
	return c, nil
}

// userClientTLS returns the caller's TLS configuration for dialing addr:
// the server name defaults to addr's host.
func userClientTLS(base *tls.Config, addr string) *tls.Config {
	if base.ServerName != "" {
		return base
	}
	c := base.Clone()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		c.ServerName = host
	}
	return c
}

// securityName names a preface security mode for logs and errors.
func securityName(s byte) string {
	switch s {
	case wire.SecurityNone:
		return "none (clear text)"
	case wire.SecuritySecret:
		return "cluster secret"
	case wire.SecurityTLS:
		return "TLS certificates"
	}
	return fmt.Sprintf("unknown (%d)", s)
}

// InstallKey adds a cluster secret (16, 24 or 32 bytes) to the
// transport's keyring: from then on, peers that present it are accepted.
// The transport keeps presenting its primary key until UseKey. Installing
// an installed key does nothing. It returns ErrNoKeyring when the transport
// was created without a SecretKey.
//
// Rotating the secret of a running cluster takes three steps, each done on
// every node (and on the cluster's gossip keyring, see cluster.InstallKey)
// before the next starts: InstallKey(new), UseKey(new), RemoveKey(old).
// No connection fails on the way.
func (t *Transport) InstallKey(key []byte) error {
	if t.keyring == nil {
		return ErrNoKeyring
	}
	return t.keyring.install(key)
}

// UseKey makes an installed key the primary key: the one this transport
// presents on the connections it opens or accepts from now on. Open
// connections stay as they are. It returns ErrUnknownKey for a key that is
// not installed and ErrNoKeyring when the transport has no keyring.
func (t *Transport) UseKey(key []byte) error {
	if t.keyring == nil {
		return ErrNoKeyring
	}
	return t.keyring.use(key)
}

// RemoveKey removes a key from the keyring: peers that present it are
// refused from now on, and the open connections it authenticated, on
// either side, are retired without failing a call: an outbound connection
// takes no new calls and closes once its calls in flight are answered (new
// calls go on a new connection), and an inbound one asks its peer to do the
// same (a go-away frame) and is closed after DrainTimeout at the latest.
// Removing a key that is not installed does nothing. It returns
// ErrPrimaryKey for the primary key and ErrNoKeyring when the transport has
// no keyring.
func (t *Transport) RemoveKey(key []byte) error {
	if t.keyring == nil {
		return ErrNoKeyring
	}
	pub, removed, err := t.keyring.remove(key)
	if err != nil || !removed {
		return err
	}
	var retire []*conn
	t.mu.RLock()
	for c := range t.outbound {
		if c.usesKey(pub) {
			retire = append(retire, c)
		}
	}
	for _, c := range t.inbound {
		if c != nil && c.usesKey(pub) {
			retire = append(retire, c)
		}
	}
	t.mu.RUnlock()
	for _, c := range retire {
		c.retire("key removed")
	}
	return nil
}

// Keys returns copies of the installed cluster secrets, the primary first,
// or nil when the transport has no keyring.
func (t *Transport) Keys() [][]byte {
	if t.keyring == nil {
		return nil
	}
	return t.keyring.secrets()
}

// keysInstalled reports whether both keys that authenticated a connection
// are still installed; a connection whose handshake raced with RemoveKey
// is retired at once when not.
func (t *Transport) keysInstalled(hs *handshake) bool {
	return hs == nil || t.keyring.accepts(hs.local[:]) && t.keyring.accepts(hs.peer[:])
}
