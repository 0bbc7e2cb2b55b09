package replication

import (
	"context"
)

// Transport carries requests between the stores of a cluster and brings
// back their responses. The store encodes its messages itself; a Transport
// moves opaque byte slices and never interprets them.
//
// Implementations must be safe for concurrent use. TCPTransport is the one to
// use in production; internal/memnet provides an in-memory implementation
// with fault injection for tests.
type Transport interface {
	// Addr returns the address peers pass to Call to reach this transport.
	// It is what the store publishes in its cluster metadata.
	Addr() string

	// Call sends request to the transport listening at addr and waits for
	// the response of that transport's handler. It returns ctx.Err() when
	// ctx ends first, an error wrapping ErrUnreachable when the peer cannot
	// be reached or the connection fails before the response arrives (the
	// request may or may not have been handled), and ErrClosed after Close.
	// Call does not retain request after it returns; the response belongs
	// to the caller.
	Call(ctx context.Context, addr string, request []byte) (response []byte, err error)

	// Serve installs the handler for inbound requests. The store calls it
	// once, before it joins the cluster; requests that arrive earlier are
	// answered with an error. The handler may run concurrently for requests
	// on different connections, must not block for long (it is on the
	// path of the peer's requests), must not retain request after it
	// returns, and gives up ownership of the response it returns.
	Serve(handler func(request []byte) (response []byte))

	// Close stops listening, fails pending calls with ErrClosed, closes
	// every connection and waits for the transport's goroutines to exit,
	// handlers that are running included (so a handler must never block
	// forever, nor call Close). It is safe to call more than once.
	Close() error
}
