// Package rrproxy is a non-sticky round-robin HTTP reverse proxy: the load
// balancer in front of the demo's login servers, and a building block for
// tests and the load generator. It pins no user to a server, so every
// request of a browser may land on another node, which is exactly what
// session replication must survive.
//
// Usage:
//
//	p, err := rrproxy.New(rrproxy.Config{
//		Backends: []string{"http://127.0.0.1:8081", "http://127.0.0.1:8082"},
//	})
//	if err != nil { ... }
//	defer p.Close()
//	srv, err := rrproxy.ListenAndServe("127.0.0.1:0", p)
//	if err != nil { ... }
//	defer srv.Close()
//	fmt.Println("open", srv.URL)
//	...
//	p.SetBackends(otherURLs) // at any time
//	for _, s := range p.Stats() { fmt.Println(s.Backend, s.Responses) }
//
// # Behaviour
//
// Each request goes to the next backend in turn (strict rotation, shared by
// all clients). When a backend cannot be reached or drops the connection
// before sending a response header (connection refused, reset, EOF, dial
// timeout: nginx's `proxy_next_upstream error`), the proxy tries the next
// backend, replaying the request body, until every backend has been tried
// once; then it answers 502 Bad Gateway with a message naming each backend
// and its error. Responses, including 5xx ones, are passed through as they
// are. To replay bodies the proxy buffers them in memory, up to
// Config.MaxBodyBytes (default 1 MiB); a bigger body gets 413.
//
// Retrying after a reset or EOF applies to every method, like nginx's
// `proxy_next_upstream error non_idempotent`: a backend that died with the
// request half-processed may already have applied it, so a non-idempotent
// request can then be applied twice. When a server is killed between
// requests (as the demo does) that never happens: the request never reached
// it.
//
// Cookie and Set-Cookie headers pass through untouched, so browsers keep
// one session cookie for the proxy's origin whichever backend answers. The
// proxy sets X-Forwarded-For, X-Forwarded-Host and X-Forwarded-Proto
// (client-supplied X-Forwarded-* headers are dropped, as
// httputil.ReverseProxy.Rewrite does), and the Host header becomes the
// backend's.
//
// A Proxy is an http.Handler and safe for concurrent use; SetBackends may
// be called while requests are in flight.
package rrproxy
