package throttle_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/sessionmesh/sessionmesh"
	"github.com/sessionmesh/sessionmesh/throttle"
)

// startNode starts a node alone on loopback.
func startNode(name string) *sessionmesh.Node {
	cfg := sessionmesh.DefaultLocalNodeConfig()
	cfg.Cluster.NodeName = name
	cfg.Store.Logger = slog.New(slog.DiscardHandler)
	n, err := sessionmesh.StartNode(cfg)
	if err != nil {
		log.Fatal(err)
	}
	<-n.Store.Ready()
	return n
}

// Three wrong passwords per user and quarter of an hour: the fourth
// attempt is refused until the window ends, and a correct login clears
// the count.
func ExampleNew() {
	n := startNode("solo")
	defer n.Close()
	users, err := throttle.New(n.Store, 3, 15*time.Minute, throttle.Options{Name: "login-user"})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for attempt := 1; attempt <= 4; attempt++ {
		ok, retryAfter, err := users.Allow(ctx, "user:ann")
		if err != nil {
			log.Print(err) // ok is still the decision: false, failing closed
		}
		fmt.Println(attempt, ok, retryAfter > 0 && retryAfter <= 15*time.Minute)
	}
	if err := users.Reset(ctx, "user:ann"); err != nil {
		log.Fatal(err)
	}
	ok, _, _ := users.Allow(ctx, "user:ann")
	fmt.Println("after reset", ok)
	// Output:
	// 1 true false
	// 2 true false
	// 3 true false
	// 4 false true
	// after reset true
}

// A limiter that protects capacity rather than secrets fails open: when
// the store cannot count (here: it is closed), calls are let through and
// the error is only logged.
func ExampleOptions_failOpen() {
	n := startNode("solo")
	api, err := throttle.New(n.Store, 100, time.Minute, throttle.Options{Name: "api", FailOpen: true})
	if err != nil {
		log.Fatal(err)
	}
	_ = n.Close()
	ok, _, err := api.Allow(context.Background(), "ip:203.0.113.7")
	fmt.Println(ok, err != nil)
	// Output: true true
}
