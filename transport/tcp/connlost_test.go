package tcp_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTransport_OnConnLost checks that a peer's Close (as the kernel
// closes a killed process's connections) reports the peer's address at
// once, and that a connection retired by a key rotation is not reported.
func TestTransport_OnConnLost(t *testing.T) {
	oldKey, newKey := newSecret(), newSecret()
	a := listenTCP(t, withSecret(oldKey, "", newKey))
	b := listenTCP(t, withSecret(oldKey, "", newKey))
	b.Serve(echo)
	var mu sync.Mutex
	var lost []string
	a.OnConnLost(func(addr string) {
		mu.Lock()
		lost = append(lost, addr)
		mu.Unlock()
	})
	reported := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), lost...)
	}
	ctx := context.Background()
	_, err := a.Call(ctx, b.Addr(), []byte("x"))
	require.NoError(t, err)

	require.NoError(t, a.UseKey(newKey))
	require.NoError(t, b.UseKey(newKey))
	require.NoError(t, b.RemoveKey(oldKey))
	waitFor(t, func() bool { return a.Stats().RetiredConns == 1 }, "the connection is retired")
	_, err = a.Call(ctx, b.Addr(), []byte("y"))
	require.NoError(t, err)
	waitFor(t, func() bool { return a.Stats().OpenConns == 1 }, "the retired connection is closed")
	assert.Empty(t, reported(), "a retired connection is not lost")

	require.NoError(t, b.Close())
	waitFor(t, func() bool { return len(reported()) == 1 }, "the peer's close is reported")
	assert.Equal(t, []string{b.Addr()}, reported())
}
