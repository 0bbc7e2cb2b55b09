package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/wire"
	"github.com/sessionmesh/sessionmesh/transport"
)

// connect returns the connection to p, dialing it when there is none. One
// caller dials while the others wait for it. After a failed dial, callers
// get the same error at once until RedialBackoff has passed.
func (t *Transport) connect(ctx context.Context, p *peer) (*conn, error) {
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
		case errors.Is(err, transport.ErrClosed):
		case ctx.Err() != nil && t.ctx.Err() == nil:
			// The caller gave up; that says nothing about the peer.
			err = ctx.Err()
		default:
			t.st.dialFailures.Add(1)
			err = dialError(p.addr, err)
			p.dialErr = err
			p.retryAt = time.Now().Add(t.cfg.RedialBackoff)
			t.log.Info("tcp: dial failed", "peer", p.addr, "err", err)
		}
		p.mu.Unlock()
		return c, err
	}
}

// dialError wraps the error of a failed dial: the peer is unreachable and
// the request was not sent; a refused connection also says that the peer is
// gone.
func dialError(addr string, err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("tcp: dial %s: %w (%w, %w): %w", addr, transport.ErrUnreachable, transport.ErrNotSent, transport.ErrRefused, err)
	}
	return fmt.Errorf("tcp: dial %s: %w (%w): %w", addr, transport.ErrUnreachable, transport.ErrNotSent, err)
}

// handshakeError classifies the error of a dialed connection's handshake.
// The peer is listening; unless it fell silent (a deadline), closed or
// reset the connection without a word (a process dying, or a release
// that refused without explaining), it refused this node: another
// protocol version, cluster label, secret or certificate (ErrHandshake).
// A refusal the acceptor explained (wire.AppendRefusal) is a refusedError
// already.
func handshakeError(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, transport.ErrHandshake),
		errors.As(err, &ne) && ne.Timeout(),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return err
	}
	return fmt.Errorf("%w (another cluster secret or certificate?): %w", transport.ErrHandshake, err)
}

// refusalReadTimeout bounds the read of a refusal's rest after its first
// bytes arrived.
const refusalReadTimeout = time.Second

// firstBytes is a connection that keeps the first bytes read through it,
// up to a refusal's size.
type firstBytes struct {
	net.Conn
	b []byte
}

func (c *firstBytes) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if room := wire.HeaderSize + wire.MaxRefusalLen - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(n, room)]...)
	}
	return n, err
}

// refusedError is a refusal that the peer explained.
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return "peer refused the connection: " + e.reason }

// Is makes a refusal match transport.ErrHandshake and ErrNotSent: the
// peer handled nothing on the refused connection.
func (e *refusedError) Is(target error) bool {
	return target == transport.ErrHandshake || target == transport.ErrNotSent
}

// dial opens a connection to p, makes it ready and starts its goroutines.
func (t *Transport) dial(ctx context.Context, p *peer) (*conn, error) {
	t.st.dials.Add(1)
	dctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	raw, err := t.dialer.DialContext(dctx, "tcp", p.addr)
	if errors.Is(err, syscall.ECONNRESET) {
		// The peer's kernel reset the connection as it completed: its
		// listening socket closed with the connection queued (a process
		// being killed), or a live process reset it at once. A second
		// connect tells the two apart, now rather than after
		// RedialBackoff: the first is refused.
		raw, err = t.dialer.DialContext(dctx, "tcp", p.addr)
	}
	if err != nil {
		if t.ctx.Err() != nil {
			return nil, transport.ErrClosed
		}
		return nil, err
	}
	nc, hs, err := t.clientConn(dctx, raw, p.addr)
	if err != nil {
		if t.ctx.Err() != nil {
			_ = raw.Close()
			return nil, transport.ErrClosed
		}
		err = handshakeError(err)
		_ = raw.Close()
		return nil, err
	}
	c := t.newConn(nc, raw, hs, p.addr, true)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		_ = raw.Close()
		return nil, transport.ErrClosed
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
func (t *Transport) clientConn(ctx context.Context, raw net.Conn, addr string) (nc net.Conn, hs *handshake, err error) {
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
	// An acceptor that refuses the preface answers in clear text where the
	// TLS server hello should be: keep the first bytes to read its reason.
	first := &firstBytes{Conn: raw}
	switch t.security {
	case wire.SecuritySecret:
		hs = &handshake{}
		nc, err = tlsHandshake(ctx, tls.Client(first, t.keyring.secretTLS(false, hs)))
	case wire.SecurityTLS:
		nc, err = tlsHandshake(ctx, tls.Client(first, userClientTLS(t.userTLS, addr)))
	}
	if err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) {
			_ = raw.SetReadDeadline(time.Now().Add(refusalReadTimeout))
			if reason, rerr := wire.ReadRefusal(first.b, raw); rerr == nil {
				return nil, nil, &refusedError{reason: reason}
			}
		}
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
