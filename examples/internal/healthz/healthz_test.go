package healthz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestGetAllAndSettled(t *testing.T) {
	settled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"ready":true,"fully_replicated":true,"members":["b","a"],"owned_partitions":7,"ready_partitions":7,"peers":1}`))
	}))
	defer settled.Close()
	behind := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"ready":true,"fully_replicated":false,"under_replicated":3,"members":["a"],"owned_partitions":7,"ready_partitions":5,"peers":0}`))
	}))
	defer behind.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html>"))
	}))
	defer garbage.Close()
	client := &http.Client{}
	defer client.CloseIdleConnections()

	hs := GetAll(context.Background(), client, []string{settled.URL, behind.URL, garbage.URL})
	live := []string{"a", "b"}

	ok, why := hs[0].Settled(live)
	assert.True(t, ok, why)
	assert.True(t, hs[0].Sees(live))

	ok, why = hs[1].Settled(live)
	assert.False(t, ok)
	assert.Equal(t, "status 503, members a (want a,b), store peers 0 (want 1), 5 of 7 owned partitions ready, not fully replicated (under_replicated 3)", why)

	ok, why = hs[2].Settled(live)
	assert.False(t, ok)
	assert.Contains(t, why, "unreadable body")
	assert.False(t, hs[2].Sees(live))
}
