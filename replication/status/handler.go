package status

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

//go:embed page.js
var pageJS string

//go:embed page.css
var pageCSS string

// The page around the report: everything but the initial report is
// static, so the script and the style sheet are allowed by their hashes and
// nothing else runs.
var (
	pageHead = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>sessionmesh cluster</title>
<style>` + pageCSS + `</style>
</head>
<body>
<header>
<h1>sessionmesh <span id="node"></span></h1>
<p id="summary"></p>
<p id="conn" class="conn" role="status"></p>
</header>
<noscript><p>This page updates itself with JavaScript. Without it, read <a href="?format=json">the JSON report</a>.</p></noscript>
<main>
<section aria-labelledby="h-health"><h2 id="h-health">Replication health</h2><dl id="health" class="health"></dl></section>
<section aria-labelledby="h-members"><h2 id="h-members">Members</h2>
<table id="members"><thead><tr>
<th scope="col"></th><th scope="col">name</th><th scope="col">state</th><th scope="col">gossip address</th>
<th scope="col">replication address</th><th scope="col">started</th><th scope="col" title="partitions it is the primary of">primary</th>
<th scope="col" title="partitions it owns">owned</th><th scope="col" title="owned partitions it holds completely">complete</th>
<th scope="col" title="session records held, tombstones included">sessions</th><th scope="col" title="last answer to this node's status poll">last answer</th>
<th scope="col" title="how far its wall clock is ahead of this node's">clock offset</th>
<th scope="col" title="the highest replication protocol version its build speaks, and whether it refuses this node">protocol</th>
</tr></thead><tbody></tbody></table>
<div id="departed-box" hidden><h3>Gone</h3><ul id="departed"></ul></div>
</section>
<section aria-labelledby="h-parts"><h2 id="h-parts">Partitions</h2>
<p class="note">Each square is one partition, coloured by its primary owner. A ring marks the partitions this node owns
(stripes: still copying them in); a dotted square holds records this node is handing over.</p>
<div id="grid" class="grid"></div>
</section>
</main>
<script type="application/json" id="initial">`
	pageTail = `</script>
<script>` + pageJS + `</script>
</body>
</html>
`
	contentSecurityPolicy = "default-src 'none'; script-src " + hashSource(pageJS) + "; style-src " + hashSource(pageCSS) +
		"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

// hashSource returns the CSP source expression that allows exactly s.
func hashSource(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// Handler returns the status page of a node: an HTML page showing the
// members with their state and addresses, the partitions and their owners,
// the sessions each node holds, and the replication health, refreshed
// every second by a small script; the same URL with ?format=json (or a
// request that accepts only application/json) answers with the Report.
//
// Mount it on a path of your own, ideally behind authentication or on an
// internal port: it tells who is in the cluster and where.
//
//	mux.Handle("GET /cluster", status.Handler(store, cl))
//
// The page uses no external asset and works under any path prefix. It
// reads only what the store and the cluster already know, so it never
// blocks on the network, even while peers are dead or frozen. The handler
// is safe for concurrent use. Handler panics if store or cl is nil.
func Handler(store Store, cl Cluster) http.Handler {
	if store == nil || cl == nil {
		panic("status: Handler needs a store and a cluster")
	}
	return &handler{r: newReporter(store, cl)}
}

type handler struct{ r *reporter }

func (h *handler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := json.Marshal(h.r.report()) // escapes <, > and &: safe inside a script element
	if err != nil {
		http.Error(w, "status: encode report: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	if wantsJSON(req) {
		hdr.Set("Content-Type", "application/json")
		_, _ = w.Write(append(body, '\n'))
		return
	}
	hdr.Set("Content-Type", "text/html; charset=utf-8")
	hdr.Set("Content-Security-Policy", contentSecurityPolicy)
	hdr.Set("X-Frame-Options", "DENY")
	var page bytes.Buffer
	page.Grow(len(pageHead) + len(body) + len(pageTail))
	page.WriteString(pageHead)
	page.Write(body)
	page.WriteString(pageTail)
	_, _ = w.Write(page.Bytes())
}

// wantsJSON reports whether req asks for the JSON report: ?format=json, or
// an Accept header that names application/json and not text/html.
func wantsJSON(req *http.Request) bool {
	if f := req.URL.Query().Get("format"); f != "" {
		return f == "json"
	}
	accept := req.Header.Get("Accept")
	return strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html")
}
