package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/wire"
)

// TCPConfig configures a TCPTransport. A zero field takes the default its
// documentation states; DefaultTCPConfig spells the defaults out.
type TCPConfig struct {
	// BindAddr is the "host:port" to listen on. Port 0 picks a free port
	// (read it back with Addr). Required.
	BindAddr string

	// AdvertiseAddr is the address peers dial to reach this transport,
	// returned by Addr. Default: the bound address, which must then not be
	// an unspecified IP (0.0.0.0 or ::). A port of 0 stands for the bound
	// port.
	AdvertiseAddr string

	// MaxFrameSize is the largest request or response in bytes. A Call
	// with a larger request fails with ErrFrameTooLarge before it touches
	// the connection; a larger response from the local handler is answered
	// with an error; a peer that announces a larger frame is disconnected
	// before the frame is read. Default 8 MiB.
	MaxFrameSize int

	// DialTimeout bounds dialing a peer, handshake included. Default 1s.
	DialTimeout time.Duration

	// RedialBackoff is how long after a failed dial calls to that address
	// fail at once with ErrUnreachable instead of dialing again. Default
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
	// with ErrUnreachable). An idle connection never times out. Default 10s.
	FrameTimeout time.Duration

	// MaxInboundConns caps the accepted connections, those still in their
	// handshake included; further connections are closed at once. Default
	// 1024.
	MaxInboundConns int

	// MaxInboundConnsPerHost caps the accepted connections from one IP
	// address, those still in their handshake included, so that one host
	// cannot take every slot of MaxInboundConns. A peer normally holds one
	// connection (two briefly while one is retired). Default 64.
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

// DefaultTCPConfig returns the default configuration for a transport
// listening on bindAddr.
func DefaultTCPConfig(bindAddr string) TCPConfig {
	return TCPConfig{
		BindAddr:         bindAddr,
		MaxFrameSize:     8 << 20,
		DialTimeout:      time.Second,
		RedialBackoff:    250 * time.Millisecond,
		QueueSize:        1024,
		HandshakeTimeout: 5 * time.Second,
		FrameTimeout:     10 * time.Second,
		MaxInboundConns:  1024,

		MaxInboundConnsPerHost: 64,
		DrainTimeout:           5 * time.Second,
	}
}

// withDefaults returns c with zero fields set to their defaults, or an
// error naming every invalid field.
func (c TCPConfig) withDefaults() (TCPConfig, error) {
	d := DefaultTCPConfig(c.BindAddr)
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
		errs = append(errs, fmt.Errorf("Label is %d bytes, more than %d", len(c.Label), wire.MaxLabelLen))
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
		return c, fmt.Errorf("replication: invalid TCPConfig: %w", errors.Join(errs...))
	}
	return c, nil
}

// TCPStats is a snapshot of a TCPTransport's counters. Counters only grow;
// OpenConns and QueuedFrames are gauges.
type TCPStats struct {
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

// tcpCounters are the atomic counters behind TCPStats.
type tcpCounters struct {
	dials, dialFailures, accepted, rejectedConns, handshakeFailures, connFailures atomic.Uint64
	retiredConns                                                                  atomic.Uint64
	framesSent, bytesSent, flushes, framesReceived, bytesReceived                 atomic.Uint64
	rejectedFrames, handlerPanics                                                 atomic.Uint64
}

// Sizes of per-connection buffers.
const (
	tcpWriteBufSize = 64 << 10
	tcpReadBufSize  = 32 << 10
	// tcpMaxPooledBuf is the largest buffer kept for reuse: frame buffers
	// from the pool and an inbound connection's request buffer. Larger ones
	// are left to the garbage collector so one big frame does not pin its
	// memory.
	tcpMaxPooledBuf = 64 << 10
)

// Texts of the error frames a transport answers with instead of a response,
// and of its go-away frames.
var (
	tcpGoAwayText   = []byte("key removed")
	tcpNoHandler    = []byte("no handler")
	tcpHandlerPanic = []byte("handler panicked")
	tcpRespTooLarge = []byte("response too large")
)

// errTCPWrongFrame closes a connection that carries a request where only
// responses may come, or the reverse.
var errTCPWrongFrame = errors.New("replication: protocol violation: frame kind not allowed in this direction")

// TCPTransport is the production Transport: persistent TCP connections
// between peers carrying length-prefixed frames (see internal/wire).
//
// Each remote address gets one outbound connection, dialed on the first
// Call and dialed again after it fails. Calls on a connection are pipelined:
// each gets a request ID and many are in flight at once. A writer goroutine
// per connection drains a bounded queue and writes all queued frames before
// it flushes, so concurrent calls share system calls. A slow or dead peer
// only fills its own connection's queue: calls to other peers are not
// delayed. When a connection fails, every call pending on it fails at once
// with ErrUnreachable, without waiting for the failure detector.
//
// Inbound connections must start with the wire preface, announcing the
// same security mode and cluster label as this transport, and then (with a
// SecretKey or a TLSConfig) complete a mutual TLS 1.3 handshake, all within
// HandshakeTimeout; otherwise they are closed. Their requests are handed to
// the handler one at a time, in the connection's reader goroutine, in
// arrival order; requests on different connections run concurrently. While
// the answers waiting to be written on a connection exceed MaxFrameSize
// bytes (or QueueSize frames), its next request is not read, which pushes
// back on the peer through TCP: a peer that sends requests and does not
// read the answers holds little memory, and is disconnected after
// FrameTimeout.
//
// Input from the network is never trusted: a frame over MaxFrameSize or
// with a malformed header closes its connection before its payload is read
// or allocated, a frame of the wrong kind for its direction closes it too,
// and each is counted in Stats.
//
// Stats exposes counters for metrics. TCPTransport is safe for concurrent
// use.
type TCPTransport struct {
	cfg    TCPConfig
	log    *slog.Logger
	ln     net.Listener
	addr   string
	dialer net.Dialer
	st     tcpCounters

	handler atomic.Pointer[func([]byte) []byte]

	// security is the mode announced in prefaces; keyring holds the cluster
	// secrets (secret mode) and userTLS the caller's configuration (TLS
	// mode).
	security byte
	keyring  *tcpKeyring
	userTLS  *tls.Config

	// ctx is canceled by Close; it aborts dials in progress.
	ctx    context.Context
	cancel context.CancelFunc

	frames  sync.Pool // *tcpFrame
	results sync.Pool // chan tcpResult

	// wg counts every goroutine of the transport. Add is called under mu
	// after checking closed, so Close's Wait sees every Add.
	wg sync.WaitGroup

	mu       sync.RWMutex          // guards the fields below
	closed   bool                  // set by Close
	peers    map[string]*tcpPeer   // by address, for outbound connections
	outbound map[*tcpConn]struct{} // open outbound connections, retired ones included
	inbound  map[net.Conn]*tcpConn // accepted connections; nil while in the handshake
	perHost  map[string]int        // accepted connections by remote IP
}

var _ Transport = (*TCPTransport)(nil)

// ListenTCP starts a transport listening on cfg.BindAddr. Until Serve is
// called, inbound requests are answered with a "no handler" error.
func ListenTCP(cfg TCPConfig) (*TCPTransport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("replication: listen: %w", err)
	}
	addr, err := advertiseAddr(cfg.AdvertiseAddr, ln.Addr())
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &TCPTransport{
		cfg:      cfg,
		log:      log.With("transport", addr),
		ln:       ln,
		addr:     addr,
		peers:    map[string]*tcpPeer{},
		outbound: map[*tcpConn]struct{}{},
		inbound:  map[net.Conn]*tcpConn{},
		perHost:  map[string]int{},
	}
	switch {
	case cfg.SecretKey != nil:
		t.security = wire.SecuritySecret
		t.keyring, err = newTCPKeyring(cfg.Label, cfg.SecretKey, cfg.SecondaryKeys)
	case cfg.TLSConfig != nil:
		t.security = wire.SecurityTLS
		t.userTLS, err = userTLS(cfg.TLSConfig)
	}
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("replication: %w", err)
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// advertiseAddr returns the address to publish for a listener bound at
// bound, given the configured advertise address.
func advertiseAddr(advertise string, bound net.Addr) (string, error) {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return "", fmt.Errorf("replication: listener address %v is not TCP", bound)
	}
	if advertise == "" {
		if tcp.IP.IsUnspecified() {
			return "", fmt.Errorf("replication: bound to %v: set AdvertiseAddr to an address peers can dial", bound)
		}
		return tcp.String(), nil
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return "", fmt.Errorf("replication: AdvertiseAddr: %w", err)
	}
	if port == "0" {
		port = strconv.Itoa(tcp.Port)
	}
	return net.JoinHostPort(host, port), nil
}

// Addr returns the address peers dial to reach this transport.
func (t *TCPTransport) Addr() string { return t.addr }

// Serve installs the handler for inbound requests. The handler is called
// from the reader goroutine of the connection the request came on: it runs
// concurrently for different connections, and while it runs no further
// request of that connection is read. A panic in the handler is recovered,
// logged and answered with an error.
func (t *TCPTransport) Serve(handler func(request []byte) (response []byte)) {
	if handler == nil {
		t.handler.Store(nil)
		return
	}
	t.handler.Store(&handler)
}

// Stats returns a snapshot of the transport's counters.
func (t *TCPTransport) Stats() TCPStats {
	s := TCPStats{
		Dials:             t.st.dials.Load(),
		DialFailures:      t.st.dialFailures.Load(),
		Accepted:          t.st.accepted.Load(),
		RejectedConns:     t.st.rejectedConns.Load(),
		HandshakeFailures: t.st.handshakeFailures.Load(),
		RetiredConns:      t.st.retiredConns.Load(),
		ConnFailures:      t.st.connFailures.Load(),
		FramesSent:        t.st.framesSent.Load(),
		BytesSent:         t.st.bytesSent.Load(),
		Flushes:           t.st.flushes.Load(),
		FramesReceived:    t.st.framesReceived.Load(),
		BytesReceived:     t.st.bytesReceived.Load(),
		RejectedFrames:    t.st.rejectedFrames.Load(),
		HandlerPanics:     t.st.handlerPanics.Load(),
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for c := range t.outbound {
		s.OpenConns++
		s.QueuedFrames += len(c.queue)
	}
	for _, c := range t.inbound {
		s.OpenConns++
		if c != nil {
			s.QueuedFrames += len(c.queue)
		}
	}
	return s
}

// Call sends request to the transport at addr and waits for its response;
// see Transport. Errors: ErrFrameTooLarge for a request over MaxFrameSize
// (nothing is sent), an error wrapping ErrUnreachable when the peer cannot
// be dialed (for RedialBackoff after a failed dial, at once) or the
// connection fails before the response, ctx.Err() when ctx ends first,
// ErrClosed after Close, and a plain error carrying the remote transport's
// message when it could not hand the request to its handler.
//
// request is copied before Call returns, even when it returns early.
func (t *TCPTransport) Call(ctx context.Context, addr string, request []byte) ([]byte, error) {
	p, err := t.peer(addr)
	if err != nil {
		return nil, err
	}
	if len(request) > t.cfg.MaxFrameSize {
		return nil, fmt.Errorf("replication: request of %d bytes to %s: %w (limit %d)",
			len(request), addr, ErrFrameTooLarge, t.cfg.MaxFrameSize)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		c, err := t.connect(ctx, p)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(ctx, request)
		if err != errTCPRetired {
			return resp, err
		}
		// The connection was retired before the call was sent: it goes on
		// the connection that replaces it.
		if attempt == tcpMaxRetiredAttempts {
			return nil, fmt.Errorf("replication: call to %s: %w: connections retired %d times in a row",
				addr, ErrUnreachable, attempt)
		}
	}
}

// Close stops listening, closes every connection, fails pending calls with
// ErrClosed and waits for the transport's goroutines, running handlers
// included, to return. It is safe to call more than once.
func (t *TCPTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return nil
	}
	t.closed = true
	var conns []*tcpConn
	var raws []net.Conn
	for c := range t.outbound {
		conns = append(conns, c)
	}
	for raw, c := range t.inbound {
		if c != nil {
			conns = append(conns, c)
		} else {
			raws = append(raws, raw)
		}
	}
	t.mu.Unlock()

	t.cancel()
	err := t.ln.Close()
	for _, raw := range raws {
		_ = raw.Close()
	}
	for _, c := range conns {
		c.fail(ErrClosed)
	}
	t.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("replication: close listener: %w", err)
	}
	return nil
}

// peer returns the outbound state for addr, creating it on first use, or
// ErrClosed after Close.
func (t *TCPTransport) peer(addr string) (*tcpPeer, error) {
	t.mu.RLock()
	p, closed := t.peers[addr], t.closed
	t.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if p != nil {
		return p, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, ErrClosed
	}
	if p = t.peers[addr]; p == nil {
		p = &tcpPeer{addr: addr}
		t.peers[addr] = p
	}
	return p, nil
}

// tcpPeer is the outbound side of one remote address.
type tcpPeer struct {
	addr string
	conn atomic.Pointer[tcpConn] // the connection in use, or nil

	mu      sync.Mutex    // guards the fields below
	dialing chan struct{} // closed when the dial in progress ends; nil when none
	dialErr error         // the last dial failure, returned until retryAt
	retryAt time.Time
}

// connect returns the connection to p, dialing it when there is none. One
// caller dials while the others wait for it. After a failed dial, callers
// get the same error at once until RedialBackoff has passed.
func (t *TCPTransport) connect(ctx context.Context, p *tcpPeer) (*tcpConn, error) {
	for {
		if c := p.conn.Load(); c != nil {
			return c, nil // if it is failing, roundTrip reports its error
		}
		p.mu.Lock()
		if c := p.conn.Load(); c != nil {
			p.mu.Unlock()
			return c, nil
		}
		if wait := p.dialing; wait != nil {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if p.dialErr != nil && time.Now().Before(p.retryAt) {
			err := p.dialErr
			p.mu.Unlock()
			return nil, err
		}
		done := make(chan struct{})
		p.dialing = done
		p.mu.Unlock()

		c, err := t.dial(ctx, p)

		p.mu.Lock()
		p.dialing = nil
		close(done)
		switch {
		case err == nil:
			p.dialErr = nil
		case errors.Is(err, ErrClosed):
		case ctx.Err() != nil && t.ctx.Err() == nil:
			// The caller gave up; that says nothing about the peer.
			err = ctx.Err()
		default:
			t.st.dialFailures.Add(1)
			err = fmt.Errorf("replication: dial %s: %w (%w): %w", p.addr, ErrUnreachable, ErrNotSent, err)
			p.dialErr = err
			p.retryAt = time.Now().Add(t.cfg.RedialBackoff)
			t.log.Info("replication: dial failed", "peer", p.addr, "err", err)
		}
		p.mu.Unlock()
		return c, err
	}
}

// dial opens a connection to p, makes it ready and starts its goroutines.
func (t *TCPTransport) dial(ctx context.Context, p *tcpPeer) (*tcpConn, error) {
	t.st.dials.Add(1)
	dctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	raw, err := t.dialer.DialContext(dctx, "tcp", p.addr)
	if err != nil {
		if t.ctx.Err() != nil {
			return nil, ErrClosed
		}
		return nil, err
	}
	nc, hs, err := t.clientConn(dctx, raw, p.addr)
	if err != nil {
		_ = raw.Close()
		if t.ctx.Err() != nil {
			return nil, ErrClosed
		}
		return nil, err
	}
	c := t.newConn(nc, raw, hs, p.addr, true)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		_ = raw.Close()
		return nil, ErrClosed
	}
	c.onClose = func() {
		p.conn.CompareAndSwap(c, nil)
		t.mu.Lock()
		delete(t.outbound, c)
		t.mu.Unlock()
	}
	c.peer = p
	p.conn.Store(c)
	t.outbound[c] = struct{}{}
	t.wg.Add(2)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		c.writeLoop()
	}()
	go func() {
		defer t.wg.Done()
		c.readLoop()
	}()
	if !t.keysInstalled(hs) { // RemoveKey ran during the handshake
		c.retire("key removed")
	}
	return c, nil
}

// clientConn turns a freshly dialed connection into one ready to carry
// frames: it sends the preface and, with a cluster secret or a TLSConfig,
// runs the TLS handshake as the client, all within ctx's deadline. hs is
// the keys the handshake used (nil without a cluster secret).
func (t *TCPTransport) clientConn(ctx context.Context, raw net.Conn, addr string) (nc net.Conn, hs *tcpHandshake, err error) {
	if d, ok := ctx.Deadline(); ok {
		if err := raw.SetDeadline(d); err != nil {
			return nil, nil, err
		}
	}
	var preface [wire.MaxPrefaceSize]byte
	if _, err := raw.Write(wire.AppendPreface(preface[:0], wire.Preface{Security: t.security, Label: t.cfg.Label})); err != nil {
		return nil, nil, fmt.Errorf("send preface: %w", err)
	}
	nc = raw
	switch t.security {
	case wire.SecuritySecret:
		hs = &tcpHandshake{}
		nc, err = tlsHandshake(ctx, tls.Client(raw, t.keyring.secretTLS(false, hs)))
	case wire.SecurityTLS:
		nc, err = tlsHandshake(ctx, tls.Client(raw, userClientTLS(t.userTLS, addr)))
	}
	if err != nil {
		return nil, nil, err
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, nil, err
	}
	return nc, hs, nil
}

// tlsHandshake runs the handshake of tc.
func tlsHandshake(ctx context.Context, tc *tls.Conn) (net.Conn, error) {
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

// serverConn turns an accepted connection into one ready to carry frames:
// within HandshakeTimeout, it checks the peer's preface (version, security
// mode and label) and, with a cluster secret or a TLSConfig, runs the TLS
// handshake as the server. hs is the keys the handshake used (nil without a
// cluster secret).
func (t *TCPTransport) serverConn(raw net.Conn) (nc net.Conn, hs *tcpHandshake, err error) {
	deadline := time.Now().Add(t.cfg.HandshakeTimeout)
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, nil, err
	}
	p, err := wire.ReadPreface(raw)
	switch {
	case err != nil:
		return nil, nil, err
	case p.Security != t.security:
		return nil, nil, fmt.Errorf("%w: peer's security is %s, this transport's %s",
			wire.ErrBadPreface, securityName(p.Security), securityName(t.security))
	case p.Label != t.cfg.Label:
		return nil, nil, fmt.Errorf("%w: peer belongs to the cluster labelled %q, this transport to %q",
			wire.ErrBadPreface, p.Label, t.cfg.Label)
	}
	nc = raw
	ctx, cancel := context.WithDeadline(t.ctx, deadline)
	defer cancel()
	switch t.security {
	case wire.SecuritySecret:
		hs = &tcpHandshake{}
		nc, err = tlsHandshake(ctx, tls.Server(raw, t.keyring.secretTLS(true, hs)))
	case wire.SecurityTLS:
		nc, err = tlsHandshake(ctx, tls.Server(raw, t.userTLS))
	}
	if err != nil {
		return nil, nil, err
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, nil, err
	}
	return nc, hs, nil
}

// acceptLoop accepts connections until the listener is closed.
func (t *TCPTransport) acceptLoop() {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		raw, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || t.ctx.Err() != nil {
				return
			}
			// Out of file descriptors and the like: wait as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t.log.Warn("replication: accept failed", "err", err, "retry_in", backoff)
			tm := time.NewTimer(backoff)
			select {
			case <-tm.C:
			case <-t.ctx.Done():
				tm.Stop()
				return
			}
			continue
		}
		backoff = 0
		host := remoteHost(raw)
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			_ = raw.Close()
			return
		}
		if len(t.inbound) >= t.cfg.MaxInboundConns || t.perHost[host] >= t.cfg.MaxInboundConnsPerHost {
			t.mu.Unlock()
			t.st.rejectedConns.Add(1)
			_ = raw.Close()
			t.log.Warn("replication: too many inbound connections; closed one",
				"remote", raw.RemoteAddr().String(), "limit", t.cfg.MaxInboundConns,
				"limit_per_host", t.cfg.MaxInboundConnsPerHost)
			continue
		}
		t.inbound[raw] = nil
		t.perHost[host]++
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			t.serveConn(raw, host)
		}()
	}
}

// remoteHost returns the IP address of c's peer.
func remoteHost(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

// dropInbound unregisters the accepted connection raw; it reports whether
// the transport is closed. The caller holds t.mu.
func (t *TCPTransport) dropInbound(raw net.Conn, host string) bool {
	delete(t.inbound, raw)
	if t.perHost[host]--; t.perHost[host] <= 0 {
		delete(t.perHost, host)
	}
	return t.closed
}

// serveConn runs an accepted connection: the handshake, then its reader.
func (t *TCPTransport) serveConn(raw net.Conn, host string) {
	remote := raw.RemoteAddr().String()
	nc, hs, err := t.serverConn(raw)
	if err != nil {
		t.mu.Lock()
		closed := t.dropInbound(raw, host)
		t.mu.Unlock()
		if !closed {
			t.st.handshakeFailures.Add(1)
			t.log.Warn("replication: inbound handshake failed", "remote", remote, "err", err)
		}
		_ = raw.Close()
		return
	}
	c := t.newConn(nc, raw, hs, remote, false)
	c.onClose = func() {
		t.mu.Lock()
		t.dropInbound(raw, host)
		t.mu.Unlock()
	}
	t.mu.Lock()
	if t.closed {
		t.dropInbound(raw, host)
		t.mu.Unlock()
		_ = raw.Close()
		return
	}
	t.inbound[raw] = c
	t.wg.Add(1)
	t.mu.Unlock()
	t.st.accepted.Add(1)
	go func() {
		defer t.wg.Done()
		c.writeLoop()
	}()
	if !t.keysInstalled(hs) { // RemoveKey ran during the handshake
		c.retire("key removed")
	}
	c.readLoop()
}

// handle runs the handler on one request and returns the frame kind and
// payload of the answer.
func (t *TCPTransport) handle(req []byte) (kind byte, resp []byte) {
	h := t.handler.Load()
	if h == nil {
		return wire.KindError, tcpNoHandler
	}
	defer func() {
		if r := recover(); r != nil {
			t.st.handlerPanics.Add(1)
			t.log.Error("replication: request handler panicked", "panic", r, "stack", string(debug.Stack()))
			kind, resp = wire.KindError, tcpHandlerPanic
		}
	}()
	resp = (*h)(req)
	if len(resp) > t.cfg.MaxFrameSize {
		t.log.Error("replication: response over MaxFrameSize; answered with an error",
			"size", len(resp), "limit", t.cfg.MaxFrameSize)
		return wire.KindError, tcpRespTooLarge
	}
	return wire.KindResponse, resp
}

// tcpFrame is an encoded frame on its way to a writer. Frames are pooled.
type tcpFrame struct{ b []byte }

// getFrame returns a pooled frame buffer with room for n bytes.
func (t *TCPTransport) getFrame(n int) *tcpFrame {
	f, _ := t.frames.Get().(*tcpFrame)
	if f == nil {
		f = &tcpFrame{}
	}
	if cap(f.b) < n {
		c := 2 << 10
		for c < n && c < tcpMaxPooledBuf {
			c *= 2
		}
		f.b = make([]byte, 0, max(c, n))
	}
	return f
}

// putFrame returns f to the pool, without its buffer if that is large.
func (t *TCPTransport) putFrame(f *tcpFrame) {
	if cap(f.b) > tcpMaxPooledBuf {
		f.b = nil
	}
	f.b = f.b[:0]
	t.frames.Put(f)
}

// tcpResult is what a pending call receives: a response or error frame,
// or the error that failed its connection.
type tcpResult struct {
	kind    byte
	payload []byte
	err     error
}

func (t *TCPTransport) getResult() chan tcpResult {
	if ch, ok := t.results.Get().(chan tcpResult); ok {
		return ch
	}
	return make(chan tcpResult, 1)
}

// tcpConn is one established connection, outbound (it carries our
// requests and their responses) or inbound (the peer's requests).
type tcpConn struct {
	t        *TCPTransport
	nc       net.Conn      // what frames are read from and written to: raw, or TLS over raw
	raw      net.Conn      // the TCP connection, closed by fail
	hs       *tcpHandshake // the keys that authenticated it; nil without a cluster secret
	remote   string
	outbound bool
	peer     *tcpPeer       // the peer of an outbound connection
	queue    chan *tcpFrame // frames for writeLoop
	closing  chan struct{}  // closed by fail
	once     sync.Once
	onClose  func() // unregisters the connection; set before its goroutines start

	// queuedBytes counts the bytes of the frames in queue; room receives a
	// value when writeLoop has taken some out. An inbound connection's
	// reader waits for room while its answers exceed MaxFrameSize bytes.
	queuedBytes atomic.Int64
	room        chan struct{}

	// goAway is closed by retire on an inbound connection: writeLoop then
	// sends a go-away frame.
	goAway     chan struct{}
	retireOnce sync.Once

	// received counts the frames an outbound connection received: a
	// call that saw it unchanged through its whole wait heard nothing at
	// all, which tells a broken connection from a slow peer.
	received atomic.Uint64

	mu         sync.Mutex // guards the fields below
	dead       bool       // set by fail
	draining   bool       // retired: no new calls; closed when pending is empty
	failErr    error      // what calls on a dead connection return
	nextID     uint64
	pending    map[uint64]chan tcpResult // outbound calls awaiting a response
	drainTimer *time.Timer               // closes a retired inbound connection
}

// Errors that end or retire connections without being failures.
var (
	// errTCPRetired is returned by roundTrip on a retired connection
	// before anything was sent: Call then uses a new connection.
	errTCPRetired = errors.New("replication: connection retired")
	// errTCPDrained closes a retired connection whose calls are all
	// answered.
	errTCPDrained = errors.New("replication: retired connection drained")
	// errTCPSilent closes an outbound connection on which a call timed
	// out with nothing at all received meanwhile.
	errTCPSilent = errors.New("replication: nothing received on the connection while a call waited out its deadline")
)

// tcpSilentMin is how long a call must have waited, with nothing received
// on its connection, before its timeout closes the connection. After a
// partition, a connection established before it can take seconds to
// deliver again (TCP retransmission backs off exponentially), while a
// new one connects as soon as the network lets it; a caller's short
// deadline alone says nothing about the connection.
const tcpSilentMin = 100 * time.Millisecond

// tcpMaxRetiredAttempts bounds how many retired connections one Call
// tries before it gives up.
const tcpMaxRetiredAttempts = 3

func (t *TCPTransport) newConn(nc, raw net.Conn, hs *tcpHandshake, remote string, outbound bool) *tcpConn {
	c := &tcpConn{
		t:        t,
		nc:       nc,
		raw:      raw,
		hs:       hs,
		remote:   remote,
		outbound: outbound,
		queue:    make(chan *tcpFrame, t.cfg.QueueSize),
		closing:  make(chan struct{}),
		room:     make(chan struct{}, 1),
		goAway:   make(chan struct{}),
	}
	if outbound {
		c.pending = map[uint64]chan tcpResult{}
	}
	return c
}

// usesKey reports whether pub authenticated c, on either side.
func (c *tcpConn) usesKey(pub pubKey) bool {
	return c.hs != nil && (c.hs.local == pub || c.hs.peer == pub)
}

// retire takes c out of service without failing a call. An outbound
// connection stops taking calls, so that the next call dials a new one,
// and closes once its pending calls are answered. An inbound connection
// asks its peer to do the same with a go-away frame and is closed after
// DrainTimeout at the latest.
func (c *tcpConn) retire(reason string) {
	c.retireOnce.Do(func() {
		c.mu.Lock()
		dead := c.dead
		c.mu.Unlock()
		if dead {
			return
		}
		c.t.st.retiredConns.Add(1)
		c.t.log.Info("replication: retiring connection", "remote", c.remote, "outbound", c.outbound, "reason", reason)
		if !c.outbound {
			c.mu.Lock()
			if !c.dead {
				c.drainTimer = time.AfterFunc(c.t.cfg.DrainTimeout, func() {
					c.fail(fmt.Errorf("%w: the peer did not close it within %v", errTCPDrained, c.t.cfg.DrainTimeout))
				})
			}
			c.mu.Unlock()
			close(c.goAway)
			return
		}
		c.peer.conn.CompareAndSwap(c, nil)
		c.mu.Lock()
		c.draining = true
		idle := len(c.pending) == 0
		c.mu.Unlock()
		if idle {
			c.fail(errTCPDrained)
		}
	})
}

// roundTrip sends one request on an outbound connection and waits for its
// answer. It returns errTCPRetired, having sent nothing, when c has been
// retired.
func (c *tcpConn) roundTrip(ctx context.Context, req []byte) ([]byte, error) {
	t := c.t
	ch := t.getResult()
	f := t.getFrame(wire.FrameLen(len(req)))
	c.mu.Lock()
	if c.dead || c.draining {
		err := c.failErr
		if c.draining || errors.Is(err, errTCPDrained) {
			err = errTCPRetired
		}
		c.mu.Unlock()
		t.results.Put(ch)
		t.putFrame(f)
		return nil, err
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	f.b = wire.AppendFrame(f.b[:0], id, wire.KindRequest, req)
	sent, seen := time.Now(), c.received.Load()

	if !c.enqueue(f) {
		n := int64(len(f.b))
		c.queuedBytes.Add(n)
		select {
		case c.queue <- f: // the queue was full: wait for room (back-pressure)
		case <-c.closing:
			// fail has taken the pending entry and answers ch.
			c.queuedBytes.Add(-n)
			t.putFrame(f)
		case <-ctx.Done():
			c.queuedBytes.Add(-n)
			t.putFrame(f)
			return nil, c.abandon(id, ch, ctx.Err())
		}
	}
	select {
	case r := <-ch:
		t.results.Put(ch)
		switch r.kind {
		case wire.KindResponse:
			return r.payload, nil
		case wire.KindError:
			return nil, fmt.Errorf("replication: %s answered with an error: %s", c.remote, r.payload)
		default:
			return nil, r.err
		}
	case <-ctx.Done():
		err := c.abandon(id, ch, ctx.Err())
		if errors.Is(err, context.DeadlineExceeded) && time.Since(sent) >= tcpSilentMin && c.received.Load() == seen {
			c.fail(errTCPSilent) // the next call dials afresh
		}
		return nil, err
	}
}

// enqueue queues f for writeLoop if there is room, and reports whether it
// did.
func (c *tcpConn) enqueue(f *tcpFrame) bool {
	n := int64(len(f.b))
	c.queuedBytes.Add(n)
	select {
	case c.queue <- f:
		return true
	default:
		c.queuedBytes.Add(-n)
		return false
	}
}

// abandon removes the pending call id whose caller gave up, and returns err.
func (c *tcpConn) abandon(id uint64, ch chan tcpResult, err error) error {
	c.mu.Lock()
	_, mine := c.pending[id]
	delete(c.pending, id)
	drained := c.draining && len(c.pending) == 0
	c.mu.Unlock()
	if mine { // nobody else will send on ch
		c.t.results.Put(ch)
	}
	if drained {
		c.fail(errTCPDrained)
	}
	return err
}

// fail closes the connection for cause and fails its pending calls at
// once: with ErrClosed when the transport is closing, else with an error
// wrapping ErrUnreachable and cause. Only the first call has an effect.
func (c *tcpConn) fail(cause error) {
	c.once.Do(func() {
		callErr := ErrClosed
		quiet := errors.Is(cause, ErrClosed) || errors.Is(cause, errTCPDrained)
		if !errors.Is(cause, ErrClosed) {
			callErr = fmt.Errorf("replication: connection to %s: %w: %w", c.remote, ErrUnreachable, cause)
		}
		if !quiet {
			c.t.st.connFailures.Add(1)
		}
		c.mu.Lock()
		c.dead = true
		c.failErr = callErr
		pending := c.pending
		c.pending = nil
		if c.drainTimer != nil {
			c.drainTimer.Stop()
		}
		c.mu.Unlock()
		close(c.closing)
		// The TCP connection, not the TLS one: a TLS close_notify could
		// block on a peer that does not read.
		_ = c.raw.Close()
		for _, ch := range pending {
			ch <- tcpResult{err: callErr}
		}
		c.onClose()
		if errors.Is(cause, ErrClosed) {
			return
		}
		level := slog.LevelInfo
		switch {
		case errors.Is(cause, io.EOF), errors.Is(cause, errTCPDrained):
			level = slog.LevelDebug // the peer closed it (a restart or a Close), or it was retired
		case errors.Is(cause, ErrFrameTooLarge), errors.Is(cause, wire.ErrMalformed), errors.Is(cause, errTCPWrongFrame):
			level = slog.LevelWarn
		}
		c.t.log.Log(context.Background(), level, "replication: connection closed",
			"remote", c.remote, "outbound", c.outbound, "pending", len(pending), "err", cause)
	})
}

// writeLoop writes queued frames until the connection closes. It writes
// every frame in the queue into its buffer before flushing, so frames
// queued together leave in as few system calls as the buffer allows.
func (c *tcpConn) writeLoop() {
	t := c.t
	bw := bufio.NewWriterSize(&tcpTimedWriter{nc: c.nc, timeout: t.cfg.FrameTimeout}, tcpWriteBufSize)
	goAway := c.goAway
	for {
		var f *tcpFrame
		select {
		case f = <-c.queue:
		case <-goAway:
			goAway = nil
			f = t.getFrame(wire.FrameLen(len(tcpGoAwayText)))
			f.b = wire.AppendFrame(f.b[:0], 0, wire.KindGoAway, tcpGoAwayText)
			c.queuedBytes.Add(int64(len(f.b)))
		case <-c.closing:
			return
		}
		yielded := false
		for f != nil {
			// Counted before the write: once a frame is out, its answer
			// may arrive before this goroutine runs again.
			t.st.framesSent.Add(1)
			t.st.bytesSent.Add(uint64(len(f.b)))
			_, err := bw.Write(f.b)
			c.queuedBytes.Add(-int64(len(f.b)))
			t.putFrame(f)
			select {
			case c.room <- struct{}{}:
			default:
			}
			if err != nil {
				c.fail(err)
				return
			}
			select {
			case f = <-c.queue:
			default:
				f = nil
				if !yielded {
					// Let runnable callers queue their frames first.
					yielded = true
					runtime.Gosched()
					select {
					case f = <-c.queue:
					default:
					}
				}
			}
		}
		t.st.flushes.Add(1)
		if err := bw.Flush(); err != nil {
			c.fail(err)
			return
		}
	}
}

// tcpTimedWriter gives every write to nc at least half of timeout before it
// times out, renewing the deadline only when it runs low so most writes set
// no deadline at all.
type tcpTimedWriter struct {
	nc      net.Conn
	timeout time.Duration
	renewAt time.Time
}

func (w *tcpTimedWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.After(w.renewAt) {
		if err := w.nc.SetWriteDeadline(now.Add(w.timeout)); err != nil {
			return 0, err
		}
		w.renewAt = now.Add(w.timeout / 2)
	}
	return w.nc.Write(p)
}

// readLoop reads frames until the connection fails: responses on an
// outbound connection go to their pending calls, requests on an inbound
// one to the handler, whose answer is queued for writeLoop.
func (c *tcpConn) readLoop() {
	t := c.t
	br := bufio.NewReaderSize(c.nc, tcpReadBufSize)
	var (
		buf         []byte // an inbound connection's request buffer, reused
		deadlineSet bool
	)
	for {
		if !c.outbound && !c.awaitRoom() {
			return
		}
		if err := c.awaitFrame(br, &deadlineSet); err != nil {
			c.fail(err)
			return
		}
		if c.outbound {
			buf = nil // a response belongs to its caller: never reuse
		}
		f, b, err := wire.ReadFrame(br, t.cfg.MaxFrameSize, buf)
		if err != nil {
			switch {
			case errors.Is(err, wire.ErrFrameTooLarge):
				t.st.rejectedFrames.Add(1)
				err = fmt.Errorf("%w: %w", ErrFrameTooLarge, err)
			case errors.Is(err, wire.ErrMalformed):
				t.st.rejectedFrames.Add(1)
			}
			c.fail(err)
			return
		}
		t.st.framesReceived.Add(1)
		t.st.bytesReceived.Add(uint64(wire.FrameLen(len(f.Payload))))
		if c.outbound {
			switch f.Kind {
			case wire.KindRequest:
				t.st.rejectedFrames.Add(1)
				c.fail(errTCPWrongFrame)
				return
			case wire.KindGoAway:
				c.retire("the peer asked: " + string(f.Payload[:min(len(f.Payload), 64)]))
			default:
				c.deliver(f)
			}
			continue
		}
		if f.Kind != wire.KindRequest {
			t.st.rejectedFrames.Add(1)
			c.fail(errTCPWrongFrame)
			return
		}
		kind, resp := t.handle(f.Payload)
		out := t.getFrame(wire.FrameLen(len(resp)))
		out.b = wire.AppendFrame(out.b, f.ID, kind, resp)
		if !c.enqueue(out) {
			n := int64(len(out.b))
			c.queuedBytes.Add(n)
			select {
			case c.queue <- out:
			case <-c.closing:
				c.queuedBytes.Add(-n)
				t.putFrame(out)
				return
			}
		}
		if buf = b; cap(buf) > tcpMaxPooledBuf {
			buf = nil
		}
	}
}

// awaitRoom waits while the answers queued on an inbound connection exceed
// MaxFrameSize bytes, so that a peer that does not read them cannot make
// the node hold more. It reports false when the connection closes first.
func (c *tcpConn) awaitRoom() bool {
	for c.queuedBytes.Load() > int64(c.t.cfg.MaxFrameSize) {
		select {
		case <-c.room:
		case <-c.closing:
			return false
		}
	}
	return true
}

// awaitFrame waits without a deadline for the first byte of the next frame,
// then, unless the whole frame is already buffered, gives the rest
// FrameTimeout to arrive. An idle connection thus never times out, a
// stalled frame does, and frames that arrive whole set no deadline.
func (c *tcpConn) awaitFrame(br *bufio.Reader, deadlineSet *bool) error {
	if br.Buffered() == 0 {
		if *deadlineSet {
			if err := c.nc.SetReadDeadline(time.Time{}); err != nil {
				return err
			}
			*deadlineSet = false
		}
		if _, err := br.Peek(1); err != nil {
			return err
		}
	}
	if n := br.Buffered(); n >= 4 {
		hdr, _ := br.Peek(4)
		if uint64(n) >= 4+uint64(binary.BigEndian.Uint32(hdr)) {
			return nil
		}
	}
	*deadlineSet = true
	return c.nc.SetReadDeadline(time.Now().Add(c.t.cfg.FrameTimeout))
}

// deliver hands a response or error frame to its pending call. A frame for
// a call that gave up is dropped. A retired connection closes when its last
// call is answered.
func (c *tcpConn) deliver(f wire.Frame) {
	c.received.Add(1)
	c.mu.Lock()
	ch, ok := c.pending[f.ID]
	delete(c.pending, f.ID)
	drained := c.draining && len(c.pending) == 0
	c.mu.Unlock()
	if ok {
		ch <- tcpResult{kind: f.Kind, payload: f.Payload}
	}
	if drained {
		c.fail(errTCPDrained)
	}
}
