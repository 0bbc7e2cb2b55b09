package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sessionmesh/sessionmesh/replication/metrics"
	"github.com/sessionmesh/sessionmesh/replication/status"
)

// metricsHandler serves the node's metrics in the Prometheus format from a
// registry of its own (never the global one): sessionmesh's collector plus
// the Go runtime's and the process's.
func (n *node) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	c, err := metrics.New(metrics.Config{
		Store: n.store, Cluster: n.cluster, Transport: n.transport,
		// A peer that missed three status polls in a row is unresponsive.
		PeerTimeout: 3 * n.antiEntropy,
	})
	if err != nil { // only for a nil store, which start never leaves
		panic(err)
	}
	reg.MustRegister(c)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// statusHandler serves the live status page of the cluster.
func (n *node) statusHandler() http.Handler {
	return status.Handler(n.store, n.cluster)
}
