package cluster_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/sessionmesh/sessionmesh/cluster"
)

// Two nodes on the loopback interface, each on a free port: b joins a.
func ExampleNew() {
	cfg := cluster.DefaultLocalConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)

	cfg.NodeName = "node-a"
	cfg.Tags = map[string]string{"repl": "127.0.0.1:9001"}
	a, err := cluster.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	cfg.NodeName = "node-b"
	cfg.Tags = map[string]string{"repl": "127.0.0.1:9002"}
	cfg.Seeds = []string{a.LocalMember().Addr} // the port a picked
	b, err := cluster.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	// b has joined once its first join attempt is over; a hears about b a
	// moment later.
	<-b.Settled()
	for deadline := time.Now().Add(10 * time.Second); len(a.Members()) < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	for _, m := range a.Members() {
		fmt.Println(m.Name, m.Tags["repl"])
	}
	// Output:
	// node-a 127.0.0.1:9001
	// node-b 127.0.0.1:9002
}

// A consumer of events: treat each event as a hint and re-read Members.
func ExampleCluster_Notify() {
	c, err := cluster.New(cluster.Config{
		NodeName: "web-1",
		Seeds:    []string{"10.0.0.1:7946", "10.0.0.2:7946", "10.0.0.3:7946"},
	})
	if err != nil {
		log.Fatal(err)
	}

	events := make(chan cluster.Event, 64)
	c.Notify(events)
	go func() {
		for ev := range events {
			log.Printf("membership: %s", ev)
			peers := c.Members() // the current view, whatever was dropped
			_ = peers            // rebuild routing from peers
		}
	}()

	// At shutdown: leave gracefully, then close.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Leave(ctx); err != nil {
		log.Printf("leave: %v", err)
	}
	c.StopNotify(events)
	close(events)
	_ = c.Close()
}
