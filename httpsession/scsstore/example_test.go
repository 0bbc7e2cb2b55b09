package scsstore_test

import (
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"

	"github.com/alexedwards/scs/v2"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/httpsession/scsstore"
)

// An scs application on a one-node cluster: the handlers and the
// middleware are scs's own; only the store changes. More nodes join by
// listing each other as seeds.
func Example() {
	// The replicated store (see package replication).
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Cluster.NodeName = "web-1"
	cfg.Store.Logger = slog.New(slog.DiscardHandler)
	node, err := sessionmesh.StartNode(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	store := node.Store

	// scs, as usual, with the replicated store.
	sessionManager := scs.New()
	st, err := scsstore.New(store)
	if err != nil {
		log.Fatal(err)
	}
	// A request in flight while the user logs in elsewhere must not set
	// the cookie back to the old token.
	st.KeepCookie = true
	sessionManager.Store = st
	sessionManager.ErrorFunc = scsstore.ErrorFunc(nil)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := sessionManager.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sessionManager.Put(r.Context(), "user", r.FormValue("user"))
		sessionManager.Put(r.Context(), "visits", 1)
		fmt.Fprintln(w, "welcome")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		user := sessionManager.GetString(r.Context(), "user")
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		visits := sessionManager.GetInt(r.Context(), "visits") + 1
		sessionManager.Put(r.Context(), "visits", visits)
		fmt.Fprintln(w, user, "visit", visits)
	})
	srv := httptest.NewServer(sessionManager.LoadAndSave(mux))
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
	show(browser.PostForm(srv.URL+"/login", url.Values{"user": {"ann"}}))
	show(browser.Get(srv.URL + "/me"))
	show(browser.Get(srv.URL + "/me"))
	// Output:
	// 401 not logged in
	// 200 welcome
	// 200 ann visit 2
	// 200 ann visit 3
}

// An scs application whose sessions keep each value on its own: two
// requests of one user that change different keys at the same time, on any
// nodes, both keep their change.
func ExampleKeyCodec() {
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Cluster.NodeName = "web-1"
	cfg.Store.Logger = slog.New(slog.DiscardHandler)
	node, err := sessionmesh.StartNode(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()

	store, err := scsstore.New(node.Store)
	if err != nil {
		log.Fatal(err)
	}
	codec := &scsstore.KeyCodec{Logger: slog.Default()} // warns of values that no longer decode
	store.Codec = codec
	store.KeepCookie = true
	sessionManager := scs.New()
	sessionManager.Store = store
	sessionManager.Codec = codec
	sessionManager.ErrorFunc = scsstore.ErrorFunc(nil)

	mux := http.NewServeMux()
	mux.HandleFunc("POST /put", func(w http.ResponseWriter, r *http.Request) {
		sessionManager.Put(r.Context(), r.FormValue("k"), r.FormValue("v"))
	})
	mux.HandleFunc("GET /all", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		fmt.Fprintln(w, sessionManager.GetString(ctx, "theme"), sessionManager.GetString(ctx, "cart"))
	})
	srv := httptest.NewServer(sessionManager.LoadAndSave(mux))
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	must := func(resp *http.Response, err error) *http.Response {
		if err != nil {
			log.Fatal(err)
		}
		return resp
	}
	must(browser.PostForm(srv.URL+"/put", url.Values{"k": {"theme"}, "v": {"dark"}})).Body.Close()
	must(browser.PostForm(srv.URL+"/put", url.Values{"k": {"cart"}, "v": {"2 books"}})).Body.Close()
	resp := must(browser.Get(srv.URL + "/all"))
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(string(body))
	// Output:
	// dark 2 books
}
