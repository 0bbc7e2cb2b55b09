package replication

import (
	"errors"
	"fmt"

	"github.com/sessionmesh/sessionmesh/transport"
)

// Errors returned by the store. Callers compare with
// errors.Is; everything else is wrapped with context.
var (
	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("replication: closed")

	// ErrUnreachable is returned when no peer that could answer was
	// reached. It is transport.ErrUnreachable, so a caller may test for
	// either.
	ErrUnreachable = transport.ErrUnreachable

	// ErrPeerRefused is reported by Health while a live member refuses this
	// node: its transport refuses the handshake (another cluster label,
	// secret or certificate) or its store this node's protocol version.
	// Writes cannot reach that member, so the node is not ready: a
	// readiness probe should fail (and a rollout stop) until the member
	// accepts it or leaves the cluster.
	ErrPeerRefused = errors.New("replication: a peer refuses this node")

	// ErrMinority is returned by reads, writes and updates, and reported
	// by Health, while this node's view of the cluster holds fewer members
	// than vanished from it without leaving in the last
	// Config.MinorityHold: it may be cut off from the others, and its
	// copies may lack what they wrote. It satisfies errors.Is(err,
	// ErrUnreachable). A readiness probe should fail while Health reports
	// it, and an HTTP server answer 503 so that the load balancer sends
	// the user elsewhere.
	ErrMinority = fmt.Errorf("replication: this node sees fewer members than vanished from its view: %w", ErrUnreachable)
)

// Errors about sessions.
var (
	// ErrSessionEnded is returned when writing to a session that has been
	// destroyed or has expired. A caller should treat the user as logged
	// out and start a new session.
	ErrSessionEnded = errors.New("replication: session destroyed or expired")

	// ErrSessionRenewed is returned when writing to a session whose ID
	// was renewed (Store.Rename moved it to a new ID) since the caller
	// read it: a request that was in flight while the user logged in, or
	// one that still carried the old ID. The user is not logged out: the
	// client already holds the new ID, or receives it with the response
	// of the renewal, so a caller should leave the client's ID alone (the
	// write itself is lost). The error never reveals the new ID. It
	// satisfies errors.Is(err, ErrSessionEnded), so callers that only
	// know ErrSessionEnded still stop writing to the old ID; test for
	// ErrSessionRenewed first.
	ErrSessionRenewed error = renewedError{}

	// ErrConflict is returned by Update when other updates of the same
	// attribute won 100 times in a row, or when, during a failover, its
	// update lost to one coordinated by another node.
	ErrConflict = errors.New("replication: too many concurrent updates")

	// ErrInvalidID is returned for an empty session ID or one longer than
	// 256 bytes.
	ErrInvalidID = errors.New("replication: invalid session ID")

	// ErrClockOffset is returned by writes on a node whose wall clock is
	// too far ahead of the cluster's: its peers would refuse what it
	// wrote, so it refuses first, before acknowledging anything. Health
	// reports it too. An HTTP server should answer 503 and let the load
	// balancer send the user elsewhere.
	ErrClockOffset = errors.New("replication: clock too far from the cluster's")

	// ErrSessionTooLarge is returned by a write that would make a session
	// exceed Config.Limits: too many attributes, a value too large, or too
	// many bytes in all. Nothing is written. Records from peers over the
	// limits are refused the same way (and counted in Stats.Rejected).
	ErrSessionTooLarge = errors.New("replication: session over its size limits")

	// ErrOverloaded is returned by a write that would create a new
	// session (Save of an unknown ID, Rename to a new one) on a node that
	// holds Config.MaxSessions sessions or Config.MaxBytes bytes of them
	// already. Nothing is written. Sessions that exist keep working: writes
	// to them, and records from peers, are never refused for the budget.
	// An HTTP server should answer 503 with Retry-After: the node has
	// room again once sessions end.
	ErrOverloaded = errors.New("replication: node over its session budget")
)

// renewedError is the type of ErrSessionRenewed: an ended session whose
// ID was renewed.
type renewedError struct{}

func (renewedError) Error() string { return "replication: session ID renewed" }

// Is makes ErrSessionRenewed match ErrSessionEnded too.
func (renewedError) Is(target error) bool { return target == ErrSessionEnded }
