package replication

// Member is a node of the cluster as the store needs to know it: a name,
// the life of its process, and where its store listens.
type Member struct {
	// Name is the member's unique node name.
	Name string
	// Incarnation identifies one life of the member's process: a process
	// restarted under the same name has another Incarnation. The store
	// treats a new Incarnation as a new peer that holds nothing yet.
	Incarnation uint64
	// Addr is the transport address of the member's store. Members with no
	// Addr run no store and are not replicated to.
	Addr string
	// Zone is the failure domain the member runs in: an availability
	// zone, a rack, a host. In Backups mode a partition's owners are
	// spread over as many zones as exist, so losing a whole zone loses no
	// session while another zone holds a copy. Empty: no zone (all such
	// members count as one zone). A member keeps its zone for its life.
	Zone string
}

// Membership is what the store needs to know about the cluster: who is in
// it, and when that changes. The sessionmesh package adapts a
// *cluster.Cluster to it; tests pass a fake they control.
//
// Implementations must be safe for concurrent use.
type Membership interface {
	// LocalMember returns this node.
	LocalMember() Member
	// Members returns the live (alive or suspect) members, this node
	// included.
	Members() []Member
	// Settled is closed once the node has joined the cluster or found
	// that it is alone.
	Settled() <-chan struct{}
	// Notify subscribes ch to membership changes, and StopNotify ends the
	// subscription; after StopNotify returns nothing is sent on ch. A send
	// never blocks: when ch is full the change is not sent, since the store
	// treats a send as a hint to read Members again.
	Notify(ch chan<- struct{})
	StopNotify(ch chan<- struct{})
}
