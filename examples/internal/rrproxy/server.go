package rrproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"
)

// Server serves an http.Handler (typically a Proxy) on a TCP listener in a
// goroutine of its own. Create it with ListenAndServe; end it with Close or
// Shutdown.
type Server struct {
	// URL is the base URL of the server, such as "http://127.0.0.1:34567".
	URL string
	// Addr is the address the server listens on ("127.0.0.1:34567").
	Addr string

	srv  *http.Server
	done chan struct{} // closed when the serving goroutine has returned
	err  error         // Serve's error; read after done
}

// ListenAndServe listens on addr ("" or a port of 0 picks a free port on
// 127.0.0.1) and serves h until Close or Shutdown. It returns once the
// listener is open, so the server accepts connections as soon as it
// returns.
func ListenAndServe(addr string, h http.Handler) (*Server, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rrproxy: listen: %w", err)
	}
	s := &Server{
		Addr: ln.Addr().String(),
		URL:  "http://" + ln.Addr().String(),
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          log.New(io.Discard, "", 0),
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		s.err = s.srv.Serve(ln)
	}()
	return s, nil
}

// Close closes the listener and every connection at once and waits for the
// serving goroutine. It is safe to call more than once.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return s.serveErr(err)
}

// Shutdown stops accepting connections, waits for requests in flight until
// ctx is done (then closes what is left), and waits for the serving
// goroutine.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	<-s.done
	return s.serveErr(err)
}

func (s *Server) serveErr(err error) error {
	if err != nil {
		return err
	}
	if s.err != nil && !errors.Is(s.err, http.ErrServerClosed) {
		return s.err
	}
	return nil
}
