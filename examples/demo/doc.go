// Command demo is the one-command demonstration of sessionmesh: it builds
// the login example, starts a cluster of login servers on free local ports
// behind a non-sticky round-robin proxy, logs in hundreds of users through
// the proxy, kills one server with SIGKILL, and shows that nobody was
// logged out and no write was lost. Run it from the repository root:
//
//	go run ./examples/demo
//	go run ./examples/demo -users 1000 -concurrency 64 -kill n3
//	go run ./examples/demo -keep          # then open the printed URL in a browser
//	go run ./examples/demo -node-args "-log-level debug"
//
// The scenario, each step checked for every user:
//
//  1. build examples/login, start -nodes servers (every one lists every
//     gossip address as a seed), wait for each /healthz, start the proxy;
//  2. through the proxy: log in, then POST /visit -visits times, expecting
//     the counts 1, 2, ... exactly, whichever node answers;
//  3. GET /me directly on every node with the user's cookie: the session is
//     everywhere;
//  4. SIGKILL one node (-kill, default the second) and at once, through the
//     proxy: GET /me and one more visit, expecting the next count exactly;
//  5. restart the killed node with the same flags, wait until it is
//     healthy, and check /me and a visit directly on it;
//  6. one more visit through the proxy, then GET /me directly on every
//     node: the restarted node is back in the replication both ways;
//  7. stop the nodes one at a time with SIGTERM (graceful leave) and check
//     their logs for data races and panics.
//
// More scenarios exercise the backup mode and deploys:
//
//	go run ./examples/demo -scenario backups
//	go run ./examples/demo -scenario rolling
//	go run ./examples/demo -scenario upgrade
//
// -scenario backups starts 5 servers with -backups 1 (each session on a
// primary and one backup), runs steps 2 and 3, SIGKILLs -kill (n2) and
// checks every user through the proxy at once while polling every
// survivor's /healthz until each reports "fully_replicated": true, sees
// exactly the survivors and holds every partition it owns (the time this
// took is printed; -ready-timeout bounds it), then SIGKILLs the next node
// (n3) and checks every user through the proxy and directly on each
// survivor.
//
// -scenario rolling starts 5 servers with -backups 0 (each session on one
// server only), runs steps 2 and 3, then restarts every server gracefully,
// one at a time: SIGTERM (the server hands its sessions over and exits),
// start it again with the same flags, wait until it is healthy and every
// server reports fully replicated, then the next. Meanwhile -concurrency
// users keep visiting through the proxy; a visit that fails is counted, not
// resent (the user's next visit goes on), and a 401 is a failed check.
// Finally GET /me through the proxy and directly on every server must show
// every user logged in with exactly the visits acknowledged.
//
// -scenario upgrade is the rolling restart of a deploy that changes the
// version: it builds the login server of the previous release (-previous,
// a git revision of this repository) next to the current one, starts 3
// servers of the previous release with -backups 0, then rolls each to the
// current build and, once all run it, each back to the previous release,
// under the same background load. No user may be logged out, no
// acknowledged visit lost, and no visit may fail: the compatibility promise
// of docs/upgrading.md.
//
// -scenario fleet-restart stops the whole fleet at once:
//
//	go run ./examples/demo -scenario fleet-restart
//
// It starts 3 servers with -backups 1, each with a -snapshot-dir of its own
// under the log directory, runs steps 2 and 3, logs every tenth user out
// directly on a node, then sends SIGTERM to every server at once (each must
// exit within 3s), restarts them all and checks directly on every server
// that every user is still logged in with exactly its visits and that
// every logged-out user, presenting its old cookie, is still logged out.
// Then every user visits once more; after more than one snapshot interval
// (-snapshot-interval, 1s) it SIGKILLs every server at once, restarts them
// all and checks again. It prints how many sessions and logouts survived
// each stop.
//
// It prints a summary with the answer distribution per node, the time the
// restarted node took to become healthy and the timing of each phase, and
// exits with status 1 if any check failed (listing the first failures).
// Every process it starts is ended on exit, also on Ctrl-C and on failure.
// Node logs go to a temporary directory whose path is printed; it is removed
// after a successful run unless -keep is given.
//
// Flags:
//
//	-scenario kill       kill, backups, rolling or fleet-restart
//	-nodes 3             login servers (at least 2; 5 for backups and rolling)
//	-users 300           users to log in, each with its own cookie jar
//	-visits 5            visits per user before the kill
//	-concurrency 32      users served at the same time
//	-kill n2             the node to SIGKILL (default: the second; backups: then the next one)
//	-keep                leave the cluster and proxy running until Ctrl-C and print their URLs
//	-node-args "..."     extra flags for every login server, split like a shell would
//	-bin path            run this login binary instead of building examples/login
//	-race                build examples/login with the race detector
//	-host 127.0.0.1      address the servers listen on
//	-proxy 127.0.0.1:0   proxy listen address (e.g. 127.0.0.1:8080 to bookmark it with -keep)
//	-logs dir            node log directory (kept)
//	-timeout 3m          give up on the whole scenario after this long
//	-ready-timeout 30s   how long a node may take to become healthy (and the cluster fully replicated)
//	-request-timeout 10s timeout of one HTTP request
//	-v                   print every failed check as it happens
//	-no-secret           run the nodes without a cluster secret (clear-text cluster traffic)
//	-snapshot-interval 1s fleet-restart: how often each server writes its snapshot
//
// Every run makes a random cluster secret and gives it to every node in the
// environment variable SESSIONMESH_SECRET (not as a flag, which ps would
// show): gossip is encrypted and the replication connections run mutually
// authenticated TLS 1.3. A restarted node gets the same secret.
package main
