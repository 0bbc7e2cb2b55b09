package httpsession

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sessionmesh/sessionmesh/replication"
)

// A node whose clock is off refuses writes for a while: the browser is told
// to come back (and the balancer sends it elsewhere), not that the server
// broke.
func TestDefaultErrorFunc(t *testing.T) {
	for _, tc := range []struct {
		err        error
		code       int
		retryAfter string
	}{
		{fmt.Errorf("save session: %w", replication.ErrClockOffset), http.StatusServiceUnavailable, "5"},
		{errors.New("disk on fire"), http.StatusInternalServerError, ""},
	} {
		w := httptest.NewRecorder()
		defaultErrorFunc(w, httptest.NewRequest("GET", "/", nil), tc.err)
		assert.Equal(t, tc.code, w.Code, "%v", tc.err)
		assert.Equal(t, tc.retryAfter, w.Header().Get("Retry-After"))
	}
}
