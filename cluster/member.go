package cluster

import (
	"fmt"
	"maps"
)

// State is a member's state as this node sees it.
type State int

// The states of a member.
const (
	// StateAlive is a member that answers probes. Members returns alive
	// and suspect members, both reported as StateAlive (see StateSuspect).
	StateAlive State = iota
	// StateSuspect is a member that missed a probe and has not yet been
	// declared failed. memberlist v0.7.0 does not tell its users which
	// members are suspect, so this package never reports it today; it is
	// defined so that callers can handle it when it is.
	StateSuspect
	// StateDead is a member declared failed without leaving: the Member of
	// an EventFail.
	StateDead
	// StateLeft is a member that left gracefully: the Member of an
	// EventLeave.
	StateLeft
)

// String returns the state's lower-case name.
func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	default:
		return fmt.Sprintf("State(%d)", int(s))
	}
}

// Member is one node of the cluster. Members and events hand out copies: a
// caller may keep and modify them, Tags included.
type Member struct {
	// Name is the member's unique NodeName.
	Name string
	// Addr is the member's gossip address, "ip:port".
	Addr string
	// Incarnation identifies one life of the member's process: New sets it
	// from the start time in nanoseconds since 1970. A process restarted
	// with the same name has a new, larger Incarnation (as long as the
	// host's clock did not go back). It is 0 when the member's metadata
	// could not be decoded.
	Incarnation uint64
	// Tags are the member's Config.Tags; nil when it has none, or when its
	// metadata could not be decoded.
	Tags map[string]string
	// State is the member's state.
	State State
}

// String returns "name (addr)".
func (m Member) String() string {
	return fmt.Sprintf("%s (%s)", m.Name, m.Addr)
}

// clone returns m with its own copy of Tags.
func (m Member) clone() Member {
	m.Tags = maps.Clone(m.Tags)
	return m
}

// EventType is the kind of a membership change.
type EventType int

// The kinds of membership events.
const (
	// EventJoin reports a member that joined, or came back after it had
	// failed or left.
	EventJoin EventType = iota
	// EventLeave reports a member that left gracefully (it called Leave).
	EventLeave
	// EventFail reports a member declared failed: it crashed, was closed
	// without Leave, or is unreachable. A member whose leave announcement
	// was lost is reported as failed too.
	EventFail
	// EventUpdate reports a member whose metadata changed while it stayed
	// alive. A new Incarnation in an EventUpdate means the member's process
	// restarted faster than failure detection noticed.
	EventUpdate
)

// String returns the event type's lower-case name.
func (t EventType) String() string {
	switch t {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventFail:
		return "fail"
	case EventUpdate:
		return "update"
	default:
		return fmt.Sprintf("EventType(%d)", int(t))
	}
}

// Event is a membership change of another member. Events describe other
// members only, never the local node.
type Event struct {
	// Type is the kind of change.
	Type EventType
	// Member is the member after the change: StateAlive for EventJoin and
	// EventUpdate, StateLeft for EventLeave, StateDead for EventFail.
	Member Member
}

// String returns a short description such as "join web-2 (10.0.0.2:7946)".
func (e Event) String() string {
	return e.Type.String() + " " + e.Member.String()
}
