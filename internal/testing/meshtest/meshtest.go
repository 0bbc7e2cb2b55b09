// Package meshtest starts real sessionmesh nodes inside a test process:
// each node has a memberlist cluster (cluster.New with the local timers),
// a tcp.Transport and a replication.Store, all on 127.0.0.1 ports
// picked at run time. It is for tests of what sits on top of a running node
// (metrics, the status page) and needs the real types, where
// internal/testcluster's in-memory network and fake membership would not do.
//
//	nodes := meshtest.Start(t, 3, meshtest.Options{})
//	nodes[0].Store.Save(ctx, "s1", changes)
//	nodes[2].Kill() // a crash: no Leave, connections closed at once
//	meshtest.WaitMembers(t, nodes[:2], 2)
//
// Everything Start starts is closed when the test ends. Packages that use it
// start memberlist, whose goroutines outlive Close for a while: run their
// tests under internal/leaktest.VerifyTestMain.
package meshtest

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

// Options configures the nodes of Start.
type Options struct {
	// Store adjusts each node's store configuration, which starts as
	// replication.DefaultLocalConfig with a 100ms AntiEntropyInterval.
	// Membership and Transport are set afterwards. Optional.
	Store func(name string, cfg *replication.Config)
	// Cluster adjusts each node's membership configuration, which starts
	// as cluster.DefaultLocalConfig. NodeName, Seeds, Tags and Logger are
	// set afterwards. Optional.
	Cluster func(name string, cfg *cluster.Config)
	// Logger receives the nodes' logs. Default: discarded, or stderr at
	// debug level when SESSIONMESH_TEST_LOG is set.
	Logger *slog.Logger
}

// Node is one running node.
type Node struct {
	// Name is the node's name: n1, n2, ...
	Name string
	// Cluster is the node's membership.
	Cluster *cluster.Cluster
	// Transport is the node's replication transport; Store owns it.
	Transport *tcp.Transport
	// Store is the node's session store.
	Store *replication.Store

	killOnce sync.Once
}

// Start starts n nodes called n1 to n<n>, each seeded with the gossip
// address of n1, and waits until every node sees all n members and every
// store is ready. The nodes are killed when the test ends.
func Start(t testing.TB, n int, opts Options) []*Node {
	t.Helper()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
		if os.Getenv("SESSIONMESH_TEST_LOG") != "" {
			log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	nodes := make([]*Node, 0, n)
	t.Cleanup(func() {
		for _, node := range nodes {
			node.Kill()
		}
	})
	var seeds []string
	for i := range n {
		node, err := startNode(fmt.Sprintf("n%d", i+1), seeds, opts, log)
		require.NoError(t, err)
		nodes = append(nodes, node)
		if i == 0 {
			seeds = []string{node.Cluster.LocalMember().Addr}
		}
	}
	WaitMembers(t, nodes, n)
	require.Eventually(t, func() bool {
		for _, node := range nodes {
			if !node.Store.IsReady() {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "stores not ready")
	return nodes
}

func startNode(name string, seeds []string, opts Options, log *slog.Logger) (*Node, error) {
	log = log.With("node", name)
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Store.AntiEntropyInterval = 100 * time.Millisecond
	if opts.Cluster != nil {
		opts.Cluster(name, &cfg.Cluster)
	}
	if opts.Store != nil {
		opts.Store(name, &cfg.Store)
	}
	cfg.Cluster.NodeName, cfg.Cluster.Seeds = name, seeds
	cfg.Store.Logger = log
	n, err := sessionmesh.StartNode(cfg)
	if err != nil {
		return nil, fmt.Errorf("meshtest: start %s: %w", name, err)
	}
	return &Node{Name: name, Cluster: n.Cluster, Transport: n.Transport, Store: n.Store}, nil
}

// Kill stops the node as a crash would look to the others: no Leave, its
// connections close at once, and failure detection removes it from their
// membership about a second later. It is safe to call more than once.
func (n *Node) Kill() {
	n.killOnce.Do(func() {
		_ = n.Store.Close() // closes the transport
		_ = n.Cluster.Close()
	})
}

// WaitMembers waits until every node of nodes sees exactly want members.
func WaitMembers(t testing.TB, nodes []*Node, want int) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, n := range nodes {
			if len(n.Cluster.Members()) != want {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "nodes do not see %d members", want)
}
