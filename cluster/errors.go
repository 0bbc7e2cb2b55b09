package cluster

import "errors"

// Errors callers may branch on. Other errors are wrapped with context and
// are not meant to be compared.
var (
	// ErrClosed is returned by Leave and the key management calls after
	// Close.
	ErrClosed = errors.New("cluster: closed")

	// ErrNoKeyring is returned by InstallKey, UseKey and RemoveKey on a
	// node started without a SecretKey: gossip that starts in clear text
	// stays so.
	ErrNoKeyring = errors.New("cluster: gossip encryption is not enabled (no SecretKey)")

	// ErrUnknownKey is returned by UseKey for a key that is not installed.
	ErrUnknownKey = errors.New("cluster: key not installed")

	// ErrPrimaryKey is returned by RemoveKey for the primary key: switch to
	// another key with UseKey first.
	ErrPrimaryKey = errors.New("cluster: cannot remove the primary key")
)
