// Package status serves a live status page of a sessionmesh node, for the
// people who run it: who is in the cluster, who owns which partition, how
// many sessions each node holds, and whether replication is healthy.
//
// # Using it
//
// Mount the handler on a path of your own, behind whatever protects your
// other operational endpoints (it names every node and its addresses):
//
//	mux.Handle("GET /cluster", status.Handler(store, cl))
//
// store is the node's *replication.Store and cl its *cluster.Cluster.
// Open /cluster in a browser; it refreshes itself every second. The same
// URL with ?format=json (or with an Accept header of application/json)
// answers with the Report as JSON, for scripts:
//
//	curl -s 'http://127.0.0.1:8080/cluster?format=json' | jq '.members[] | {name, state, sessions}'
//
// # What the page shows
//
//   - Replication health: whether every partition has its full number of
//     copies (FullyReplicated: the next failure loses nothing), how many
//     partitions are under-replicated, degraded peers (writes no longer wait
//     for them until anti-entropy has repaired them), whether this node is
//     ready, the number of members and of sessions held here.
//   - Members: name, state, gossip and replication addresses, start time,
//     the partitions each is primary of and owns (in this node's view), the
//     partitions it holds completely and the records it holds (a peer's own
//     numbers from its last answer to this node's status poll), and when it
//     last answered. Members that disappear (crashed, or left) are listed
//     as gone for 15 minutes, or until they come back.
//   - Partitions: a 16x16 grid, one square per partition, coloured by its
//     primary owner. A ring marks the partitions this node owns, stripes
//     those it is still copying in, a dotted square those it holds records
//     of without owning them (being handed over). Hover for the owners.
//
// Every node answers from its own point of view; open the page on several
// nodes to compare. A node that cannot reach a peer still answers at once:
// the page reads only what the store and the cluster already know (their
// Stats, Partitions, Peers and Members) and never waits on the network.
//
// # Security of the page
//
// The page is self-contained: no external script, style, font or image.
// Everything the server sends is data: the initial report sits in a JSON
// script block (encoding/json escapes <, > and &), and the script renders
// reports with DOM calls and textContent only, so a hostile node name
// cannot inject markup. A Content-Security-Policy allows exactly the
// page's own script and style sheet (by hash) and fetches to the same
// origin; responses are not cached, not framed and not sniffed.
package status
