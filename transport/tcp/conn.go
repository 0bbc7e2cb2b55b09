package tcp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/wire"
	"github.com/sessionmesh/sessionmesh/transport"
)

// frame is an encoded frame on its way to a writer. Frames are pooled.
type frame struct{ b []byte }

// getFrame returns a pooled frame buffer with room for n bytes.
func (t *Transport) getFrame(n int) *frame {
	f, _ := t.frames.Get().(*frame)
	if f == nil {
		f = &frame{}
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
func (t *Transport) putFrame(f *frame) {
	if cap(f.b) > tcpMaxPooledBuf {
		f.b = nil
	}
	f.b = f.b[:0]
	t.frames.Put(f)
}

// result is what a pending call receives: a response or error frame,
// or the error that failed its connection.
type result struct {
	kind    byte
	payload []byte
	err     error
}

func (t *Transport) getResult() chan result {
	if ch, ok := t.results.Get().(chan result); ok {
		return ch
	}
	return make(chan result, 1)
}

// conn is one established connection, outbound (it carries our
// requests and their responses) or inbound (the peer's requests).
type conn struct {
	t        *Transport
	nc       net.Conn   // what frames are read from and written to: raw, or TLS over raw
	raw      net.Conn   // the TCP connection, closed by fail
	hs       *handshake // the keys that authenticated it; nil without a cluster secret
	remote   string
	outbound bool
	peer     *peer         // the peer of an outbound connection
	queue    chan *frame   // frames for writeLoop
	closing  chan struct{} // closed by fail
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
	pending    map[uint64]chan result // outbound calls awaiting a response
	drainTimer *time.Timer            // closes a retired inbound connection
}

// Errors that end or retire connections without being failures.
var (
	// errRetired is returned by roundTrip on a retired connection
	// before anything was sent: Call then uses a new connection.
	errRetired = errors.New("tcp: connection retired")
	// errTCPDrained closes a retired connection whose calls are all
	// answered.
	errTCPDrained = errors.New("tcp: retired connection drained")
	// errTCPSilent closes an outbound connection on which a call timed
	// out with nothing at all received meanwhile.
	errTCPSilent = errors.New("tcp: nothing received on the connection while a call waited out its deadline")
)

// silentMin is how long a call must have waited, with nothing received
// on its connection, before its timeout closes the connection. After a
// partition, a connection established before it can take seconds to
// deliver again (TCP retransmission backs off exponentially), while a
// new one connects as soon as the network lets it; a caller's short
// deadline alone says nothing about the connection.
const silentMin = 100 * time.Millisecond

// maxRetiredAttempts bounds how many retired connections one Call
// tries before it gives up.
const maxRetiredAttempts = 3

func (t *Transport) newConn(nc, raw net.Conn, hs *handshake, remote string, outbound bool) *conn {
	c := &conn{
		t:        t,
		nc:       nc,
		raw:      raw,
		hs:       hs,
		remote:   remote,
		outbound: outbound,
		queue:    make(chan *frame, t.cfg.QueueSize),
		closing:  make(chan struct{}),
		room:     make(chan struct{}, 1),
		goAway:   make(chan struct{}),
	}
	if outbound {
		c.pending = map[uint64]chan result{}
	}
	return c
}

// usesKey reports whether pub authenticated c, on either side.
func (c *conn) usesKey(pub pubKey) bool {
	return c.hs != nil && (c.hs.local == pub || c.hs.peer == pub)
}

// retire takes c out of service without failing a call. An outbound
// connection stops taking calls, so that the next call dials a new one,
// and closes once its pending calls are answered. An inbound connection
// asks its peer to do the same with a go-away frame and is closed after
// DrainTimeout at the latest.
func (c *conn) retire(reason string) {
	c.retireOnce.Do(func() {
		c.mu.Lock()
		dead := c.dead
		c.mu.Unlock()
		if dead {
			return
		}
		c.t.st.retiredConns.Add(1)
		c.t.log.Info("tcp: retiring connection", "remote", c.remote, "outbound", c.outbound, "reason", reason)
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
// answer. It returns errRetired, having sent nothing, when c has been
// retired.
func (c *conn) roundTrip(ctx context.Context, req []byte) ([]byte, error) {
	t := c.t
	ch := t.getResult()
	f := t.getFrame(wire.FrameLen(len(req)))
	c.mu.Lock()
	if c.dead || c.draining {
		err := c.failErr
		if c.draining || errors.Is(err, errTCPDrained) {
			err = errRetired
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
			return nil, fmt.Errorf("tcp: %s answered with an error: %s", c.remote, r.payload)
		default:
			return nil, r.err
		}
	case <-ctx.Done():
		err := c.abandon(id, ch, ctx.Err())
		if errors.Is(err, context.DeadlineExceeded) && time.Since(sent) >= silentMin && c.received.Load() == seen {
			c.fail(errTCPSilent) // the next call dials afresh
		}
		return nil, err
	}
}

// enqueue queues f for writeLoop if there is room, and reports whether it
// did.
func (c *conn) enqueue(f *frame) bool {
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
func (c *conn) abandon(id uint64, ch chan result, err error) error {
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
// once: with transport.ErrClosed when the transport is closing, else with an error
// wrapping transport.ErrUnreachable and cause. Only the first call has an effect.
func (c *conn) fail(cause error) {
	c.once.Do(func() {
		callErr := transport.ErrClosed
		quiet := errors.Is(cause, transport.ErrClosed) || errors.Is(cause, errTCPDrained)
		if !errors.Is(cause, transport.ErrClosed) {
			callErr = fmt.Errorf("tcp: connection to %s: %w: %w", c.remote, transport.ErrUnreachable, cause)
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
			ch <- result{err: callErr}
		}
		c.onClose()
		if errors.Is(cause, transport.ErrClosed) {
			return
		}
		if fn := c.t.onLost.Load(); fn != nil && c.outbound && c.peer != nil && !quiet {
			(*fn)(c.peer.addr)
		}
		level := slog.LevelInfo
		switch {
		case errors.Is(cause, io.EOF), errors.Is(cause, errTCPDrained):
			level = slog.LevelDebug // the peer closed it (a restart or a Close), or it was retired
		case errors.Is(cause, transport.ErrFrameTooLarge), errors.Is(cause, wire.ErrMalformed), errors.Is(cause, errWrongFrame):
			level = slog.LevelWarn
		}
		c.t.log.Log(context.Background(), level, "tcp: connection closed",
			"remote", c.remote, "outbound", c.outbound, "pending", len(pending), "err", cause)
	})
}

// writeLoop writes queued frames until the connection closes. It writes
// every frame in the queue into its buffer before flushing, so frames
// queued together leave in as few system calls as the buffer allows.
func (c *conn) writeLoop() {
	t := c.t
	bw := bufio.NewWriterSize(&timedWriter{nc: c.nc, timeout: t.cfg.FrameTimeout}, tcpWriteBufSize)
	goAway := c.goAway
	for {
		var f *frame
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

// timedWriter gives every write to nc at least half of timeout before it
// times out, renewing the deadline only when it runs low so most writes set
// no deadline at all.
type timedWriter struct {
	nc      net.Conn
	timeout time.Duration
	renewAt time.Time
}

func (w *timedWriter) Write(p []byte) (int, error) {
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
func (c *conn) readLoop() {
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
				err = fmt.Errorf("%w: %w", transport.ErrFrameTooLarge, err)
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
				c.fail(errWrongFrame)
				return
			case wire.KindGoAway:
				c.retire("the peer asked: " + string(f.Payload[:min(len(f.Payload), 64)]))
			case wire.KindError:
				if f.ID == 0 { // a clear-text transport's refusal of the preface
					c.fail(&refusedError{reason: string(f.Payload[:min(len(f.Payload), wire.MaxRefusalLen)])})
					return
				}
				c.deliver(f)
			default:
				c.deliver(f)
			}
			continue
		}
		if f.Kind != wire.KindRequest {
			t.st.rejectedFrames.Add(1)
			c.fail(errWrongFrame)
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
func (c *conn) awaitRoom() bool {
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
func (c *conn) awaitFrame(br *bufio.Reader, deadlineSet *bool) error {
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
func (c *conn) deliver(f wire.Frame) {
	c.received.Add(1)
	c.mu.Lock()
	ch, ok := c.pending[f.ID]
	delete(c.pending, f.ID)
	drained := c.draining && len(c.pending) == 0
	c.mu.Unlock()
	if ok {
		ch <- result{kind: f.Kind, payload: f.Payload}
	}
	if drained {
		c.fail(errTCPDrained)
	}
}
