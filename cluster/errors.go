package cluster

import "errors"

// Errors callers may branch on. Other errors are wrapped with context and
// are not meant to be compared.
var (
	// ErrClosed is returned by Leave after Close.
	ErrClosed = errors.New("cluster: closed")
)
