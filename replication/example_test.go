package replication_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// startNode wires one node: a replication transport, a cluster member that
// publishes the transport's address, and a store on both.
func startNode(name string, seeds ...string) (*replication.Store, *cluster.Cluster) {
	quiet := slog.New(slog.DiscardHandler)
	tr, err := replication.ListenTCP(replication.TCPConfig{BindAddr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	ccfg := cluster.DefaultLocalConfig()
	ccfg.NodeName = name
	ccfg.Seeds = seeds
	ccfg.Tags = map[string]string{replication.AddrTag: tr.Addr()}
	ccfg.Logger = quiet
	cl, err := cluster.New(ccfg)
	if err != nil {
		log.Fatal(err)
	}
	cfg := replication.DefaultLocalConfig()
	cfg.Membership, cfg.Transport, cfg.Logger = cl, tr, quiet
	store, err := replication.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	return store, cl
}

// Two nodes on loopback: a session saved on one is read on the other as
// soon as Save returns.
func ExampleNew() {
	a, ca := startNode("a")
	defer ca.Close()
	defer a.Close()
	b, cb := startNode("b", ca.LocalMember().Addr)
	defer cb.Close()
	defer b.Close()
	<-b.Ready()
	for deadline := time.Now().Add(10 * time.Second); a.Stats().Peers == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // until a has heard of b
	}

	ctx := context.Background()
	_, err := a.Save(ctx, "session-1", replication.Changes{
		Set:      map[string][]byte{"user": []byte("ann")},
		Lifetime: time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	s, ok, err := b.Get(ctx, "session-1")
	if err != nil {
		log.Fatal(err)
	}
	user, _ := s.Value("user")
	fmt.Println(ok, string(user))
	// Output: true ann
}
