package httpsession_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/httpsession"
	"github.com/sessionmesh/sessionmesh/replication"
)

// exampleStore starts a one-node cluster, as ExampleManager_LoadAndSave
// does, and returns its store and a function that stops it.
func exampleStore() (*replication.Store, func()) {
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Cluster.NodeName = "web-1"
	cfg.Store.Logger = slog.New(slog.DiscardHandler)
	node, err := sessionmesh.StartNode(cfg)
	if err != nil {
		log.Fatal(err)
	}
	return node.Store, func() { _ = node.Close() }
}

// show prints a response's status and body.
func show(resp *http.Response, err error) {
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(body))
}

// Middleware chains of routers such as chi and echo are functions from
// http.Handler to http.Handler, and LoadAndSave is one: with chi,
// r.Use(sessions.LoadAndSave); with echo, e.Use(echo.WrapMiddleware(sessions.LoadAndSave)).
// Middleware after it in the chain, such as an authorization check, reads
// the session. Here is the same chain in plain net/http.
func ExampleManager_LoadAndSave_middlewareChain() {
	store, stop := exampleStore()
	defer stop()
	sessions := httpsession.New(store)
	sessions.Cookie.Secure = false // plain HTTP in this example only

	type middleware = func(http.Handler) http.Handler
	chain := func(h http.Handler, mws ...middleware) http.Handler {
		for i := len(mws) - 1; i >= 0; i-- {
			h = mws[i](h)
		}
		return h
	}
	logRequests := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Println("->", r.Method, r.URL.Path)
			next.ServeHTTP(w, r)
		})
	}
	requireLogin := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if sessions.GetString(r.Context(), "user") == "" {
				http.Error(w, "please log in", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		_ = sessions.RenewID(r.Context())
		_ = sessions.Put(r.Context(), "user", r.FormValue("user"))
		fmt.Fprintln(w, "welcome")
	})
	// Only the account pages need a login: a chain of their own.
	mux.Handle("GET /account/", chain(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "account of", sessions.GetString(r.Context(), "user"))
	}), requireLogin))
	srv := httptest.NewServer(chain(mux, logRequests, sessions.LoadAndSave))
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	show(browser.Get(srv.URL + "/account/"))
	show(browser.PostForm(srv.URL+"/login", url.Values{"user": {"ann"}}))
	show(browser.Get(srv.URL + "/account/"))
	// Output:
	// -> GET /account/
	// 401 please log in
	// -> POST /login
	// 200 welcome
	// -> GET /account/
	// 200 account of ann
}

// Tag sessions with their user at login to list them, and to log the user
// out of every device at once.
func ExampleManager_DestroyAll() {
	store, stop := exampleStore()
	defer stop()
	sessions := httpsession.New(store)
	sessions.Cookie.Secure = false       // plain HTTP in this example only
	sessions.MaxSessionsPerPrincipal = 5 // optional: the oldest login beyond 5 is ended

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		// ... check the password ...
		_ = sessions.RenewID(r.Context())
		if err := sessions.SetPrincipal(r.Context(), r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "welcome")
	})
	mux.HandleFunc("GET /devices", func(w http.ResponseWriter, r *http.Request) {
		user := sessions.Principal(r.Context())
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		list, err := sessions.Sessions(r.Context(), user)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, user, "is logged in on", len(list), "devices")
	})
	mux.HandleFunc("POST /logout-everywhere", func(w http.ResponseWriter, r *http.Request) {
		n, err := sessions.DestroyAll(r.Context(), sessions.Principal(r.Context()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ended", n, "sessions")
	})
	srv := httptest.NewServer(sessions.LoadAndSave(mux))
	defer srv.Close()

	var devices []*http.Client
	for range 3 {
		jar, _ := cookiejar.New(nil)
		device := &http.Client{Jar: jar}
		show(device.PostForm(srv.URL+"/login", url.Values{"user": {"ann"}}))
		devices = append(devices, device)
	}
	show(devices[0].Get(srv.URL + "/devices"))
	show(devices[1].Post(srv.URL+"/logout-everywhere", "", nil))
	show(devices[2].Get(srv.URL + "/devices"))
	// A back office can do the same without a request of the user.
	n, _ := sessions.DestroyAll(context.Background(), "ann")
	fmt.Println(n, "left")
	// Output:
	// 200 welcome
	// 200 welcome
	// 200 welcome
	// 200 ann is logged in on 3 devices
	// 200 ended 3 sessions
	// 401 not logged in
	// 0 left
}

// API clients without cookies send the session ID in a header: empty to
// start, then the value the last response returned.
func ExampleManager_Header() {
	store, stop := exampleStore()
	defer stop()
	sessions := httpsession.New(store)
	sessions.Header = "X-Session-Id"

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		_ = sessions.RenewID(r.Context())
		_ = sessions.Put(r.Context(), "user", r.FormValue("user"))
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "you are", sessions.GetString(r.Context(), "user"))
	})
	srv := httptest.NewServer(sessions.LoadAndSave(mux))
	defer srv.Close()

	call := func(method, path, id string) *http.Response {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		req.Header["X-Session-Id"] = []string{id}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		return resp
	}
	resp := call("POST", "/login?user=ann", "")
	resp.Body.Close()
	id := resp.Header.Get("X-Session-Id")
	fmt.Println("cookies:", len(resp.Cookies()), "ID length:", len(id))
	show(call("GET", "/me", id), nil)
	// Output:
	// cookies: 0 ID length: 43
	// 200 you are ann
}
