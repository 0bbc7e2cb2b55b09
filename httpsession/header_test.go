package httpsession_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

const sessionHeader = "X-Session-Id"

// apiCall makes a request as an API client: no cookie jar; the session ID
// travels in sessionHeader when send is true (with the value id, possibly
// empty).
func apiCall(t *testing.T, method, u string, form url.Values, id string, send bool) (int, string, http.Header) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if send {
		req.Header[sessionHeader] = []string{id}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b), resp.Header
}

func newHeaderWeb(t *testing.T, opts testcluster.Options) []*httptest.Server {
	c := testcluster.New(t, opts)
	var servers []*httptest.Server
	for i := 0; i < 3; i++ {
		m := httpsession.New(c.Start(fmt.Sprint("n", i)).Store)
		m.Cookie.Secure = false
		m.Header = sessionHeader
		srv := httptest.NewServer(app(m))
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
	}
	c.WaitReady(t)
	return servers
}

func TestManager_HeaderCarriesTheSessionIDForAPIClients(t *testing.T) {
	servers := newHeaderWeb(t, testcluster.Options{Seed: 1})
	// An empty header asks for a session in header mode.
	code, _, h := apiCall(t, "POST", servers[0].URL+"/login", url.Values{"user": {"ann"}}, "", true)
	require.Equal(t, http.StatusOK, code)
	id := h.Get(sessionHeader)
	require.Len(t, id, 43, "the new ID comes back in the header")
	assert.Empty(t, h.Values("Set-Cookie"), "no cookie in header mode")
	assert.Contains(t, h.Values("Vary"), sessionHeader)

	for _, srv := range servers {
		code, body, h := apiCall(t, "GET", srv.URL+"/me", nil, id, true)
		assert.Equal(t, http.StatusOK, code)
		assert.Equal(t, "ann", body)
		assert.Empty(t, h.Values(sessionHeader), "an unchanged ID is not sent again")
	}
	code, _, _ = apiCall(t, "GET", servers[1].URL+"/me", nil, id, false)
	assert.Equal(t, http.StatusUnauthorized, code, "without the header there is no session")

	// A renewed ID comes back in the header; the old one is dead.
	_, _, h = apiCall(t, "POST", servers[1].URL+"/login", url.Values{"user": {"ann"}}, id, true)
	renewed := h.Get(sessionHeader)
	require.Len(t, renewed, 43)
	require.NotEqual(t, id, renewed)
	code, _, _ = apiCall(t, "GET", servers[2].URL+"/me", nil, id, true)
	assert.Equal(t, http.StatusUnauthorized, code)
	_, body, _ := apiCall(t, "GET", servers[2].URL+"/me", nil, renewed, true)
	assert.Equal(t, "ann", body)

	// Logout answers with an empty header.
	_, _, h = apiCall(t, "POST", servers[2].URL+"/logout", nil, renewed, true)
	v, ok := h[sessionHeader]
	assert.True(t, ok)
	assert.Equal(t, []string{""}, v)
	code, _, _ = apiCall(t, "GET", servers[0].URL+"/me", nil, renewed, true)
	assert.Equal(t, http.StatusUnauthorized, code)
}

func TestManager_HeaderModeLeavesBrowsersOnCookies(t *testing.T) {
	servers := newHeaderWeb(t, testcluster.Options{Seed: 1})
	c := client(t)
	_, _, h := do(t, c, "POST", servers[0].URL+"/login", url.Values{"user": {"ann"}})
	assert.Empty(t, h.Values(sessionHeader), "the ID of a cookie session never goes in a header scripts can read")
	require.NotEmpty(t, h.Values("Set-Cookie"))
	_, body, _ := do(t, c, "GET", servers[1].URL+"/me", nil)
	assert.Equal(t, "ann", body)

	// The header, when sent, wins over the cookie.
	u, _ := url.Parse(servers[0].URL)
	id := c.Jar.Cookies(u)[0].Value
	req, err := http.NewRequest("GET", servers[2].URL+"/me", nil)
	require.NoError(t, err)
	req.Header.Set(sessionHeader, strings.Repeat("A", 43))
	req.AddCookie(&http.Cookie{Name: "session", Value: id})
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestManager_BadHeadersGetANewEmptySession(t *testing.T) {
	servers := newHeaderWeb(t, testcluster.Options{Seed: 1})
	for _, value := range []string{"garbage", strings.Repeat("A", 43), "~p.index-record", strings.Repeat("x", 5000), "a b"} {
		code, _, _ := apiCall(t, "GET", servers[0].URL+"/me", nil, value, true)
		assert.Equal(t, http.StatusUnauthorized, code, "header %.20q", value)
	}
}

// With asynchronous writes the header carries the version hint, as the
// cookie does.
func TestManager_HeaderCarriesTheVersionHint(t *testing.T) {
	servers := newHeaderWeb(t, testcluster.Options{Seed: 1, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.WriteConcern = replication.Async
		return cfg
	}})
	_, _, h := apiCall(t, "POST", servers[0].URL+"/login", url.Values{"user": {"ann"}}, "", true)
	value := h.Get(sessionHeader)
	require.Contains(t, value, ".")
	for i := 0; i < 6; i++ {
		v := fmt.Sprint(i)
		_, _, h = apiCall(t, "POST", servers[i%3].URL+"/put", url.Values{"k": {"n"}, "v": {v}}, value, true)
		value = h.Get(sessionHeader)
		require.Contains(t, value, ".", "every write returns the new hint")
		_, got, _ := apiCall(t, "GET", servers[(i+1)%3].URL+"/get?k=n", nil, value, true)
		require.Equal(t, v, got)
	}
}
