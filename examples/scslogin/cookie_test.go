package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testCookieSecret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

// newCookieServer returns a -store cookie server named name.
func newCookieServer(t *testing.T, name, secret string) *httptest.Server {
	t.Helper()
	o := options{name: name, store: "cookie", cookieSecret: secret, idleTimeout: 30 * time.Minute, lifetime: time.Hour}
	a, err := newApp(t.Context(), o, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	srv := httptest.NewServer(a.cookies.routes())
	t.Cleanup(srv.Close)
	return srv
}

// call sends a request with cookie (if any) and returns the status, the
// JSON answer and the session cookie set, if any.
func call(t *testing.T, method, u string, form url.Values, cookie string) (int, map[string]any, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var v map[string]any
	require.NoError(t, json.Unmarshal(b, &v), string(b))
	set := ""
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			set = c.Value
		}
	}
	return resp.StatusCode, v, set
}

// TestCookie_SessionTravelsBetweenServers logs in on one server and
// visits through the others: every server with the secret reads the
// cookie, none keeps anything.
func TestCookie_SessionTravelsBetweenServers(t *testing.T) {
	servers := []*httptest.Server{
		newCookieServer(t, "c1", testCookieSecret),
		newCookieServer(t, "c2", testCookieSecret),
		newCookieServer(t, "c3", testCookieSecret),
	}
	code, v, cookie := call(t, http.MethodPost, servers[0].URL+"/login", url.Values{"user": {"ann"}, "password": {"demo"}}, "")
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, cookie)
	assert.Equal(t, "ann", v["user"])
	for i := range 6 {
		code, v, next := call(t, http.MethodPost, servers[i%3].URL+"/visit", nil, cookie)
		require.Equal(t, http.StatusOK, code)
		assert.Equal(t, "ann", v["user"])
		assert.InDelta(t, i+1, v["visits"], 0)
		cookie = next
	}
	code, v, _ = call(t, http.MethodGet, servers[1].URL+"/me", nil, cookie)
	require.Equal(t, http.StatusOK, code)
	assert.InDelta(t, 6, v["visits"], 0)
	assert.Equal(t, "c2", v["node"])

	// A cookie signed with another secret, or altered, is no session.
	other := newCookieServer(t, "x", strings.Repeat("ab", 32))
	code, _, _ = call(t, http.MethodGet, other.URL+"/me", nil, cookie)
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _, _ = call(t, http.MethodGet, servers[0].URL+"/me", nil, cookie[:len(cookie)-2]+"AA")
	assert.Equal(t, http.StatusUnauthorized, code)

	// Logging out drops the browser's copy only: the old cookie still works.
	code, _, cleared := call(t, http.MethodPost, servers[2].URL+"/logout", nil, cookie)
	require.Equal(t, http.StatusOK, code)
	assert.Empty(t, cleared)
	code, _, _ = call(t, http.MethodGet, servers[0].URL+"/me", nil, cookie)
	assert.Equal(t, http.StatusOK, code, "logout is not final with cookie sessions")

	_, err := newApp(t.Context(), options{store: "cookie", cookieSecret: "abcd"}, slog.New(slog.DiscardHandler))
	assert.Error(t, err)
	_, err = newApp(t.Context(), options{store: "cookie"}, slog.New(slog.DiscardHandler))
	assert.ErrorIs(t, err, errNoCookieSecret)
}
