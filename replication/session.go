package replication

import (
	"iter"
	"time"
)

// Session is a read-only view of one session as the store held it when Get
// returned it. It stays valid and unchanged after later writes (the store
// never modifies a record it has handed out). The zero Session has no
// attributes.
type Session struct {
	r *record
}

// ID returns the session's ID.
func (s Session) ID() string {
	if s.r == nil {
		return ""
	}
	return s.r.id
}

// Value returns the value of the attribute called name. The slice is shared:
// callers must not modify it.
func (s Session) Value(name string) ([]byte, bool) {
	if s.r == nil {
		return nil, false
	}
	i := s.r.find(name)
	if i < 0 || s.r.attrs[i].deleted {
		return nil, false
	}
	return s.r.attrs[i].value, true
}

// All iterates over the session's attributes in name order. Values are
// shared: callers must not modify them.
func (s Session) All() iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		if s.r == nil {
			return
		}
		for i := range s.r.attrs {
			a := &s.r.attrs[i]
			if a.deleted {
				continue
			}
			if !yield(a.name, a.value) {
				return
			}
		}
	}
}

// Len returns the number of attributes.
func (s Session) Len() int {
	n := 0
	if s.r != nil {
		for i := range s.r.attrs {
			if !s.r.attrs[i].deleted {
				n++
			}
		}
	}
	return n
}

// Created returns when the session was created.
func (s Session) Created() time.Time {
	if s.r == nil {
		return time.Time{}
	}
	return time.UnixMilli(s.r.created)
}

// Expires returns the absolute deadline of the session (its lifetime), or
// the zero time when it has none.
func (s Session) Expires() time.Time {
	if s.r == nil || s.r.expires == 0 {
		return time.Time{}
	}
	return time.UnixMilli(s.r.expires)
}

// Deadline returns when the session ends if nobody uses it: its idle
// deadline as this node knows it, or its absolute deadline when that comes
// first.
func (s Session) Deadline() time.Time {
	if s.r == nil {
		return time.Time{}
	}
	d := s.r.deadline()
	if d == 0 {
		return time.Time{}
	}
	return time.UnixMilli(d)
}

// IdleTimeout returns the session's idle timeout; zero means none.
func (s Session) IdleTimeout() time.Duration {
	if s.r == nil {
		return 0
	}
	return time.Duration(s.r.idleMs) * time.Millisecond
}

// Changes is one write to a session: attributes to set and to delete, and,
// for a write that creates the session, its timeouts.
type Changes struct {
	// Set maps attribute names to their new values. The store keeps the
	// slices: callers must not modify them afterwards.
	Set map[string][]byte
	// Delete lists attributes to remove.
	Delete []string
	// IdleTimeout ends the session when it has not been used for this
	// long. Zero means no idle timeout. Used only when the write creates
	// the session.
	IdleTimeout time.Duration
	// Lifetime ends the session this long after its creation, however
	// active it is. Zero means no absolute lifetime (the session then
	// needs an IdleTimeout). Used only when the write creates the session.
	Lifetime time.Duration
	// ExpiresAt, when not zero, moves the session's absolute deadline to
	// at least this time, on creation or later (deadlines only move
	// forward: replicas merge them by maximum). Adapters for libraries that
	// manage expiry themselves, such as scs, use it.
	ExpiresAt time.Time
	// Base is the session as the caller read it earlier in the same
	// request (from Get), if it did. A node that does not hold the
	// session's partition builds the write on it instead of reading the
	// session from its owners again: one round trip less per write. A
	// node that holds the partition builds on its own, fresher copy. Zero:
	// the store reads the session itself. A Base whose ID is not the one
	// written is ignored. With Async writes, pass the session read with
	// GetAtLeast: the owners may not hold the caller's last write yet, and
	// a write built on what they hold could lack it (on a session whose
	// asynchronous login is still on its way, it would create the session
	// there without the login's attributes). httpsession does.
	Base Session
}

func (c Changes) empty() bool { return len(c.Set) == 0 && len(c.Delete) == 0 }
