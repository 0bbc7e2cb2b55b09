package replication

import "github.com/sessionmesh/sessionmesh/cluster"

// AddrTag is the cluster tag under which a node publishes the address of its
// replication transport. Set it when creating the cluster:
//
//	cluster.Config{Tags: map[string]string{replication.AddrTag: transport.Addr()}}
//
// Members without it are not replicated to.
const AddrTag = "repl"

// Membership is what the store needs to know about the cluster: who is in
// it, and when that changes. *cluster.Cluster implements it; tests pass a
// static fake.
type Membership interface {
	// LocalMember returns this node.
	LocalMember() cluster.Member
	// Members returns the live (alive or suspect) members, this node
	// included.
	Members() []cluster.Member
	// Settled is closed once the node has joined the cluster or found
	// that it is alone.
	Settled() <-chan struct{}
	// Notify and StopNotify subscribe a channel to membership events. Sends
	// never block: the store treats events as hints and re-reads Members.
	Notify(ch chan<- cluster.Event)
	StopNotify(ch chan<- cluster.Event)
}

var _ Membership = (*cluster.Cluster)(nil)
