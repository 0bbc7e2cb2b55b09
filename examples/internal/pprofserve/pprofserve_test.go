package pprofserve

import (
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestListenAndServe(t *testing.T) {
	srv, err := ListenAndServe("127.0.0.1:0")
	require.NoError(t, err)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap?debug=1"} {
		resp, err := c.Get("http://" + srv.Addr() + path)
		require.NoError(t, err, path)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
	require.NoError(t, srv.Close())
	require.NoError(t, srv.Close())
	_, err = c.Get("http://" + srv.Addr() + "/debug/pprof/")
	assert.Error(t, err)
}
