package httpsession_test

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
)

// floodCookie returns the Cookie header of the i-th request of a flood:
// none, a well-formed but unknown ID, or garbage.
func floodCookie(i int) string {
	switch i % 3 {
	case 0:
		return ""
	case 1:
		var b [32]byte
		_, _ = rand.Read(b[:])
		return "session=" + base64.RawURLEncoding.EncodeToString(b[:])
	default:
		return "session=" + string(rune('a'+i%26)) + "; other=x"
	}
}

// TestManager_FloodOfAnonymousRequestsCreatesNoState sends thousands of
// requests without a cookie, with random well-formed IDs and with garbage,
// to read-only pages: no session is created, nothing is written or
// replicated, and no cookie is set.
func TestManager_FloodOfAnonymousRequestsCreatesNoState(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Seed: 1})
	a, b := c.Start("a"), c.Start("b")
	c.WaitReady(t)
	m := httpsession.New(a.Store)
	h := app(m)
	const requests, workers = 12_000, 8
	var wg sync.WaitGroup
	var setCookies, notOK sync.Map
	for w := range workers {
		wg.Go(func() {
			for i := w; i < requests; i += workers {
				path := "/me"
				if i%2 == 0 {
					path = "/nothing"
				}
				req := httptest.NewRequest("GET", path, nil)
				if ck := floodCookie(i); ck != "" {
					req.Header.Set("Cookie", ck)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if v := rec.Result().Header.Values("Set-Cookie"); len(v) > 0 {
					setCookies.Store(i, v)
				}
				if want := map[string]int{"/me": http.StatusUnauthorized, "/nothing": http.StatusOK}[path]; rec.Code != want {
					notOK.Store(i, rec.Code)
				}
			}
		})
	}
	wg.Wait()
	setCookies.Range(func(k, v any) bool { t.Errorf("request %v set a cookie: %v", k, v); return false })
	notOK.Range(func(k, v any) bool { t.Errorf("request %v answered %v", k, v); return false })
	for _, n := range []*testcluster.Node{a, b} {
		st := n.Store.Stats()
		assert.Zero(t, st.Sessions, "sessions on %s", n.Name)
		assert.Zero(t, st.Writes, "writes on %s", n.Name)
	}
}

// FuzzLoadAndSave sends requests with arbitrary Cookie headers through the
// middleware: it never fails or panics, never sets a cookie and never
// writes for a request that stores nothing, whatever the cookie.
func FuzzLoadAndSave(f *testing.F) {
	c := testcluster.New(f, testcluster.Options{Seed: 1})
	n := c.Start("a")
	c.WaitReady(f)
	h := app(httpsession.New(n.Store))
	for _, seed := range []string{
		"",
		"session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
		"session=garbage",
		"session=\x00\x01; session=AAAA",
		"session=" + string(make([]byte, 5000)),
		`session="quoted"; other=1`,
		"session=../../etc/passwd",
		";;;=;=session",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, cookie string) {
		req := httptest.NewRequest("GET", "/nothing", nil)
		req.Header.Set("Cookie", cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code)
		require.Empty(t, rec.Result().Header.Values("Set-Cookie"))
		st := n.Store.Stats()
		require.Zero(t, st.Writes)
		require.Zero(t, st.Sessions)
	})
}
