package tcp

import "errors"

// Errors of the transport's key management (InstallKey, UseKey and
// RemoveKey). The errors of calls are transport's: ErrClosed,
// ErrUnreachable, ErrNotSent, ErrRefused, ErrHandshake and
// ErrFrameTooLarge.
var (
	// ErrNoKeyring is returned by InstallKey, UseKey and RemoveKey of a
	// transport created without a SecretKey: a transport that starts in
	// clear text (or with the caller's own TLS certificates) stays so.
	ErrNoKeyring = errors.New("tcp: transport has no cluster secret")

	// ErrUnknownKey is returned by UseKey for a key that is not installed.
	ErrUnknownKey = errors.New("tcp: key not installed")

	// ErrPrimaryKey is returned by RemoveKey for the primary key: switch to
	// another key with UseKey first.
	ErrPrimaryKey = errors.New("tcp: cannot remove the primary key")
)
