package tcp

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/transport"
)

// TestDial_ResetConnectIsTriedAgain checks what a connect that the peer's
// kernel reset leads to. When the peer's listening socket closed with the
// connection queued (a process being killed), the connect made at once
// after it is refused: the peer is gone, without waiting RedialBackoff. A
// live peer that resets every connection is unreachable, never gone.
func TestDial_ResetConnectIsTriedAgain(t *testing.T) {
	newTransport := func(t *testing.T) *Transport {
		cfg := DefaultConfig("127.0.0.1:0")
		tr, err := Listen(cfg)
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, tr.Close()) })
		return tr
	}

	t.Run("listener closed", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		tr := newTransport(t)
		resets := 1 // the connect that was queued when the listener closed
		tr.dialer.Control = func(string, string, syscall.RawConn) error {
			if resets > 0 {
				resets--
				return syscall.ECONNRESET
			}
			return nil
		}
		_, err = tr.Call(context.Background(), addr, []byte("x"))
		require.ErrorIs(t, err, transport.ErrUnreachable)
		require.ErrorIs(t, err, transport.ErrNotSent)
		require.ErrorIs(t, err, transport.ErrRefused)
	})

	t.Run("live peer resetting", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
			}
		}()
		tr := newTransport(t)
		_, err = tr.Call(context.Background(), ln.Addr().String(), []byte("x"))
		require.ErrorIs(t, err, transport.ErrUnreachable)
		require.NotErrorIs(t, err, transport.ErrRefused, "a live peer answered the connect")
	})
}
