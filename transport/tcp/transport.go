package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/wire"
	"github.com/sessionmesh/sessionmesh/transport"
)

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

// errWrongFrame closes a connection that carries a request where only
// responses may come, or the reverse.
var errWrongFrame = errors.New("tcp: protocol violation: frame kind not allowed in this direction")

// Transport is the production transport.Transport: persistent TCP connections
// between peers carrying length-prefixed frames (see internal/wire).
//
// Each remote address gets one outbound connection, dialed on the first
// Call and dialed again after it fails. Calls on a connection are pipelined:
// each gets a request ID and many are in flight at once. A writer goroutine
// per connection drains a bounded queue and writes all queued frames before
// it flushes, so concurrent calls share system calls. A slow or dead peer
// only fills its own connection's queue: calls to other peers are not
// delayed. When a connection fails, every call pending on it fails at once
// with transport.ErrUnreachable, without waiting for the failure detector.
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
// Stats exposes counters for metrics. Transport is safe for concurrent
// use.
type Transport struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	addr   string
	dialer net.Dialer
	st     counters

	handler atomic.Pointer[func([]byte) []byte]
	onLost  atomic.Pointer[func(addr string)] // see OnConnLost

	// security is the mode announced in prefaces; keyring holds the cluster
	// secrets (secret mode) and userTLS the caller's configuration (TLS
	// mode).
	security byte
	keyring  *keyring
	userTLS  *tls.Config

	// ctx is canceled by Close; it aborts dials in progress.
	ctx    context.Context
	cancel context.CancelFunc

	frames  sync.Pool // *frame
	results sync.Pool // chan result

	// wg counts every goroutine of the transport. Add is called under mu
	// after checking closed, so Close's Wait sees every Add.
	wg sync.WaitGroup

	mu       sync.RWMutex       // guards the fields below
	closed   bool               // set by Close
	peers    map[string]*peer   // by address, for outbound connections
	outbound map[*conn]struct{} // open outbound connections, retired ones included
	inbound  map[net.Conn]*conn // accepted connections; nil while in the handshake
	perHost  map[string]int     // accepted connections by remote IP

	refusedMu sync.Mutex
	refused   map[string]string // remote IP -> why its last handshake failed, for logHandshakeFailure
}

var _ transport.Transport = (*Transport)(nil)

// Listen starts a transport listening on cfg.BindAddr. Until Serve is
// called, inbound requests are answered with a "no handler" error.
func Listen(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("tcp: listen: %w", err)
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
	t := &Transport{
		cfg:      cfg,
		log:      log.With("transport", addr),
		ln:       ln,
		addr:     addr,
		peers:    map[string]*peer{},
		outbound: map[*conn]struct{}{},
		inbound:  map[net.Conn]*conn{},
		perHost:  map[string]int{},
		refused:  map[string]string{},
	}
	switch {
	case cfg.SecretKey != nil:
		t.security = wire.SecuritySecret
		t.keyring, err = newKeyring(cfg.Label, cfg.SecretKey, cfg.SecondaryKeys)
	case cfg.TLSConfig != nil:
		t.security = wire.SecurityTLS
		t.userTLS, err = userTLS(cfg.TLSConfig)
	}
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("tcp: %w", err)
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
		return "", fmt.Errorf("tcp: listener address %v is not TCP", bound)
	}
	if advertise == "" {
		if tcp.IP.IsUnspecified() {
			return "", fmt.Errorf("tcp: bound to %v: set AdvertiseAddr to an address peers can dial", bound)
		}
		return tcp.String(), nil
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return "", fmt.Errorf("tcp: AdvertiseAddr: %w", err)
	}
	if port == "0" {
		port = strconv.Itoa(tcp.Port)
	}
	return net.JoinHostPort(host, port), nil
}

// Addr returns the address peers dial to reach this transport.
func (t *Transport) Addr() string { return t.addr }

// OnConnLost sets fn to be called with a peer's address when an
// established outbound connection to it breaks: the peer closed it
// without retiring it (a process that exits or is killed has its
// connections closed by the kernel at once), it was reset, or a call on it
// waited out its deadline with nothing received. It is not called for a
// connection retired by a key rotation or a go-away, nor for those Close
// closes. The store uses it to stop reporting itself fully replicated the
// moment an owner is gone, before the membership notices. fn runs on the
// connection's goroutine and must not block. A later call replaces fn.
func (t *Transport) OnConnLost(fn func(addr string)) { t.onLost.Store(&fn) }

// Serve installs the handler for inbound requests. The handler is called
// from the reader goroutine of the connection the request came on: it runs
// concurrently for different connections, and while it runs no further
// request of that connection is read. A panic in the handler is recovered,
// logged and answered with an error.
func (t *Transport) Serve(handler func(request []byte) (response []byte)) {
	if handler == nil {
		t.handler.Store(nil)
		return
	}
	t.handler.Store(&handler)
}

// Stats returns a snapshot of the transport's counters.
func (t *Transport) Stats() Stats {
	s := Stats{
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
// see Transport. Errors: transport.ErrFrameTooLarge for a request over MaxFrameSize
// (nothing is sent), an error wrapping transport.ErrUnreachable when the peer cannot
// be dialed (for RedialBackoff after a failed dial, at once) or the
// connection fails before the response, ctx.Err() when ctx ends first,
// transport.ErrClosed after Close, and a plain error carrying the remote transport's
// message when it could not hand the request to its handler.
//
// request is copied before Call returns, even when it returns early.
func (t *Transport) Call(ctx context.Context, addr string, request []byte) ([]byte, error) {
	p, err := t.peer(addr)
	if err != nil {
		return nil, err
	}
	if len(request) > t.cfg.MaxFrameSize {
		return nil, fmt.Errorf("tcp: request of %d bytes to %s: %w (limit %d)",
			len(request), addr, transport.ErrFrameTooLarge, t.cfg.MaxFrameSize)
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
		if err != errRetired {
			return resp, err
		}
		// The connection was retired before the call was sent: it goes on
		// the connection that replaces it.
		if attempt == maxRetiredAttempts {
			return nil, fmt.Errorf("tcp: call to %s: %w: connections retired %d times in a row",
				addr, transport.ErrUnreachable, attempt)
		}
	}
}

// Close stops listening, closes every connection, fails pending calls with
// transport.ErrClosed and waits for the transport's goroutines, running handlers
// included, to return. It is safe to call more than once.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		t.wg.Wait()
		return nil
	}
	t.closed = true
	var conns []*conn
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
		c.fail(transport.ErrClosed)
	}
	t.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("tcp: close listener: %w", err)
	}
	return nil
}

// peer returns the outbound state for addr, creating it on first use, or
// transport.ErrClosed after Close.
func (t *Transport) peer(addr string) (*peer, error) {
	t.mu.RLock()
	p, closed := t.peers[addr], t.closed
	t.mu.RUnlock()
	if closed {
		return nil, transport.ErrClosed
	}
	if p != nil {
		return p, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, transport.ErrClosed
	}
	if p = t.peers[addr]; p == nil {
		p = &peer{addr: addr}
		t.peers[addr] = p
	}
	return p, nil
}

// peer is the outbound side of one remote address.
type peer struct {
	addr string
	conn atomic.Pointer[conn] // the connection in use, or nil

	mu      sync.Mutex    // guards the fields below
	dialing chan struct{} // closed when the dial in progress ends; nil when none
	dialErr error         // the last dial failure, returned until retryAt
	retryAt time.Time
}
