package memnet_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/sessionmesh/sessionmesh/internal/memnet"
	"github.com/sessionmesh/sessionmesh/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	errUnreachable = transport.ErrUnreachable
	errClosed      = transport.ErrClosed
)

func newNet(seed int64) *memnet.Network { return memnet.New(seed) }

// served returns a node at addr serving an echo handler that counts its runs.
func served(n *memnet.Network, addr string, runs *atomic.Int64) *memnet.Node {
	nd := n.Node(addr)
	nd.Serve(func(req []byte) []byte {
		if runs != nil {
			runs.Add(1)
		}
		return req
	})
	return nd
}

func TestNode_CallCopiesBothWays(t *testing.T) {
	n := newNet(1)
	a := n.Node("a")
	b := n.Node("b")
	var kept []byte
	shared := []byte("response")
	b.Serve(func(req []byte) []byte {
		kept = req // breaks the contract on purpose
		req[0] = 'X'
		return shared
	})
	req := []byte("request")
	resp, err := a.Call(context.Background(), "b", req)
	require.NoError(t, err)
	assert.Equal(t, "request", string(req), "the handler wrote to its own copy")
	assert.Equal(t, "response", string(resp))
	shared[0] = 'Y'
	assert.Equal(t, "response", string(resp), "the caller owns a copy of the response")
	assert.NotEqual(t, "Xequest", string(kept), "a request kept past the handler is poisoned")
	assert.Equal(t, "b", b.Addr())
}

func TestNode_EchoOfRequestIsSafe(t *testing.T) {
	n := newNet(1)
	a := n.Node("a")
	served(n, "b", nil)
	resp, err := a.Call(context.Background(), "b", []byte("ping"))
	require.NoError(t, err)
	assert.Equal(t, "ping", string(resp))
}

func TestNode_UnknownClosedAndRestarted(t *testing.T) {
	n := newNet(1)
	ctx := context.Background()
	a := n.Node("a")
	b := served(n, "b", nil)

	_, err := a.Call(ctx, "nobody", []byte("x"))
	assert.ErrorIs(t, err, errUnreachable)
	assert.ErrorIs(t, err, transport.ErrRefused, "no node listens there")
	assert.ErrorIs(t, err, transport.ErrNotSent)

	require.NoError(t, b.Close())
	require.NoError(t, b.Close(), "Close is idempotent")
	_, err = a.Call(ctx, "b", []byte("x"))
	assert.ErrorIs(t, err, errUnreachable)
	assert.ErrorIs(t, err, transport.ErrRefused, "a closed node refuses, like a killed process")
	_, err = b.Call(ctx, "a", []byte("x"))
	assert.ErrorIs(t, err, errClosed)

	assert.Panics(t, func() { n.Node("a") }, "an open node holds the address")
	served(n, "b", nil) // restart
	resp, err := a.Call(ctx, "b", []byte("again"))
	require.NoError(t, err)
	assert.Equal(t, "again", string(resp))
	_, err = b.Call(ctx, "a", nil)
	assert.ErrorIs(t, err, errClosed, "the old node stays closed")
}

func TestNode_NoHandlerIsNotUnreachable(t *testing.T) {
	n := newNet(1)
	a := n.Node("a")
	n.Node("b")
	_, err := a.Call(context.Background(), "b", []byte("x"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, errUnreachable)
	assert.Contains(t, err.Error(), "no handler")
}

func TestNode_CallHonoursCanceledContext(t *testing.T) {
	n := newNet(1)
	a := n.Node("a")
	var runs atomic.Int64
	served(n, "b", &runs)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := a.Call(ctx, "b", nil)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Zero(t, runs.Load())
}

func TestNetwork_Partition(t *testing.T) {
	n := newNet(1)
	ctx := context.Background()
	nodes := map[string]*memnet.Node{}
	for _, addr := range []string{"a", "b", "c", "d", "e"} {
		nodes[addr] = served(n, addr, nil)
	}
	reach := func(from, to string) bool {
		_, err := nodes[from].Call(ctx, to, []byte("x"))
		if err != nil {
			require.ErrorIs(t, err, errUnreachable)
			require.NotErrorIs(t, err, transport.ErrRefused, "a partition is silence, not proof of death")
		}
		return err == nil
	}

	n.Partition([]string{"a", "b"}, []string{"c"})
	assert.True(t, reach("a", "b"))
	assert.True(t, reach("b", "a"))
	assert.False(t, reach("a", "c"))
	assert.False(t, reach("c", "b"))
	assert.True(t, reach("d", "e"), "unnamed nodes form one group")
	assert.False(t, reach("d", "a"))
	assert.False(t, reach("c", "e"))

	n.Partition([]string{"a"}) // replaces the previous partition
	assert.False(t, reach("a", "b"))
	assert.True(t, reach("b", "c"))

	n.Heal()
	for from := range nodes {
		for to := range nodes {
			assert.True(t, reach(from, to), "%s -> %s after Heal", from, to)
		}
	}
}

func TestNetwork_Drop(t *testing.T) {
	ctx := context.Background()
	t.Run("all", func(t *testing.T) {
		n := newNet(1)
		a := n.Node("a")
		var runs atomic.Int64
		served(n, "b", &runs)
		n.Drop("a", "b", 1)
		_, err := a.Call(ctx, "b", []byte("x"))
		assert.ErrorIs(t, err, errUnreachable)
		assert.NotErrorIs(t, err, transport.ErrRefused)
		assert.Zero(t, runs.Load(), "a dropped request never reaches the handler")
		_, err = n.Node("c").Call(ctx, "b", []byte("x"))
		assert.NoError(t, err, "other links are unaffected")
		n.Drop("a", "b", 0)
		_, err = a.Call(ctx, "b", []byte("x"))
		assert.NoError(t, err)
	})
	t.Run("deterministic by seed", func(t *testing.T) {
		pattern := func(seed int64) []bool {
			n := newNet(seed)
			a := n.Node("a")
			served(n, "b", nil)
			n.Drop("a", "b", 0.5)
			out := make([]bool, 200)
			for i := range out {
				_, err := a.Call(ctx, "b", nil)
				out[i] = err == nil
			}
			return out
		}
		p1 := pattern(42)
		assert.Equal(t, p1, pattern(42))
		assert.NotEqual(t, p1, pattern(43))
		ok := 0
		for _, b := range p1 {
			if b {
				ok++
			}
		}
		assert.InDelta(t, 100, ok, 30)
	})
}

func TestNetwork_DropResponses(t *testing.T) {
	n := newNet(1)
	a := n.Node("a")
	var runs atomic.Int64
	served(n, "b", &runs)
	n.DropResponses("a", "b", 1)
	_, err := a.Call(context.Background(), "b", []byte("x"))
	assert.ErrorIs(t, err, errUnreachable)
	assert.Equal(t, int64(1), runs.Load(), "the handler ran; only the response was lost")
	st := n.Stats()[memnet.Link{From: "a", To: "b"}]
	assert.Equal(t, uint64(1), st.DroppedResponses)
	assert.Equal(t, uint64(1), st.Delivered)
}

func TestNetwork_Delay(t *testing.T) {
	const d = 30 * time.Millisecond
	n := newNet(1)
	a := n.Node("a")
	var runs atomic.Int64
	b := served(n, "b", &runs)
	n.Delay("a", "b", d)

	start := time.Now()
	_, err := a.Call(context.Background(), "b", nil)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, time.Since(start), d)

	n.Delay("a", "b", time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = b.Call(ctx, "a", nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no handler", "the delay is per direction: b -> a is not delayed")

	ctx, cancel = context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, err = a.Call(ctx, "b", nil)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, int64(1), runs.Load(), "a call that timed out in the delay does not run the handler")

	t.Run("closing the callee fails the delayed call", func(t *testing.T) {
		errc := make(chan error, 1)
		go func() { _, err := a.Call(context.Background(), "b", nil); errc <- err }()
		waitFor(t, func() bool { return n.Stats()[memnet.Link{From: "a", To: "b"}].Calls == 3 })
		require.NoError(t, b.Close())
		assert.ErrorIs(t, <-errc, errUnreachable)
	})
	t.Run("closing the caller fails the delayed call", func(t *testing.T) {
		served(n, "b", &runs)
		errc := make(chan error, 1)
		go func() { _, err := a.Call(context.Background(), "b", nil); errc <- err }()
		waitFor(t, func() bool { return n.Stats()[memnet.Link{From: "a", To: "b"}].Calls == 4 })
		require.NoError(t, a.Close())
		assert.ErrorIs(t, <-errc, errClosed)
	})
}

func TestNode_CloseWaitsForRunningHandlers(t *testing.T) {
	n := newNet(1)
	a, b, c := n.Node("a"), n.Node("b"), n.Node("c")
	entered, release, closed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	b.Serve(func(req []byte) []byte {
		if string(req) != "x" {
			return req // the polls below
		}
		close(entered)
		<-release
		select {
		case <-closed:
			t.Error("Close returned while a handler was running")
		default:
		}
		return req
	})
	callDone := make(chan error, 1)
	go func() { _, err := a.Call(context.Background(), "b", []byte("x")); callDone <- err }()
	<-entered
	go func() { _ = b.Close(); close(closed) }()
	waitFor(t, func() bool { // b is closed: Close is waiting for the handler
		_, err := c.Call(context.Background(), "b", nil)
		return errors.Is(err, errUnreachable)
	})
	close(release)
	<-closed
	assert.NoError(t, <-callDone, "the request was handled before Close")
}

func TestNetwork_Stats(t *testing.T) {
	n := newNet(1)
	ctx := context.Background()
	a := n.Node("a")
	served(n, "b", nil)
	n.Node("c")
	_, _ = a.Call(ctx, "b", []byte("12345"))
	_, _ = a.Call(ctx, "b", []byte("123"))
	_, _ = a.Call(ctx, "c", []byte("1"))
	_, _ = a.Call(ctx, "z", []byte("1"))
	n.Drop("a", "b", 1)
	_, _ = a.Call(ctx, "b", []byte("1"))

	st := n.Stats()
	assert.Equal(t, memnet.LinkStats{Calls: 3, Delivered: 2, DroppedRequests: 1, RequestBytes: 8, ResponseBytes: 8},
		st[memnet.Link{From: "a", To: "b"}])
	assert.Equal(t, memnet.LinkStats{Calls: 1, Refused: 1}, st[memnet.Link{From: "a", To: "c"}], "no handler")
	assert.Equal(t, memnet.LinkStats{Calls: 1, Refused: 1}, st[memnet.Link{From: "a", To: "z"}])
}

func TestNetwork_ConcurrentCalls(t *testing.T) {
	n := newNet(7)
	nodes := []*memnet.Node{served(n, "a", nil), served(n, "b", nil), served(n, "c", nil)}
	n.Drop("a", "b", 0.2)
	n.Delay("b", "c", time.Microsecond)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			from := nodes[i%3]
			to := nodes[(i+1)%3].Addr()
			for range 50 {
				resp, err := from.Call(context.Background(), to, []byte{byte(i)})
				if err == nil && (len(resp) != 1 || resp[0] != byte(i)) {
					t.Errorf("got %v, want [%d]", resp, i)
				}
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			n.Partition([]string{"a"})
			n.Heal()
		}
	})
	wg.Wait()
	total := uint64(0)
	for _, s := range n.Stats() {
		total += s.Calls
	}
	assert.Equal(t, uint64(1500), total)
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, time.Millisecond)
}

func TestNetwork_Refuse(t *testing.T) {
	n := newNet(1)
	ctx := context.Background()
	var runs atomic.Int64
	a, b := served(n, "a", nil), served(n, "b", &runs)
	defer a.Close()
	defer b.Close()

	n.Refuse("a", "b", "another cluster label")
	_, err := a.Call(ctx, "b", []byte("x"))
	require.ErrorIs(t, err, transport.ErrHandshake)
	require.ErrorIs(t, err, transport.ErrNotSent)
	require.NotErrorIs(t, err, transport.ErrRefused, "the refusing node is alive")
	assert.ErrorContains(t, err, "another cluster label")
	assert.Zero(t, runs.Load(), "a refused call never reaches the handler")
	_, err = b.Call(ctx, "a", []byte("x"))
	require.NoError(t, err, "a refusal has a direction")

	n.Refuse("a", "b", "")
	_, err = a.Call(ctx, "b", []byte("x"))
	require.NoError(t, err)
}
