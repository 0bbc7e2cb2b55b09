package replication_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/sessionmesh/sessionmesh/replication"
)

// A login renews the session's ID. A request still in flight with the old
// ID learns that the session was renewed, not destroyed, and leaves the
// client's new ID alone; it never learns the new ID.
func ExampleStore_Renamed() {
	n := startNode("solo")
	defer n.Close()
	<-n.Store.Ready()
	ctx := context.Background()
	if _, err := n.Store.Save(ctx, "old-id", replication.Changes{Set: map[string][]byte{"cart": []byte("2 books")}, Lifetime: time.Hour}); err != nil {
		log.Fatal(err)
	}
	// The login.
	if _, err := n.Store.Rename(ctx, "old-id", "new-id", replication.Changes{Set: map[string][]byte{"user": []byte("ann")}}); err != nil {
		log.Fatal(err)
	}
	// The request in flight with the old ID saves.
	_, err := n.Store.Save(ctx, "old-id", replication.Changes{Set: map[string][]byte{"note": []byte("hi")}})
	fmt.Println(errors.Is(err, replication.ErrSessionRenewed), errors.Is(err, replication.ErrSessionEnded))
	// A request that left with the old ID finds no session, and asks why.
	_, ok, _ := n.Store.Get(ctx, "old-id")
	renamed, _ := n.Store.Renamed(ctx, "old-id")
	fmt.Println(ok, renamed)
	// Output:
	// true true
	// false true
}
