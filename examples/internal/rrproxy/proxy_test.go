package rrproxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// echoBackend answers with its name, the method and the body it received.
func echoBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", name, r.Method, b)
	}))
	t.Cleanup(s.Close)
	return s
}

// deadURL returns the URL of a port nobody listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	u := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	return u
}

// resetBackend accepts connections and closes them at once, before any
// response: a server that dies mid-request.
func resetBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// Read a little so the request is on its way, then drop.
			buf := make([]byte, 16)
			_, _ = c.Read(buf)
			_ = c.(*net.TCPConn).SetLinger(0) // RST instead of FIN
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return "http://" + ln.Addr().String()
}

func newProxy(t *testing.T, backends ...string) (*Proxy, *httptest.Server, *http.Client) {
	t.Helper()
	p, err := New(Config{Backends: backends})
	require.NoError(t, err)
	front := httptest.NewServer(p)
	tr := &http.Transport{}
	client := &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		front.Close()
		p.Close()
	})
	return p, front, client
}

func do(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestProxy_StrictRotation(t *testing.T) {
	a, b, c := echoBackend(t, "a"), echoBackend(t, "b"), echoBackend(t, "c")
	p, front, client := newProxy(t, a.URL, b.URL, c.URL)
	var got []string
	for range 9 {
		code, body := do(t, client, "GET", front.URL+"/x", "")
		require.Equal(t, 200, code)
		got = append(got, body[:1])
	}
	assert.Equal(t, []string{"a", "b", "c", "a", "b", "c", "a", "b", "c"}, got)
	s := p.Stats()
	assert.EqualValues(t, 9, s.Requests)
	assert.Zero(t, s.Retries)
	for _, bs := range s.Backends {
		assert.EqualValues(t, 3, bs.Responses, bs.Backend)
		assert.True(t, bs.Active)
	}
}

func TestProxy_RetriesDeadBackendReplayingBody(t *testing.T) {
	a, c := echoBackend(t, "a"), echoBackend(t, "c")
	dead := deadURL(t)
	p, front, client := newProxy(t, a.URL, dead, c.URL)
	var got []string
	for i := range 6 {
		body := fmt.Sprintf("payload-%d=%s", i, strings.Repeat("x", 1000))
		code, resp := do(t, client, "POST", front.URL+"/visit", body)
		require.Equal(t, 200, code, resp)
		name, rest, _ := strings.Cut(resp, " ")
		assert.Equal(t, "POST "+body, rest, "the body is replayed whole")
		got = append(got, name)
	}
	// The dead one's turns go to the next backend.
	assert.Equal(t, []string{"a", "c", "c", "a", "c", "c"}, got)
	s := p.Stats()
	assert.EqualValues(t, 2, s.Retries)
	assert.Zero(t, s.Failed)
	assert.Equal(t, BackendStats{Backend: dead, Active: true, Errors: 2}, s.Backends[1])
	assert.EqualValues(t, 2, s.Backends[0].Responses)
	assert.EqualValues(t, 4, s.Backends[2].Responses)
}

func TestProxy_RetriesReset(t *testing.T) {
	a := echoBackend(t, "a")
	reset := resetBackend(t)
	p, front, client := newProxy(t, reset, a.URL)
	for range 4 {
		code, resp := do(t, client, "POST", front.URL+"/visit", "n=1")
		require.Equal(t, 200, code, resp)
		assert.Equal(t, "a POST n=1", resp)
	}
	s := p.Stats()
	assert.EqualValues(t, 2, s.Backends[0].Errors)
	assert.EqualValues(t, 2, s.Retries)
}

func TestProxy_AllDead502(t *testing.T) {
	d1, d2 := deadURL(t), deadURL(t)
	p, front, client := newProxy(t, d1, d2)
	code, body := do(t, client, "POST", front.URL+"/login", "user=a")
	assert.Equal(t, http.StatusBadGateway, code)
	assert.Contains(t, body, "no backend answered POST /login (tried 2 of 2)")
	assert.Contains(t, body, d1)
	assert.Contains(t, body, d2)
	assert.Contains(t, body, "connection refused")
	s := p.Stats()
	assert.EqualValues(t, 1, s.Failed)
	assert.EqualValues(t, 1, s.Retries)
}

func TestProxy_NoBackends502(t *testing.T) {
	_, front, client := newProxy(t)
	code, body := do(t, client, "GET", front.URL, "")
	assert.Equal(t, http.StatusBadGateway, code)
	assert.Contains(t, body, "no backends configured")
}

func TestProxy_BodyTooLarge413(t *testing.T) {
	var hits sync.Map
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
	}))
	defer backend.Close()
	p, err := New(Config{Backends: []string{backend.URL}, MaxBodyBytes: 10})
	require.NoError(t, err)
	defer p.Close()
	front := httptest.NewServer(p)
	defer front.Close()
	client := front.Client()
	defer client.CloseIdleConnections()

	code, _ := do(t, client, "POST", front.URL+"/ok", "0123456789")
	assert.Equal(t, 200, code, "exactly the limit passes")
	code, body := do(t, client, "POST", front.URL+"/big", "0123456789a")
	assert.Equal(t, http.StatusRequestEntityTooLarge, code)
	assert.Contains(t, body, "larger than 10 bytes")
	// Unknown length (chunked): caught while reading.
	req, err := http.NewRequest("POST", front.URL+"/chunked", io.MultiReader(strings.NewReader("0123456789"), strings.NewReader("abc")))
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	_, big := hits.Load("/big")
	_, chunked := hits.Load("/chunked")
	assert.False(t, big || chunked, "the backend never saw an oversized request")
	assert.EqualValues(t, 2, p.Stats().TooLarge)
}

func TestProxy_CookiesRedirectsAndForwardedFor(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "session=abc; Path=/; HttpOnly; SameSite=Lax")
		w.Header().Add("Set-Cookie", "other=1; Path=/")
		w.Header().Set("X-Got-Cookie", r.Header.Get("Cookie"))
		w.Header().Set("X-Got-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Got-Host", r.Host)
		w.Header().Set("X-Got-Forwarded-Host", r.Header.Get("X-Forwarded-Host"))
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}))
	defer backend.Close()
	_, front, client := newProxy(t, backend.URL)

	req, err := http.NewRequest("POST", front.URL+"/login", strings.NewReader("user=a&password=demo"))
	require.NoError(t, err)
	req.Header.Set("Cookie", "session=old; theme=dark")
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // a client's lie is dropped
	resp, err := client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode, "redirects pass through")
	assert.Equal(t, "/", resp.Header.Get("Location"))
	assert.Equal(t, []string{"session=abc; Path=/; HttpOnly; SameSite=Lax", "other=1; Path=/"},
		resp.Header.Values("Set-Cookie"))
	assert.Equal(t, "session=old; theme=dark", resp.Header.Get("X-Got-Cookie"))
	assert.Equal(t, "127.0.0.1", resp.Header.Get("X-Got-XFF"))
	assert.Equal(t, strings.TrimPrefix(backend.URL, "http://"), resp.Header.Get("X-Got-Host"))
	assert.Equal(t, strings.TrimPrefix(front.URL, "http://"), resp.Header.Get("X-Got-Forwarded-Host"))
}

func TestProxy_SetBackends(t *testing.T) {
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	p, front, client := newProxy(t, a.URL)
	_, body := do(t, client, "GET", front.URL, "")
	assert.Equal(t, "a GET ", body)

	require.NoError(t, p.SetBackends([]string{b.URL}))
	assert.Equal(t, []string{b.URL}, p.Backends())
	for range 3 {
		_, body = do(t, client, "GET", front.URL, "")
		assert.Equal(t, "b GET ", body)
	}
	require.NoError(t, p.SetBackends([]string{a.URL + "/", b.URL}))
	s := p.Stats()
	require.Len(t, s.Backends, 2, "a URL keeps its counters, trailing slash or not")
	assert.Equal(t, BackendStats{Backend: a.URL, Active: true, Responses: 1}, s.Backends[0])
	assert.Equal(t, BackendStats{Backend: b.URL, Active: true, Responses: 3}, s.Backends[1])

	for _, bad := range []string{"127.0.0.1:80", "ftp://x", "http://", "::"} {
		require.Error(t, p.SetBackends([]string{bad}), bad)
	}
	assert.Equal(t, []string{a.URL, b.URL}, p.Backends(), "a failed SetBackends changes nothing")
	_, err := New(Config{Backends: []string{"nope"}})
	require.Error(t, err)
}

func TestProxy_PathPrefixAndQuery(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.URL.RequestURI())
	}))
	defer backend.Close()
	_, front, client := newProxy(t, backend.URL+"/app")
	_, body := do(t, client, "GET", front.URL+"/me?x=1", "")
	assert.Equal(t, "/app/me?x=1", body)
}

func TestProxy_ConcurrentRequestsAndChanges(t *testing.T) {
	a, b, c := echoBackend(t, "a"), echoBackend(t, "b"), echoBackend(t, "c")
	dead := deadURL(t)
	p, front, client := newProxy(t, a.URL, dead, b.URL, c.URL)
	const workers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if w == 0 && i == each/2 {
					if err := p.SetBackends([]string{a.URL, dead, b.URL}); err != nil {
						errs <- err
					}
				}
				resp, err := client.Post(front.URL, "text/plain", strings.NewReader("x"))
				if err != nil {
					errs <- err
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("status %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := p.Stats()
	var answered int64
	for _, bs := range s.Backends {
		answered += bs.Responses
	}
	assert.EqualValues(t, workers*each, s.Requests)
	assert.EqualValues(t, workers*each, answered)
	assert.Zero(t, s.Failed)
	assert.Equal(t, s.Backends[1].Errors, s.Retries)
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Err: errors.New("i/o timeout")}, true},
		{&net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		{fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", io.ErrUnexpectedEOF), true},
		{io.EOF, true},
		{&net.OpError{Op: "write", Err: net.ErrClosed}, true},
		{errors.New("http: server closed idle connection"), true},
		{errors.New("net/http: timeout awaiting response headers"), false},
		{errors.New("context canceled"), false},
	} {
		assert.Equal(t, tc.want, retryable(tc.err), tc.err.Error())
	}
}

func TestListenAndServe(t *testing.T) {
	a := echoBackend(t, "a")
	p, err := New(Config{Backends: []string{a.URL}})
	require.NoError(t, err)
	defer p.Close()
	srv, err := ListenAndServe("", p)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(srv.URL, "http://127.0.0.1:"))
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	_, body := do(t, client, "GET", srv.URL, "")
	assert.Equal(t, "a GET ", body)
	require.NoError(t, srv.Close())
	require.NoError(t, srv.Close(), "Close twice")
	_, err = client.Get(srv.URL)
	require.Error(t, err)

	srv, err = ListenAndServe("127.0.0.1:0", p)
	require.NoError(t, err)
	require.NoError(t, srv.Shutdown(t.Context()))
	_, err = ListenAndServe(srv.Addr+"x", p)
	require.Error(t, err)
}
