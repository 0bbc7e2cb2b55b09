package status_test

import (
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/replication/status"
)

// ExampleHandler mounts the status page at /cluster and reads its JSON
// report, as a script would.
func ExampleHandler() {
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Cluster.NodeName = "web-1"
	cfg.Store.Logger = slog.New(slog.DiscardHandler)
	cfg.Store.Mode = replication.Backups(1)
	node, err := sessionmesh.StartNode(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	store, cl := node.Store, node.Cluster
	timeout := time.After(10 * time.Second)
	for !store.FullyReplicated() {
		select {
		case <-timeout:
			log.Fatal("store not ready")
		case <-time.After(10 * time.Millisecond):
		}
	}

	mux := http.NewServeMux()
	mux.Handle("GET /cluster", status.Handler(store, cl))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/cluster?format=json")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	var r status.Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		log.Fatal(err)
	}
	fmt.Println("node:", r.Node, r.Mode, "fully replicated:", r.FullyReplicated)
	for _, m := range r.Members {
		fmt.Printf("member %s %s, primary of %d partitions\n", m.Name, m.State, m.Primary)
	}
	// Output:
	// node: web-1 backups(1) fully replicated: true
	// member web-1 alive, primary of 256 partitions
}
