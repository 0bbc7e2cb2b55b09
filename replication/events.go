package replication

import (
	"time"
)

// EventType is what happened to a session.
type EventType int

// The session events. Append only.
const (
	// SessionCreated: a write created the session (a login, or a RenewID
	// giving it a new ID).
	SessionCreated EventType = iota + 1
	// SessionDestroyed: the session was destroyed (a logout, or the old ID
	// of a RenewID).
	SessionDestroyed
	// SessionExpired: the session reached its idle or absolute deadline.
	SessionExpired
)

// String returns "created", "destroyed" or "expired".
func (t EventType) String() string {
	switch t {
	case SessionCreated:
		return "created"
	case SessionDestroyed:
		return "destroyed"
	case SessionExpired:
		return "expired"
	}
	return "unknown"
}

// SessionEvent reports a change in a session's life, for audit logs of
// logins and logouts.
type SessionEvent struct {
	Type EventType
	// Session is the session: as created, as it was before it was
	// destroyed, or as it expired. A destroyed session has no attributes
	// left, so Session.Value finds nothing in it.
	Session Session
	// Time is when this node saw it happen.
	Time time.Time
}

// eventQueue bounds the events waiting for Config.OnSessionEvent.
const eventQueue = 1024

// sessionEvent reports a change applied on this node when it is the
// session's primary: a record that did not exist, or that was live and is
// now destroyed. It reports changes that came as a write, and those that
// came by repair into a partition this node already held completely (the
// write itself lost the race with anti-entropy, or never arrived); not
// those of a state transfer, which copies what happened elsewhere. A
// transition happens once on a node, so each event is reported once, by
// the primary, however many copies there are.
func (s *Store) sessionEvent(pi int, old, out *record, fromWrite bool) {
	if s.cfg.OnSessionEvent == nil || out == nil || !s.isPrimary(pi) {
		return
	}
	if !fromWrite && !s.parts[pi].ready.Load() {
		return // state transfer: the event happened before this node held the partition
	}
	switch {
	case old == nil && !out.destroyed:
		s.emit(SessionCreated, out)
	case old != nil && !old.destroyed && out.destroyed:
		s.emit(SessionDestroyed, old)
	}
}

// isPrimary reports whether this node is partition pi's primary.
func (s *Store) isPrimary(pi int) bool {
	owners := s.view.Load().owners[pi]
	return len(owners) > 0 && owners[0].self
}

// emit queues an event for the event goroutine; when the queue is full the
// event is dropped and counted, so a slow callback never slows writes.
func (s *Store) emit(t EventType, r *record) {
	select {
	case s.eventsOut <- SessionEvent{Type: t, Session: Session{r: r}, Time: s.clock.Now()}:
	default:
		s.stats.droppedEvents.Add(1)
	}
}

// deliverEvents calls OnSessionEvent for every queued event, one at a
// time, until Close.
func (s *Store) deliverEvents() {
	for {
		select {
		case <-s.done:
			return
		case ev := <-s.eventsOut:
			s.cfg.OnSessionEvent(ev)
		}
	}
}
