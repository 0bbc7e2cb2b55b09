package metrics_test

import (
	"bufio"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/replication/metrics"
)

// ExampleRegister serves a node's metrics on /metrics from a registry of
// its own.
func ExampleRegister() {
	// One node, alone: transport, membership, store.
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Cluster.NodeName = "web-1"
	cfg.Store.Logger = quiet
	node, err := sessionmesh.StartNode(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	store, cl, tr := node.Store, node.Cluster, node.Transport
	timeout := time.After(10 * time.Second)
	for !store.IsReady() || !store.FullyReplicated() {
		select {
		case <-timeout:
			log.Fatal("store not ready")
		case <-time.After(10 * time.Millisecond):
		}
	}

	// The metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	if _, err := metrics.Register(reg, metrics.Config{Store: store, Cluster: cl, Transport: tr}); err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	// What a scrape shows.
	srv := httptest.NewServer(mux)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		for _, prefix := range []string{"sessionmesh_cluster_members{", "sessionmesh_info", "sessionmesh_ready", "sessionmesh_fully_replicated"} {
			if strings.HasPrefix(line, prefix) {
				fmt.Println(line)
			}
		}
	}
	// Output:
	// sessionmesh_cluster_members{state="alive"} 1
	// sessionmesh_cluster_members{state="suspect"} 0
	// sessionmesh_fully_replicated 1
	// sessionmesh_info{mode="all-to-all",write_concern="sync"} 1
	// sessionmesh_ready 1
}
