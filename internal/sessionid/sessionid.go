// Package sessionid is the one place that says what a session ID looks
// like: how a new one is made, which strings from a browser may name a
// session, and which IDs name sessionmesh's own records rather than
// sessions. httpsession and its adapters use it; the store itself accepts
// any ID up to its length limit.
package sessionid

import (
	"crypto/rand"
	"encoding/base64"
)

// Bytes is the number of random bytes in a session ID: 256 bits.
const Bytes = 32

// Len is the length of an encoded session ID.
var Len = base64.RawURLEncoding.EncodedLen(Bytes)

// ReservedPrefix starts the IDs of the records sessionmesh keeps in the
// session store for itself (the principal index). Session IDs never start
// with it: they are Len characters of base64url.
const ReservedPrefix = "~"

// New returns a fresh session ID: 256 bits from crypto/rand, URL-safe.
func New() string {
	var b [Bytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Valid reports whether s has the shape of an ID made by New, so that
// malformed or hostile cookies never reach the store. Reserved IDs are not
// valid session IDs.
func Valid(s string) bool {
	if len(s) != Len {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// Reserved reports whether id names one of sessionmesh's own records
// rather than a session.
func Reserved(id string) bool {
	return len(id) > 0 && id[0] == ReservedPrefix[0]
}
