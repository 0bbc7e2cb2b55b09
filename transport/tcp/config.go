package tcp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/wire"
)

// Config configures a Transport. A zero field takes the default its
// documentation states; DefaultConfig spells the defaults out.
type Config struct {
	// BindAddr is the "host:port" to listen on. Port 0 picks a free port
	// (read it back with Addr). Required.
	BindAddr string

	// AdvertiseAddr is the address peers dial to reach this transport,
	// returned by Addr. Default: the bound address, which must then not be
	// an unspecified IP (0.0.0.0 or ::). A port of 0 stands for the bound
	// port.
	AdvertiseAddr string

	// MaxFrameSize is the largest request or response in bytes. A Call
	// with a larger request fails with transport.ErrFrameTooLarge before it touches
	// the connection; a larger response from the local handler is answered
	// with an error; a peer that announces a larger frame is disconnected
	// before the frame is read. Default 8 MiB.
	MaxFrameSize int

	// DialTimeout bounds dialing a peer, handshake included. Default 1s.
	DialTimeout time.Duration

	// RedialBackoff is how long after a failed dial calls to that address
	// fail at once with transport.ErrUnreachable instead of dialing again. Default
	// 250ms.
	RedialBackoff time.Duration

	// QueueSize is how many frames may wait for the writer of one
	// connection. When the queue is full, Call blocks until there is room
	// or its ctx ends (back-pressure); on an inbound connection the reader
	// stops reading requests, which pushes back on the peer through TCP.
	// Default 1024.
	QueueSize int

	// HandshakeTimeout is how long an accepted connection has to send the
	// connection preface before it is closed. Default 5s.
	HandshakeTimeout time.Duration

	// FrameTimeout bounds how long a peer may take to deliver the rest of a
	// frame once its first byte has arrived, and how long a write to a peer
	// may block. A connection that stalls longer is closed (its calls fail
	// with transport.ErrUnreachable). An idle connection never times out. Default 10s.
	FrameTimeout time.Duration

	// MaxInboundConns caps the accepted connections, those still in their
	// handshake included; further connections are closed at once. Default
	// 1024.
	MaxInboundConns int

	// MaxInboundConnsPerHost caps the accepted connections from one IP
	// address, those still in their handshake included, so that one host
	// cannot take every slot of MaxInboundConns. A peer normally holds one
	// connection (two briefly while one is retired), so it must exceed
	// twice the number of members that share one address (one host, or
	// nodes behind one NAT). Default 512: clusters of up to 256 nodes on
	// one address.
	MaxInboundConnsPerHost int

	// SecretKey is the cluster secret, the same on every node: 32 random
	// bytes (SecretKeySize) are recommended; 16 and 24 are accepted too,
	// like cluster.Config.SecretKey, so that one secret serves both. With it, every connection is a TLS 1.3 connection
	// on which both sides prove that they hold the secret (see InstallKey
	// for rotation); peers without it cannot connect, read or write.
	// Default: none, and the connections carry frames in clear text: use
	// that only on a network where every host that can reach the port is
	// trusted.
	SecretKey []byte

	// SecondaryKeys are further cluster secrets that are accepted but not
	// presented, like keys installed with InstallKey: give them to a node
	// that restarts in the middle of a key rotation. Requires SecretKey.
	// Default: none.
	SecondaryKeys [][]byte

	// Label is the cluster label; set it to the cluster's Label
	// (cluster.Config.Label). The dialer announces it and the acceptor
	// closes connections from other labels, and with a SecretKey it is
	// mixed into the keys, so clusters with different labels never talk
	// even when they share a secret. At most 255 bytes. Default: empty.
	Label string

	// TLSConfig, when set, runs every connection over mutual TLS with the
	// caller's own certificates instead of a cluster secret (the two are
	// exclusive). The same configuration serves both roles: as a server it
	// must hold a certificate (Certificates or GetCertificate) and verify
	// client certificates (ClientCAs; a ClientAuth left at NoClientCert
	// becomes RequireAndVerifyClientCert); as a client it presents its
	// certificate and verifies the server's against RootCAs and, unless
	// ServerName is set, the host of the address dialed (usually an IP:
	// issue certificates with IP SANs). TLS versions below 1.3 are
	// refused. Default: none.
	TLSConfig *tls.Config

	// DrainTimeout is how long an inbound connection that was retired by
	// RemoveKey stays open for its peer to finish its calls in flight
	// before it is closed. Default 5s.
	DrainTimeout time.Duration

	// Logger receives the transport's logs: connection failures, rejected
	// connections and frames, handler panics. Default: logs are discarded.
	Logger *slog.Logger
}

// DefaultConfig returns the default configuration for a transport
// listening on bindAddr.
func DefaultConfig(bindAddr string) Config {
	return Config{
		BindAddr:         bindAddr,
		MaxFrameSize:     8 << 20,
		DialTimeout:      time.Second,
		RedialBackoff:    250 * time.Millisecond,
		QueueSize:        1024,
		HandshakeTimeout: 5 * time.Second,
		FrameTimeout:     10 * time.Second,
		MaxInboundConns:  1024,

		MaxInboundConnsPerHost: 512,
		DrainTimeout:           5 * time.Second,
	}
}

// withDefaults returns c with zero fields set to their defaults, or an
// error naming every invalid field.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig(c.BindAddr)
	var errs []error
	if c.BindAddr == "" {
		errs = append(errs, errors.New("BindAddr is required"))
	}
	if c.MaxFrameSize > 0 && (uint64(c.MaxFrameSize) > wire.MaxPayload || c.MaxFrameSize > int(^uint(0)>>1)-wire.HeaderSize) {
		errs = append(errs, fmt.Errorf("MaxFrameSize %d exceeds what the wire format can carry", c.MaxFrameSize))
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"MaxFrameSize", &c.MaxFrameSize, d.MaxFrameSize},
		{"QueueSize", &c.QueueSize, d.QueueSize},
		{"MaxInboundConns", &c.MaxInboundConns, d.MaxInboundConns},
		{"MaxInboundConnsPerHost", &c.MaxInboundConnsPerHost, d.MaxInboundConnsPerHost},
	} {
		switch {
		case *f.v < 0:
			errs = append(errs, fmt.Errorf("%s must not be negative, got %d", f.name, *f.v))
		case *f.v == 0:
			*f.v = f.def
		}
	}
	for _, f := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"DialTimeout", &c.DialTimeout, d.DialTimeout},
		{"RedialBackoff", &c.RedialBackoff, d.RedialBackoff},
		{"HandshakeTimeout", &c.HandshakeTimeout, d.HandshakeTimeout},
		{"FrameTimeout", &c.FrameTimeout, d.FrameTimeout},
		{"DrainTimeout", &c.DrainTimeout, d.DrainTimeout},
	} {
		switch {
		case *f.v < 0:
			errs = append(errs, fmt.Errorf("%s must not be negative, got %v", f.name, *f.v))
		case *f.v == 0:
			*f.v = f.def
		}
	}
	if len(c.Label) > wire.MaxLabelLen {
		errs = append(errs, fmt.Errorf("label is %d bytes, more than %d", len(c.Label), wire.MaxLabelLen))
	}
	switch {
	case c.SecretKey != nil && c.TLSConfig != nil:
		errs = append(errs, errors.New("SecretKey and TLSConfig are exclusive"))
	case c.SecretKey == nil && len(c.SecondaryKeys) > 0:
		errs = append(errs, errors.New("SecondaryKeys require a SecretKey"))
	}
	for i, k := range append([][]byte{c.SecretKey}, c.SecondaryKeys...) {
		if i == 0 && c.SecretKey == nil {
			continue
		}
		if err := checkSecretLen(k); err != nil {
			name := "SecretKey"
			if i > 0 {
				name = fmt.Sprintf("SecondaryKeys[%d]", i-1)
			}
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("tcp: invalid Config: %w", errors.Join(errs...))
	}
	return c, nil
}

// Stats is a snapshot of a Transport's counters. Counters only grow;
// OpenConns and QueuedFrames are gauges.
type Stats struct {
	// Dials counts outbound connections attempted; DialFailures those that
	// failed (dial or handshake).
	Dials, DialFailures uint64
	// Accepted counts inbound connections that completed the handshake.
	Accepted uint64
	// RejectedConns counts inbound connections closed at once because
	// MaxInboundConns or MaxInboundConnsPerHost was reached.
	RejectedConns uint64
	// HandshakeFailures counts inbound connections closed before they
	// carried a frame: a wrong, short or late preface, another cluster's
	// label or another security mode, or a failed TLS handshake (a peer
	// without the cluster secret or a valid certificate).
	HandshakeFailures uint64
	// RetiredConns counts connections retired because the key that
	// authenticated them was removed, or because the peer asked to (a
	// go-away frame).
	RetiredConns uint64
	// ConnFailures counts established connections closed by an error: the
	// peer closed or reset it, a read or write failed or timed out, or it
	// broke the protocol.
	ConnFailures uint64
	// FramesSent and BytesSent count frames written, requests and responses
	// alike, and their bytes (headers included).
	FramesSent, BytesSent uint64
	// Flushes counts the batches of frames handed to the kernel (about one
	// write system call each); FramesSent/Flushes is how well concurrent
	// calls are coalesced.
	Flushes uint64
	// FramesReceived and BytesReceived count frames read and their bytes.
	FramesReceived, BytesReceived uint64
	// RejectedFrames counts frames received that were too large or
	// malformed, or of a kind not allowed in their direction; each closed
	// its connection.
	RejectedFrames uint64
	// HandlerPanics counts requests whose handler panicked.
	HandlerPanics uint64
	// OpenConns is the number of connections open now, inbound (those in
	// their handshake included) and outbound.
	OpenConns int
	// QueuedFrames is the number of frames waiting for a writer now.
	QueuedFrames int
}

// counters are the atomic counters behind Stats.
type counters struct {
	dials, dialFailures, accepted, rejectedConns, handshakeFailures, connFailures atomic.Uint64
	retiredConns                                                                  atomic.Uint64
	framesSent, bytesSent, flushes, framesReceived, bytesReceived                 atomic.Uint64
	rejectedFrames, handlerPanics                                                 atomic.Uint64
}
