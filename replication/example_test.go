package replication_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/replication"
)

// startNode starts a node on loopback that joins seeds.
func startNode(name string, seeds ...string) *sessionmesh.Node {
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Cluster.NodeName = name
	cfg.Cluster.Seeds = seeds
	cfg.Store.Logger = slog.New(slog.DiscardHandler)
	n, err := sessionmesh.StartNode(cfg)
	if err != nil {
		log.Fatal(err)
	}
	return n
}

// Two nodes on loopback: a session saved on one is read on the other as
// soon as Save returns.
func ExampleStartNode() {
	a := startNode("a")
	defer a.Close()
	b := startNode("b", a.Cluster.LocalMember().Addr)
	defer b.Close()
	<-b.Store.Ready()
	for timeout := time.After(10 * time.Second); a.Store.Stats().Peers == 0; { // until a has heard of b
		select {
		case <-timeout:
			log.Fatal("a has not heard of b")
		case <-time.After(10 * time.Millisecond):
		}
	}

	ctx := context.Background()
	_, err := a.Store.Save(ctx, "session-1", replication.Changes{
		Set:      map[string][]byte{"user": []byte("ann")},
		Lifetime: time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	s, ok, err := b.Store.Get(ctx, "session-1")
	if err != nil {
		log.Fatal(err)
	}
	user, _ := s.Value("user")
	fmt.Println(ok, string(user))
	// Output: true ann
}

// A counter that concurrent requests on any nodes increment without losing
// a count.
func ExampleStore_Update() {
	n := startNode("solo")
	defer n.Close()
	<-n.Store.Ready()
	ctx := context.Background()
	if _, err := n.Store.Save(ctx, "s", replication.Changes{Lifetime: time.Hour}); err != nil {
		log.Fatal(err)
	}
	incr := func(old []byte, exists bool) ([]byte, error) {
		n := 0
		if exists {
			if _, err := fmt.Sscan(string(old), &n); err != nil {
				return nil, err
			}
		}
		return fmt.Append(nil, n+1), nil
	}
	for i := 0; i < 3; i++ {
		if _, _, err := n.Store.Update(ctx, "s", "visits", incr); err != nil {
			log.Fatal(err)
		}
	}
	s, _, _ := n.Store.Get(ctx, "s")
	v, _ := s.Value("visits")
	fmt.Println(string(v))
	// Output: 3
}
