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
