package tcp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/wire"
)

// serverConn turns an accepted connection into one ready to carry frames:
// within HandshakeTimeout, it checks the peer's preface (version, security
// mode and label) and, with a cluster secret or a TLSConfig, runs the TLS
// handshake as the server. hs is the keys the handshake used (nil without a
// cluster secret).
func (t *Transport) serverConn(raw net.Conn) (nc net.Conn, hs *handshake, err error) {
	deadline := time.Now().Add(t.cfg.HandshakeTimeout)
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, nil, err
	}
	p, err := wire.ReadPreface(raw)
	switch {
	case err != nil:
	case p.Security != t.security:
		err = fmt.Errorf("%w: peer's security is %s, this transport's %s",
			wire.ErrBadPreface, securityName(p.Security), securityName(t.security))
	case p.Label != t.cfg.Label:
		err = fmt.Errorf("%w: peer belongs to the cluster labelled %q, this transport to %q",
			wire.ErrBadPreface, p.Label, t.cfg.Label)
	}
	if err != nil {
		if errors.Is(err, wire.ErrBadPreface) {
			// Say why, so that the dialer can too; best effort, under
			// the handshake's deadline.
			_, _ = raw.Write(wire.AppendRefusal(nil, "refused by "+t.Addr()+": "+err.Error()))
		}
		return nil, nil, err
	}
	nc = raw
	ctx, cancel := context.WithDeadline(t.ctx, deadline)
	defer cancel()
	switch t.security {
	case wire.SecuritySecret:
		hs = &handshake{}
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
func (t *Transport) acceptLoop() {
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
			t.log.Warn("tcp: accept failed", "err", err, "retry_in", backoff)
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
			t.log.Warn("tcp: too many inbound connections; closed one",
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
func (t *Transport) dropInbound(raw net.Conn, host string) bool {
	delete(t.inbound, raw)
	if t.perHost[host]--; t.perHost[host] <= 0 {
		delete(t.perHost, host)
	}
	return t.closed
}

// serveConn runs an accepted connection: the handshake, then its reader.
func (t *Transport) serveConn(raw net.Conn, host string) {
	remote := raw.RemoteAddr().String()
	nc, hs, err := t.serverConn(raw)
	if err != nil {
		t.mu.Lock()
		closed := t.dropInbound(raw, host)
		t.mu.Unlock()
		if !closed {
			t.logHandshakeFailure(host, remote, err)
			t.st.handshakeFailures.Add(1) // after the log: a test that sees the count sees the line
		}
		_ = raw.Close()
		return
	}
	t.handshakeOK(host)
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
func (t *Transport) handle(req []byte) (kind byte, resp []byte) {
	h := t.handler.Load()
	if h == nil {
		return wire.KindError, tcpNoHandler
	}
	defer func() {
		if r := recover(); r != nil {
			t.st.handlerPanics.Add(1)
			t.log.Error("tcp: request handler panicked", "panic", r, "stack", string(debug.Stack()))
			kind, resp = wire.KindError, tcpHandlerPanic
		}
	}()
	resp = (*h)(req)
	if len(resp) > t.cfg.MaxFrameSize {
		t.log.Error("tcp: response over MaxFrameSize; answered with an error",
			"size", len(resp), "limit", t.cfg.MaxFrameSize)
		return wire.KindError, tcpRespTooLarge
	}
	return wire.KindResponse, resp
}

// maxRefusedHosts bounds the hosts whose failed handshakes are remembered
// for logging.
const maxRefusedHosts = 1024

// logHandshakeFailure logs a failed inbound handshake at WARN the first
// time a host fails with a given reason, and at DEBUG while it keeps
// failing the same way: a peer of another version or cluster retries
// every RedialBackoff, and its refusals must not flood the log.
func (t *Transport) logHandshakeFailure(host, remote string, err error) {
	reason := err.Error()
	t.refusedMu.Lock()
	repeated := t.refused[host] == reason
	if !repeated {
		if len(t.refused) >= maxRefusedHosts {
			clear(t.refused)
		}
		t.refused[host] = reason
	}
	t.refusedMu.Unlock()
	if repeated {
		t.log.Debug("tcp: inbound handshake failed again", "remote", remote, "err", err)
		return
	}
	t.log.Warn("tcp: inbound handshake failed; further failures from this host for the same reason are logged at debug level",
		"remote", remote, "err", err)
}

// handshakeOK forgets host's failed handshakes: the next failure is news.
func (t *Transport) handshakeOK(host string) {
	t.refusedMu.Lock()
	delete(t.refused, host)
	t.refusedMu.Unlock()
}
