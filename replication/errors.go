package replication

import "errors"

// Errors returned by the store and its transports. Callers compare with
// errors.Is; everything else is wrapped with context.
var (
	// ErrClosed is returned by every call made after Close.
	ErrClosed = errors.New("replication: closed")

	// ErrUnreachable is returned when a peer cannot be reached or the
	// connection to it failed before it answered.
	ErrUnreachable = errors.New("replication: peer unreachable")

	// ErrNotSent is wrapped, next to ErrUnreachable, by errors of calls
	// that certainly did not reach the peer (a failed dial): the peer did
	// not act on the request, so it is safe to send it elsewhere.
	ErrNotSent = errors.New("replication: request not sent")

	// ErrFrameTooLarge is returned for a frame longer than the configured
	// maximum, whether it is about to be sent or announced by a peer. In
	// the second case the connection is dropped and the error also wraps
	// ErrUnreachable.
	ErrFrameTooLarge = errors.New("replication: frame too large")
)

// Errors of the transport's key management (TCPTransport.InstallKey,
// UseKey and RemoveKey).
var (
	// ErrNoKeyring is returned by InstallKey, UseKey and RemoveKey of a
	// transport created without a SecretKey: a transport that starts in
	// clear text (or with the caller's own TLS certificates) stays so.
	ErrNoKeyring = errors.New("replication: transport has no cluster secret")

	// ErrUnknownKey is returned by UseKey for a key that is not installed.
	ErrUnknownKey = errors.New("replication: key not installed")

	// ErrPrimaryKey is returned by RemoveKey for the primary key: switch to
	// another key with UseKey first.
	ErrPrimaryKey = errors.New("replication: cannot remove the primary key")
)

// Errors about sessions.
var (
	// ErrSessionEnded is returned when writing to a session that has been
	// destroyed or has expired. A caller should treat the user as logged
	// out and start a new session.
	ErrSessionEnded = errors.New("replication: session destroyed or expired")

	// ErrConflict is returned by Update when other updates of the same
	// attribute won 100 times in a row, or when, during a failover, its
	// update lost to one coordinated by another node.
	ErrConflict = errors.New("replication: too many concurrent updates")

	// ErrInvalidID is returned for an empty session ID or one longer than
	// 256 bytes.
	ErrInvalidID = errors.New("replication: invalid session ID")

	// ErrSessionTooLarge is returned by a write that would make a session
	// exceed Config.Limits: too many attributes, a value too large, or too
	// many bytes in all. Nothing is written. Records from peers over the
	// limits are refused the same way (and counted in Stats.Rejected).
	ErrSessionTooLarge = errors.New("replication: session over its size limits")
)
