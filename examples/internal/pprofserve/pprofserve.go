// Package pprofserve serves the net/http/pprof endpoints on a listener of
// their own, for the example servers' -pprof flag: profiles stay off the
// application's port (and its middleware), and nothing is registered on
// http.DefaultServeMux by this package's callers.
//
//	srv, err := pprofserve.ListenAndServe("127.0.0.1:6060")
//	if err != nil { ... }
//	defer srv.Close()
//	// go tool pprof http://127.0.0.1:6060/debug/pprof/profile?seconds=10
package pprofserve

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// Handler returns a handler serving the pprof index, the named profiles
// (/debug/pprof/heap, allocs, goroutine, ...), the CPU profile, the trace,
// the command line and symbol lookup under /debug/pprof/.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Server serves Handler on one listener until Close.
type Server struct {
	addr string
	srv  *http.Server
	done chan struct{} // closed when the serving goroutine has returned
}

// ListenAndServe listens on addr (a port of 0 picks a free one) and serves
// Handler in a goroutine of its own. It returns once the listener is open.
func ListenAndServe(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listen: %w", err)
	}
	s := &Server{
		addr: ln.Addr().String(),
		// No WriteTimeout: a CPU profile streams for as long as asked.
		srv:  &http.Server{Handler: Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln) // http.ErrServerClosed after Close
	}()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Close closes the listener and every connection, profiles in progress
// included, and waits for the serving goroutine. It is safe to call more
// than once.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}
