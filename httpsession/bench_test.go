package httpsession_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmarks
// measure the middleware and not a recorder.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

func (w *discardWriter) reset() {
	clear(w.h)
	w.code = http.StatusOK
}

// benchApp is the login example's /me and /visit, without the JSON.
func benchApp(m *httpsession.Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if err := m.RenewID(ctx); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_ = m.Put(ctx, "user", r.FormValue("user"))
		_ = m.Put(ctx, "visits", 0)
		_ = m.Put(ctx, "cart", strings.Repeat("c", 1000)) // a 1 KiB session
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if m.GetString(ctx, "user") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(strconv.AppendInt(nil, int64(m.GetInt(ctx, "visits")), 10))
	})
	mux.HandleFunc("POST /visit", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if m.GetString(ctx, "user") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		v := m.GetInt(ctx, "visits") + 1
		if err := m.Put(ctx, "visits", v); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_, _ = w.Write(strconv.AppendInt(nil, int64(v), 10))
	})
	return m.LoadAndSave(mux)
}

// BenchmarkManager_LoadAndSave runs requests of a logged-in user with a
// 1 KiB session through the middleware on a single node (no replication),
// with the login example's 30-minute idle timeout: GET /me (a read:
// load, two typed getters, no write) sequentially and in parallel, and
// POST /visit (a read and a one-attribute write). "no-session" is the same
// request through the same mux without the middleware, the floor.
func BenchmarkManager_LoadAndSave(b *testing.B) {
	c := testcluster.New(b, testcluster.Options{Seed: 1})
	n := c.Start("n0")
	c.WaitReady(b)
	m := httpsession.New(n.Store)
	m.Cookie.Secure = false
	m.IdleTimeout = 30 * time.Minute
	h := benchApp(m)

	// Log in once and keep the cookie.
	rec := httptest.NewRecorder()
	login := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"user": {"ann"}}.Encode()))
	login.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	h.ServeHTTP(rec, login)
	cookies := rec.Result().Cookies()
	if rec.Code != http.StatusOK || len(cookies) != 1 {
		b.Fatalf("login: %d %v", rec.Code, cookies)
	}
	request := func(method, path string) *http.Request {
		r := httptest.NewRequest(method, path, nil)
		r.AddCookie(cookies[0])
		return r
	}
	serve := func(b *testing.B, h http.Handler, r *http.Request, w *discardWriter) {
		w.reset()
		h.ServeHTTP(w, r)
		if w.code != http.StatusOK {
			b.Fatalf("%s %s: status %d", r.Method, r.URL.Path, w.code)
		}
	}

	b.Run("read", func(b *testing.B) {
		r, w := request("GET", "/me"), &discardWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			serve(b, h, r, w)
		}
	})
	b.Run("read-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			r, w := request("GET", "/me"), &discardWriter{h: http.Header{}}
			for pb.Next() {
				serve(b, h, r, w)
			}
		})
	})
	b.Run("write", func(b *testing.B) {
		r, w := request("POST", "/visit"), &discardWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			serve(b, h, r, w)
		}
	})
	b.Run("no-session", func(b *testing.B) {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(strconv.AppendInt(nil, 1, 10))
		})
		r, w := request("GET", "/me"), &discardWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			serve(b, mux, r, w)
		}
	})
}
