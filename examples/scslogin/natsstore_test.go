package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
)

// startNATSCluster opens n stores, each with its embedded server, in one
// cluster.
func startNATSCluster(t *testing.T, n int) []*natsStore {
	t.Helper()
	addrs, err := procs.FreeAddrs("127.0.0.1", n, procs.TCP)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stores := make([]*natsStore, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = openNATS(ctx, "s"+string(rune('1'+i)), natsOptions{
				clusterAddr: addrs[i], routes: addrs, replicas: n, bucket: "sessions", maxMemory: 64 << 20,
			})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, st := range stores {
			if st != nil {
				st.close()
			}
		}
	})
	for _, err := range errs {
		require.NoError(t, err)
	}
	return stores
}

// TestNATSStore_ReadYourWritesOnEveryServer commits through one server and
// finds the session at once through each of the others, then deletes it.
func TestNATSStore_ReadYourWritesOnEveryServer(t *testing.T) {
	stores := startNATSCluster(t, 3)
	expiry := time.Now().Add(time.Hour)
	for round := range 20 {
		w := stores[round%3]
		v := []byte{byte(round)}
		require.NoError(t, w.Commit("tok", v, expiry))
		for _, r := range stores {
			got, found, err := r.Find("tok")
			require.NoError(t, err)
			require.True(t, found)
			require.Equal(t, v, got, "round %d", round)
		}
	}
	require.NoError(t, stores[0].Delete("tok"))
	_, found, err := stores[1].Find("tok")
	require.NoError(t, err)
	assert.False(t, found)
	_, found, err = stores[2].Find("never")
	require.NoError(t, err)
	assert.False(t, found)

	require.NoError(t, stores[0].Commit("old", []byte("x"), time.Now().Add(-time.Second)))
	_, found, err = stores[1].Find("old")
	require.NoError(t, err)
	assert.False(t, found, "an expired session is not found")
	require.NoError(t, stores[2].ping(context.Background()))
}
