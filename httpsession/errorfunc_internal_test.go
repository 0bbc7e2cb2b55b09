package httpsession

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sessionmesh/sessionmesh/replication"
)

// A node whose clock is off refuses writes for a while, so does one cut
// off from most of the cluster, and a full node refuses new sessions: the browser is told to come back (and the balancer
// sends it elsewhere), not that the server broke.
func TestDefaultErrorFunc(t *testing.T) {
	for _, tc := range []struct {
		err        error
		code       int
		retryAfter string
	}{
		{fmt.Errorf("save session: %w", replication.ErrClockOffset), http.StatusServiceUnavailable, "5"},
		{fmt.Errorf("save session: %w", replication.ErrOverloaded), http.StatusServiceUnavailable, "10"},
		{fmt.Errorf("read session: %w", replication.ErrMinority), http.StatusServiceUnavailable, "5"},
		{fmt.Errorf("read session: %w", replication.ErrUnreachable), http.StatusInternalServerError, ""},
		{errors.New("disk on fire"), http.StatusInternalServerError, ""},
	} {
		w := httptest.NewRecorder()
		New(nil).ErrorFunc(w, httptest.NewRequest("GET", "/", nil), tc.err)
		assert.Equal(t, tc.code, w.Code, "%v", tc.err)
		assert.Equal(t, tc.retryAfter, w.Header().Get("Retry-After"))
	}
}

func TestDefaultErrorFunc_OverloadRetryAfter(t *testing.T) {
	m := New(nil)
	m.OverloadRetryAfter = 1500 * time.Millisecond
	w := httptest.NewRecorder()
	m.ErrorFunc(w, httptest.NewRequest("GET", "/", nil), replication.ErrOverloaded)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "2", w.Header().Get("Retry-After"), "rounded up to whole seconds")
}
