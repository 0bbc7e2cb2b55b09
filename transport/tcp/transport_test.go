package tcp_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
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

// listenTCP starts a transport on a free loopback port, closed at the end
// of the test. tweak may adjust the configuration.
func listenTCP(t testing.TB, tweak func(*tcp.Config)) *tcp.Transport {
	t.Helper()
	cfg := tcp.DefaultConfig("127.0.0.1:0")
	if tweak != nil {
		tweak(&cfg)
	}
	tr, err := tcp.Listen(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, tr.Close()) })
	return tr
}

// echo is a handler answering each request with a copy of it.
func echo(req []byte) []byte { return append([]byte(nil), req...) }

// gate is a handler that blocks requests starting with "block" until
// release is closed and echoes everything.
type gate struct {
	release chan struct{}
	entered chan struct{} // one value per blocked request
	once    sync.Once
}

func newGate() *gate {
	return &gate{release: make(chan struct{}), entered: make(chan struct{}, 10000)}
}

func (g *gate) handle(req []byte) []byte {
	if bytes.HasPrefix(req, []byte("block")) {
		g.entered <- struct{}{}
		<-g.release
	}
	return echo(req)
}

func (g *gate) open() { g.once.Do(func() { close(g.release) }) }

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, time.Millisecond, msg)
}

func TestTransport_Echo(t *testing.T) {
	a := listenTCP(t, nil)
	b := listenTCP(t, nil)
	b.Serve(echo)
	ctx := context.Background()

	resp, err := a.Call(ctx, b.Addr(), []byte("hello"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(resp))

	resp, err = a.Call(ctx, b.Addr(), nil)
	require.NoError(t, err)
	assert.Empty(t, resp)

	big := bytes.Repeat([]byte("0123456789"), 200_000) // 2 MB: larger than every buffer
	resp, err = a.Call(ctx, b.Addr(), big)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(big, resp))

	st := a.Stats()
	assert.Equal(t, uint64(1), st.Dials)
	assert.Equal(t, uint64(3), st.FramesSent)
	assert.Equal(t, uint64(3), st.FramesReceived)
	assert.Equal(t, uint64(3*wire.HeaderSize+5+len(big)), st.BytesSent)
	assert.Equal(t, 1, st.OpenConns)
	waitFor(t, func() bool { return b.Stats().FramesSent == 3 }, "b counts its responses")
	assert.Equal(t, uint64(1), b.Stats().Accepted)
}

func TestTransport_PipelinesConcurrentCalls(t *testing.T) {
	a := listenTCP(t, nil)
	b := listenTCP(t, nil)
	b.Serve(func(req []byte) []byte { return append([]byte("re:"), req...) })

	const calls = 1000
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			req := []byte("call-" + strconv.Itoa(i))
			resp, err := a.Call(context.Background(), b.Addr(), req)
			switch {
			case err != nil:
				errs <- err
			case string(resp) != "re:call-"+strconv.Itoa(i):
				errs <- fmt.Errorf("call %d got %q", i, resp)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, uint64(1), a.Stats().Dials, "all calls share one connection")
	assert.Equal(t, uint64(calls), a.Stats().FramesReceived)
}

func TestTransport_CallAllocatesOnlyTheResponse(t *testing.T) {
	if raceEnabled() {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	a := listenTCP(t, nil)
	b := listenTCP(t, nil)
	ack := []byte("ok")
	b.Serve(func([]byte) []byte { return ack })
	req := make([]byte, 1024)
	ctx := context.Background()
	_, err := a.Call(ctx, b.Addr(), req)
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := a.Call(ctx, b.Addr(), req); err != nil {
			t.Fatal(err)
		}
	})
	// One allocation is the response the caller owns; allow a little for
	// pools emptied by a garbage collection during the run.
	assert.LessOrEqual(t, allocs, 1.5)
}

func TestTransport_ErrorResponses(t *testing.T) {
	a := listenTCP(t, nil)
	b := listenTCP(t, nil)
	ctx := context.Background()

	_, err := a.Call(ctx, b.Addr(), []byte("x"))
	require.Error(t, err, "before Serve")
	assert.NotErrorIs(t, err, transport.ErrUnreachable)
	assert.Contains(t, err.Error(), "no handler")

	b.Serve(func(req []byte) []byte {
		switch string(req) {
		case "panic":
			panic("handler bug")
		case "huge":
			return make([]byte, 9<<20)
		}
		return echo(req)
	})
	_, err = a.Call(ctx, b.Addr(), []byte("panic"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, transport.ErrUnreachable)
	assert.Contains(t, err.Error(), "handler panicked")
	assert.Equal(t, uint64(1), b.Stats().HandlerPanics)

	_, err = a.Call(ctx, b.Addr(), []byte("huge"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "response too large")

	resp, err := a.Call(ctx, b.Addr(), []byte("still serving"))
	require.NoError(t, err)
	assert.Equal(t, "still serving", string(resp))
	assert.Equal(t, uint64(1), a.Stats().Dials, "error responses keep the connection")
}

func TestTransport_PeerDeathFailsCallsAtOnceAndRedials(t *testing.T) {
	a := listenTCP(t, func(c *tcp.Config) { c.RedialBackoff = 50 * time.Millisecond })
	cfg := tcp.DefaultConfig("127.0.0.1:0")
	b, err := tcp.Listen(cfg)
	require.NoError(t, err)
	addr := b.Addr()
	g := newGate()
	b.Serve(g.handle)
	defer g.open()

	const pending = 10
	errs := make(chan error, pending)
	for range pending {
		go func() {
			_, err := a.Call(context.Background(), addr, []byte("block"))
			errs <- err
		}()
	}
	<-g.entered // b's reader is blocked in the handler; the rest are queued or in flight
	waitFor(t, func() bool { return b.Stats().FramesReceived >= 1 && a.Stats().FramesSent == pending }, "all requests sent")

	start := time.Now()
	closed := make(chan error)
	go func() { closed <- b.Close() }() // b's connections close; Close then waits for the handler
	for range pending {
		err := <-errs
		require.ErrorIs(t, err, transport.ErrUnreachable)
	}
	assert.Less(t, time.Since(start), 500*time.Millisecond, "pending calls fail when the connection does")
	g.open()
	require.NoError(t, <-closed)

	start = time.Now()
	_, err = a.Call(context.Background(), addr, []byte("x"))
	require.ErrorIs(t, err, transport.ErrUnreachable, "nobody listens")
	_, err = a.Call(context.Background(), addr, []byte("x"))
	require.ErrorIs(t, err, transport.ErrUnreachable, "fails fast during the backoff")
	assert.Less(t, time.Since(start), 500*time.Millisecond)
	assert.GreaterOrEqual(t, a.Stats().DialFailures, uint64(1))

	cfg.BindAddr = addr // the process comes back on the same address
	b2, err := tcp.Listen(cfg)
	require.NoError(t, err)
	defer func() { assert.NoError(t, b2.Close()) }()
	b2.Serve(echo)
	waitFor(t, func() bool {
		resp, err := a.Call(context.Background(), addr, []byte("back"))
		return err == nil && string(resp) == "back"
	}, "calls succeed after the peer is back")
	assert.GreaterOrEqual(t, a.Stats().Dials, uint64(3))
}

func TestTransport_SlowPeerDoesNotBlockOthers(t *testing.T) {
	a := listenTCP(t, func(c *tcp.Config) { c.QueueSize = 4 })
	slow := listenTCP(t, func(c *tcp.Config) { c.QueueSize = 4 })
	fast := listenTCP(t, nil)
	g := newGate()
	defer g.open() // before the Cleanups close the transports
	slow.Serve(g.handle)
	fast.Serve(echo)

	// Fill everything between a and slow: its handler, its inbound queue,
	// the socket buffers, a's queue, and then callers blocked on back-pressure.
	const blocked = 2000
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	req := bytes.Repeat([]byte("block"), 4000) // 2000 x 20 KB: more than the socket buffers hold
	for range blocked {
		wg.Go(func() { _, _ = a.Call(ctx, slow.Addr(), req) })
	}
	<-g.entered
	waitFor(t, func() bool { return a.Stats().QueuedFrames == 4 }, "a's queue to the slow peer is full")

	for i := range 100 {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := a.Call(cctx, fast.Addr(), []byte(strconv.Itoa(i)))
		ccancel()
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(i), string(resp))
	}

	cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer ccancel()
	_, err := a.Call(cctx, slow.Addr(), []byte("x"))
	assert.ErrorIs(t, err, context.DeadlineExceeded, "back-pressure ends with the caller's ctx")
}

func TestTransport_ContextEnds(t *testing.T) {
	a := listenTCP(t, nil)
	b := listenTCP(t, nil)
	g := newGate()
	defer g.open()
	b.Serve(g.handle)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := a.Call(ctx, b.Addr(), []byte("x"))
	assert.ErrorIs(t, err, context.Canceled)

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = a.Call(ctx, b.Addr(), []byte("block"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), time.Second)

	g.open() // the late response is dropped; the connection carries on
	resp, err := a.Call(context.Background(), b.Addr(), []byte("next"))
	require.NoError(t, err)
	assert.Equal(t, "next", string(resp))
	assert.Equal(t, uint64(1), a.Stats().Dials)
}

func TestTransport_CallCopiesRequest(t *testing.T) {
	a := listenTCP(t, nil)
	b := listenTCP(t, nil)
	seen := make(chan string, 1)
	release := make(chan struct{})
	b.Serve(func(req []byte) []byte {
		<-release
		seen <- string(req)
		return nil
	})
	req := []byte("original")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := a.Call(ctx, b.Addr(), req); done <- err }()
	waitFor(t, func() bool { return a.Stats().FramesSent == 1 }, "request sent")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	copy(req, "XXXXXXXX") // the caller reuses its slice at once
	close(release)
	assert.Equal(t, "original", <-seen)
}

func TestTransport_FrameTooLarge(t *testing.T) {
	const limit = 1024
	a := listenTCP(t, func(c *tcp.Config) { c.MaxFrameSize = limit })
	b := listenTCP(t, func(c *tcp.Config) { c.MaxFrameSize = 4 * limit })
	b.Serve(echo)
	ctx := context.Background()

	_, err := a.Call(ctx, b.Addr(), make([]byte, limit+1))
	require.ErrorIs(t, err, transport.ErrFrameTooLarge)
	assert.Equal(t, tcp.Stats{}, a.Stats(), "nothing dialed or sent")

	resp, err := a.Call(ctx, b.Addr(), make([]byte, limit))
	require.NoError(t, err, "exactly at the limit")
	assert.Len(t, resp, limit)

	// b sends a request larger than a accepts: a drops the connection.
	_, err = b.Call(ctx, a.Addr(), make([]byte, limit+1))
	require.ErrorIs(t, err, transport.ErrUnreachable)
	assert.Equal(t, uint64(1), a.Stats().RejectedFrames)

	// b answers with a response larger than a accepts: a drops the
	// connection and says why.
	b.Serve(func([]byte) []byte { return make([]byte, limit+1) })
	_, err = a.Call(ctx, b.Addr(), []byte("x"))
	require.ErrorIs(t, err, transport.ErrUnreachable)
	require.ErrorIs(t, err, transport.ErrFrameTooLarge)
	assert.Equal(t, uint64(2), a.Stats().RejectedFrames)
}

func TestTransport_Close(t *testing.T) {
	cfg := tcp.DefaultConfig("127.0.0.1:0")
	a, err := tcp.Listen(cfg)
	require.NoError(t, err)
	b := listenTCP(t, nil)
	g := newGate()
	defer g.open()
	b.Serve(g.handle)
	addr := a.Addr()

	errs := make(chan error, 5)
	for range 5 {
		go func() { _, err := a.Call(context.Background(), b.Addr(), []byte("block")); errs <- err }()
	}
	<-g.entered
	require.NoError(t, a.Close())
	for range 5 {
		assert.ErrorIs(t, <-errs, transport.ErrClosed, "pending calls fail with ErrClosed")
	}
	require.NoError(t, a.Close(), "Close is idempotent")
	_, err = a.Call(context.Background(), b.Addr(), []byte("x"))
	assert.ErrorIs(t, err, transport.ErrClosed)
	_, err = a.Call(context.Background(), b.Addr(), make([]byte, 9<<20))
	assert.ErrorIs(t, err, transport.ErrClosed)

	cfg.BindAddr = addr
	again, err := tcp.Listen(cfg)
	require.NoError(t, err, "the port is released")
	require.NoError(t, again.Close())
}

func TestTransport_CloseFailsCallsToMutePeer(t *testing.T) {
	// A listener that never accepts: the kernel completes the connection
	// into its backlog and takes the request, and no answer ever comes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	a, err := tcp.Listen(tcp.DefaultConfig("127.0.0.1:0"))
	require.NoError(t, err)
	errs := make(chan error, 1)
	go func() {
		_, err := a.Call(context.Background(), ln.Addr().String(), []byte("x"))
		errs <- err
	}()
	waitFor(t, func() bool { return a.Stats().FramesSent == 1 }, "request written to the mute peer")
	require.NoError(t, a.Close())
	assert.ErrorIs(t, <-errs, transport.ErrClosed)
}

// rawConn dials addr without the transport. It is closed at the end of the
// test.
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

func frameHeader(n uint32, id uint64, kind byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, n)
	b = binary.BigEndian.AppendUint64(b, id)
	return append(b, kind)
}

func TestTransport_HostileInput(t *testing.T) {
	srv := listenTCP(t, func(c *tcp.Config) {
		c.HandshakeTimeout = 100 * time.Millisecond
		c.FrameTimeout = 100 * time.Millisecond
	})
	srv.Serve(echo)
	client := listenTCP(t, nil)
	preface := wire.AppendPreface(nil, wire.Preface{})

	tests := []struct {
		name  string
		input []byte
		// closeWrite half-closes after the input; otherwise the client
		// stays silent and a timeout must fire.
		closeWrite bool
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"version 1", []byte("SMSH\x01"), false},
		{"wrong label", []byte("SMSH\x02\x00\x05other"), false},
		{"wrong security", []byte("SMSH\x02\x01\x00"), false},
		{"nothing", nil, false},
		{"half a preface", []byte("SM"), false},
		{"truncated frame", append(append(preface, frameHeader(100, 1, wire.KindRequest)...), "short"...), true},
		{"stalled frame", append(append(preface, frameHeader(100, 1, wire.KindRequest)...), "short"...), false},
		{"4 GiB frame", append(preface, frameHeader(0xFFFFFFFF, 1, wire.KindRequest)...), false},
		{"length below header", append(preface, frameHeader(3, 1, wire.KindRequest)...), false},
		{"unknown kind", append(preface, frameHeader(9, 1, 77)...), false},
		{"response to a server", append(preface, frameHeader(9, 1, wire.KindResponse)...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			c := rawConn(t, srv.Addr())
			_, err := c.Write(tt.input)
			require.NoError(t, err)
			if tt.closeWrite {
				require.NoError(t, c.(*net.TCPConn).CloseWrite())
			}
			requireClosedByPeer(t, c)
			runtime.ReadMemStats(&after)
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(1<<20), "memory allocated for a hostile peer")

			resp, err := client.Call(context.Background(), srv.Addr(), []byte("still here"))
			require.NoError(t, err)
			assert.Equal(t, "still here", string(resp))
		})
	}
	st := srv.Stats()
	assert.Equal(t, uint64(6), st.HandshakeFailures)
	assert.Equal(t, uint64(4), st.RejectedFrames)
	waitFor(t, func() bool { return srv.Stats().OpenConns == 1 }, "only the good client's connection is left")
}

// TestTransport_LargeAnnouncedFrameAllocatesAsItArrives announces a
// frame within the limit but sends only a little of it.
func TestTransport_LargeAnnouncedFrameAllocatesAsItArrives(t *testing.T) {
	srv := listenTCP(t, func(c *tcp.Config) { c.MaxFrameSize = 64 << 20 })
	srv.Serve(echo)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	c := rawConn(t, srv.Addr())
	in := append(wire.AppendPreface(nil, wire.Preface{}), frameHeader(9+60<<20, 1, wire.KindRequest)...)
	_, err := c.Write(append(in, make([]byte, 4096)...))
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	requireClosedByPeer(t, c)
	runtime.ReadMemStats(&after)
	assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(2<<20))
}

func TestTransport_MaxInboundConns(t *testing.T) {
	srv := listenTCP(t, func(c *tcp.Config) { c.MaxInboundConns = 2 })
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

// fakePeer accepts one connection, checks the preface and runs script on it.
func fakePeer(t *testing.T, script func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := wire.ReadPreface(c); err != nil {
			t.Errorf("preface: %v", err)
			return
		}
		script(c)
	}()
	return ln.Addr().String()
}

func TestTransport_HostileResponses(t *testing.T) {
	t.Run("unknown IDs are ignored", func(t *testing.T) {
		addr := fakePeer(t, func(c net.Conn) {
			var hdr [wire.HeaderSize]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			id := binary.BigEndian.Uint64(hdr[4:])
			out := wire.AppendFrame(nil, id+1000, wire.KindResponse, []byte("stray"))
			out = wire.AppendFrame(out, id, wire.KindResponse, []byte("mine"))
			_, _ = c.Write(out)
			_, _ = io.Copy(io.Discard, c)
		})
		a := listenTCP(t, nil)
		resp, err := a.Call(context.Background(), addr, nil)
		require.NoError(t, err)
		assert.Equal(t, "mine", string(resp))
	})
	t.Run("a request on an outbound connection breaks it", func(t *testing.T) {
		addr := fakePeer(t, func(c net.Conn) {
			_, _ = c.Write(wire.AppendFrame(nil, 1, wire.KindRequest, []byte("hi")))
			_, _ = io.Copy(io.Discard, c)
		})
		a := listenTCP(t, nil)
		_, err := a.Call(context.Background(), addr, nil)
		require.ErrorIs(t, err, transport.ErrUnreachable)
		assert.Equal(t, uint64(1), a.Stats().RejectedFrames)
	})
	t.Run("a peer that stops mid-frame times out", func(t *testing.T) {
		addr := fakePeer(t, func(c net.Conn) {
			_, _ = c.Write(frameHeader(100, 1, wire.KindResponse))
			_, _ = io.Copy(io.Discard, c)
		})
		a := listenTCP(t, func(c *tcp.Config) { c.FrameTimeout = 50 * time.Millisecond })
		_, err := a.Call(context.Background(), addr, nil)
		require.ErrorIs(t, err, transport.ErrUnreachable)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
}

func TestListenTCP_Config(t *testing.T) {
	_, err := tcp.Listen(tcp.Config{})
	assert.ErrorContains(t, err, "BindAddr is required")
	_, err = tcp.Listen(tcp.Config{BindAddr: "127.0.0.1:0", QueueSize: -1, DialTimeout: -time.Second})
	assert.ErrorContains(t, err, "QueueSize")
	assert.ErrorContains(t, err, "DialTimeout")
	_, err = tcp.Listen(tcp.Config{BindAddr: "0.0.0.0:0"})
	assert.ErrorContains(t, err, "AdvertiseAddr")

	tr, err := tcp.Listen(tcp.Config{BindAddr: "127.0.0.1:0", AdvertiseAddr: "node1.example:0"})
	require.NoError(t, err)
	defer tr.Close()
	_, port, _ := net.SplitHostPort(tr.Addr())
	assert.NotEqual(t, "0", port)
	assert.Equal(t, "node1.example:"+port, tr.Addr())
}

func TestTransport_ManyPeers(t *testing.T) {
	const n = 5
	nodes := make([]*tcp.Transport, n)
	for i := range nodes {
		nodes[i] = listenTCP(t, nil)
		nodes[i].Serve(echo)
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range nodes {
		for j := range nodes {
			wg.Go(func() {
				for k := range 50 {
					msg := fmt.Sprintf("%d->%d #%d", i, j, k)
					resp, err := nodes[i].Call(context.Background(), nodes[j].Addr(), []byte(msg))
					if err != nil || string(resp) != msg {
						failed.Add(1)
					}
				}
			})
		}
	}
	wg.Wait()
	assert.Zero(t, failed.Load())
}

// A cluster of more than 64 nodes on one address (one host, or nodes behind
// one NAT) forms with the default configuration: every peer of a node
// connects to it from the same IP.
func TestTransport_ManyPeersOnOneAddress(t *testing.T) {
	const peers = 100
	srv := listenTCP(t, nil)
	srv.Serve(echo)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range peers {
		cl := listenTCP(t, nil)
		wg.Go(func() {
			msg := fmt.Sprintf("peer %d", i)
			if resp, err := cl.Call(context.Background(), srv.Addr(), []byte(msg)); err != nil || string(resp) != msg {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	assert.Zero(t, failed.Load(), "every peer on 127.0.0.1 is served")
	assert.Zero(t, srv.Stats().RejectedConns)
}

// Benchmarks: the transport next to a bare TCP request/ack of the same size.

const benchPayload = 1024

func benchPair(b *testing.B) (*tcp.Transport, string) {
	a := listenTCP(b, nil)
	srv := listenTCP(b, nil)
	ack := []byte{1}
	srv.Serve(func([]byte) []byte { return ack })
	return a, srv.Addr()
}

func BenchmarkTransport_Call(b *testing.B) {
	req := bytes.Repeat([]byte{'x'}, benchPayload)
	b.Run("sequential", func(b *testing.B) {
		a, addr := benchPair(b)
		ctx := context.Background()
		_, err := a.Call(ctx, addr, req)
		require.NoError(b, err)
		b.ReportAllocs()
		b.SetBytes(benchPayload)
		b.ResetTimer()
		for b.Loop() {
			if _, err := a.Call(ctx, addr, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel64", func(b *testing.B) {
		a, addr := benchPair(b)
		ctx := context.Background()
		_, err := a.Call(ctx, addr, req)
		require.NoError(b, err)
		b.ReportAllocs()
		b.SetBytes(benchPayload)
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.Call(ctx, addr, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		st := a.Stats()
		b.ReportMetric(float64(st.FramesSent)/float64(max(st.Flushes, 1)), "frames/write")
	})
}

// A connection on which a call waits out its deadline with nothing at all
// received is taken for broken (after a partition, an old connection can
// take seconds of TCP retransmission backoff to deliver again): the next
// call dials a new one instead of queueing behind it.
func TestTransport_SilentConnectionIsReplaced(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := listenTCP(t, nil)
	srv.Serve(func(req []byte) []byte {
		if string(req) == "stall" {
			<-release // this connection's requests go unanswered from now on
		}
		return req
	})
	client := listenTCP(t, nil)
	ctx := context.Background()
	_, err := client.Call(ctx, srv.Addr(), []byte("hello"))
	require.NoError(t, err)
	require.Equal(t, uint64(1), client.Stats().Dials)

	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = client.Call(cctx, srv.Addr(), []byte("stall"))
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)

	cctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := client.Call(cctx, srv.Addr(), []byte("after"))
	require.NoError(t, err, "the call queued behind the stalled connection")
	assert.Equal(t, "after", string(resp))
	assert.Equal(t, uint64(2), client.Stats().Dials)
}

// A call that times out while its connection delivers other answers says
// nothing about the connection: it is kept.
func TestTransport_SlowCallKeepsItsConnection(t *testing.T) {
	srv := listenTCP(t, nil)
	srv.Serve(func(req []byte) []byte { return req })
	client := listenTCP(t, nil)
	ctx := context.Background()
	_, err := client.Call(ctx, srv.Addr(), []byte("hello"))
	require.NoError(t, err)
	cctx, cancel := context.WithTimeout(ctx, time.Nanosecond)
	_, err = client.Call(cctx, srv.Addr(), []byte("too short a deadline"))
	cancel()
	require.Error(t, err)
	_, err = client.Call(ctx, srv.Addr(), []byte("again"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), client.Stats().Dials)
}
