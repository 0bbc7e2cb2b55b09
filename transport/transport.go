// Package transport is the contract between the replicated store and the
// network that carries its messages: the Transport interface and the errors
// every implementation returns, so that the store can tell a peer that is
// certainly gone from one that is only slow.
//
// Two implementations exist: transport/tcp, persistent mutually
// authenticated connections for production, and internal/memnet, an
// in-memory network with fault injection for tests. Both return the errors
// below in the same situations, so the store behaves the same on either.
//
// The package is a leaf: it imports nothing of sessionmesh, and nothing in
// it knows what a session is.
package transport

import (
	"context"
	"errors"
)

// Transport carries requests between the stores of a cluster and brings
// back their responses. The store encodes its messages itself; a Transport
// moves opaque byte slices and never interprets them.
//
// Implementations must be safe for concurrent use.
type Transport interface {
	// Addr returns the address peers pass to Call to reach this transport.
	// It is what the node publishes in its cluster metadata.
	Addr() string

	// Call sends request to the transport listening at addr and waits for
	// the response of that transport's handler. It returns ctx.Err() when
	// ctx ends first; an error wrapping ErrUnreachable when the peer cannot
	// be reached or the connection fails before the response arrives (the
	// request may or may not have been handled), which also wraps
	// ErrNotSent when the request certainly never left, ErrRefused
	// when the peer's address refused the connection, and ErrHandshake
	// when a live peer refused this node's handshake; and ErrClosed after
	// Close. Call does not retain request after it returns; the response
	// belongs to the caller.
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

// Errors of every Transport. Callers compare with errors.Is; each
// implementation wraps them with context.
var (
	// ErrClosed is returned by Call after Close.
	ErrClosed = errors.New("transport: closed")

	// ErrUnreachable is wrapped by the error of a Call whose peer could
	// not be reached, or whose connection failed before the response
	// arrived.
	ErrUnreachable = errors.New("transport: peer unreachable")

	// ErrNotSent is wrapped, next to ErrUnreachable, by errors of calls
	// that certainly did not reach the peer (a failed dial): the peer did
	// not act on the request, so it is safe to send it elsewhere.
	ErrNotSent = errors.New("transport: request not sent")

	// ErrRefused is wrapped, next to ErrUnreachable and ErrNotSent, when
	// the peer's address actively refused the connection: no process
	// listens there, so the peer is certainly gone (it crashed or exited),
	// not merely slow or cut off. Silence (a timeout, a lost packet) never
	// yields ErrRefused.
	ErrRefused = errors.New("transport: connection refused, peer gone")

	// ErrHandshake is wrapped, next to ErrUnreachable and ErrNotSent, when
	// a peer is listening but refuses this node's connections: it speaks
	// another protocol version, belongs to another cluster label, or does
	// not accept this node's cluster secret or certificate. The peer is
	// alive and will go on refusing: unlike silence, retrying does not
	// help until one side's configuration or version changes.
	ErrHandshake = errors.New("transport: handshake refused")
	// ErrFrameTooLarge is returned for a message longer than the
	// transport's maximum, whether it is about to be sent or announced by
	// a peer. In the second case the connection is dropped and the error
	// also wraps ErrUnreachable.
	ErrFrameTooLarge = errors.New("transport: frame too large")
)
