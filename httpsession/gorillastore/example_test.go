package gorillastore_test

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
	"github.com/sessionmesh/sessionmesh/httpsession/gorillastore"
)

// A gorilla/sessions application on a one-node cluster: the handlers use
// gorilla's API; only the store changes. More nodes join by listing each
// other as seeds.
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
	replicated := node.Store

	// The cookie signing key: 32 random bytes, the same on every node.
	hashKey := []byte("an example key, use crypto/rand!")
	store, err := gorillastore.New(replicated, hashKey)
	if err != nil {
		log.Fatal(err)
	}
	store.Options.Secure = false // plain HTTP in this example only
	// Keep serving a user whose session holds a value this build cannot
	// decode (its type changed in a deploy): drop it, with a warning.
	store.DropUndecodable = true

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		session, err := store.Get(r, "session")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		store.RenewID(r, session) // a new ID at login: no session fixation
		session.Values["user"] = r.FormValue("user")
		session.AddFlash("welcome back")
		if err := session.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "logged in")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		session, err := store.Get(r, "session")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		user, _ := session.Values["user"].(string)
		if user == "" {
			http.Error(w, "not logged in", http.StatusUnauthorized)
			return
		}
		flashes := session.Flashes()
		if err := session.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "you are", user, flashes)
	})
	srv := httptest.NewServer(mux)
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
	// 200 logged in
	// 200 you are ann [welcome back]
	// 200 you are ann []
}
