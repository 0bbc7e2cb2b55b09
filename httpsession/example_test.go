package httpsession_test

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/httpsession"
)

// A login handler and a page that needs the login, on a one-node cluster.
// More nodes join by listing each other as seeds; the handlers don't change.
func ExampleManager_LoadAndSave() {
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Cluster.NodeName = "web-1"
	cfg.Store.Logger = slog.New(slog.DiscardHandler)
	node, err := sessionmesh.StartNode(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	sessions := httpsession.New(node.Store)
	sessions.Cookie.Secure = false // plain HTTP in this example only

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("password") != "demo" {
			http.Error(w, "wrong password", http.StatusUnauthorized)
			return
		}
		_ = sessions.RenewID(r.Context()) // a new ID at login: no session fixation
		if err := sessions.Put(r.Context(), "user", r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "welcome")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user := sessions.GetString(r.Context(), "user")
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "you are", user)
	})
	srv := httptest.NewServer(sessions.LoadAndSave(mux))
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	show := func(resp *http.Response, err error) {
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Print(resp.StatusCode, " ", string(body))
	}
	show(browser.Get(srv.URL + "/me"))
	show(browser.PostForm(srv.URL+"/login", url.Values{"user": {"ann"}, "password": {"demo"}}))
	show(browser.Get(srv.URL + "/me"))
	// Output:
	// 401 not logged in
	// 200 welcome
	// 200 you are ann
}

// Periodic rotation of the IDs of logged-in sessions. RotateEvery is a
// nanosecond here, so that every request rotates; in production it is
// minutes or hours. A request that carries the ID a rotation replaced,
// because it left before the browser had the new one, still reads the
// session and brings back the newest ID; the IDs before a login never do.
func ExampleManager_RotateEvery() {
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Cluster.NodeName = "web-1"
	cfg.Store.Logger = slog.New(slog.DiscardHandler)
	node, err := sessionmesh.StartNode(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	sessions := httpsession.New(node.Store)
	sessions.Cookie.Secure = false // plain HTTP in this example only
	sessions.RotateEvery = time.Nanosecond
	sessions.RotateGrace = 30 * time.Second

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		_ = sessions.RenewID(ctx) // at login: no grace for the old ID
		if err := sessions.SetPrincipal(ctx, r.FormValue("user")); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "welcome")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user := sessions.Principal(r.Context())
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "you are", user)
	})
	srv := httptest.NewServer(sessions.LoadAndSave(mux))
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	u, _ := url.Parse(srv.URL)
	id := func() string { return jar.Cookies(u)[0].Value }
	get := func(c *http.Client, cookie string) {
		req, _ := http.NewRequest("GET", srv.URL+"/me", nil)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "session", Value: cookie})
		}
		resp, err := c.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		rotated := false
		for _, c := range resp.Cookies() {
			rotated = rotated || c.Name == "session" && c.Value != cookie
		}
		fmt.Printf("%d %s   (new ID: %v)\n", resp.StatusCode, strings.TrimSpace(string(body)), rotated)
	}

	resp, err := browser.PostForm(srv.URL+"/login", url.Values{"user": {"ann"}})
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	first := id()
	get(browser, "")           // the ID is due: rotated
	get(&http.Client{}, first) // the old ID, within the grace
	get(browser, "")           // rotated again
	resp, err = browser.PostForm(srv.URL+"/login", url.Values{"user": {"ann"}})
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	get(&http.Client{}, first) // an ID from before the login
	// Output:
	// 200 you are ann   (new ID: true)
	// 200 you are ann   (new ID: true)
	// 200 you are ann   (new ID: true)
	// 401 not logged in   (new ID: false)
}
