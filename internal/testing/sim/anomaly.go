package sim

import (
	"fmt"
	"strings"
	"time"
)

// AnomalyKind classifies a violated invariant.
type AnomalyKind int

// The kinds of anomaly; each must occur zero times.
const (
	// LostWrite: a read or an update showed less than was acknowledged
	// (a visit count or a written attribute went backwards).
	LostWrite AnomalyKind = iota + 1
	// ExtraCount: more than was ever attempted.
	ExtraCount
	// LoggedOut: a session that was never logged out was not found, or
	// Update said it had ended.
	LoggedOut
	// Resurrected: a session whose logout was acknowledged was found.
	Resurrected
	// WrongUser: a session held another user's name.
	WrongUser
	// Diverged: after convergence, nodes answered one session differently.
	Diverged
	// AckWithoutCopy: a synchronous write was acknowledged by a node that
	// does not own the session while no owner was reachable from it: the
	// write is on no node at all.
	AckWithoutCopy
	// NotConverged: the cluster did not converge within the bound after
	// the last fault.
	NotConverged
	// Unavailable: an operation failed while the cluster was settled:
	// converged, every view agreeing, no fault active (clock offsets and
	// link delays aside).
	Unavailable
)

var anomalyNames = map[AnomalyKind]string{
	LostWrite: "lost acknowledged write", ExtraCount: "count from nowhere", LoggedOut: "user logged out",
	Resurrected: "logout undone", WrongUser: "wrong user", Diverged: "replicas disagree",
	AckWithoutCopy: "write acknowledged without any copy", NotConverged: "no convergence",
	Unavailable: "failed in a settled cluster",
}

// String describes the kind.
func (k AnomalyKind) String() string {
	if s, ok := anomalyNames[k]; ok {
		return s
	}
	return fmt.Sprintf("AnomalyKind(%d)", int(k))
}

// Anomaly is one violation, with its evidence.
type Anomaly struct {
	Kind                AnomalyKind
	At                  time.Duration
	User, Session, Node string
	Detail              string
	// Known names the known issue whose mechanism the anomaly shows (see
	// KnownIssues), or is "".
	Known string
	// History is the user's last operations, oldest first, ending with
	// the one that showed the anomaly.
	History []string
}

// String formats the anomaly with its evidence.
func (a Anomaly) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%.3fs %s: %s", a.At.Seconds(), a.Kind, a.Detail)
	if a.User != "" {
		fmt.Fprintf(&b, " (user %s, session %s, node %s)", a.User, a.Session, a.Node)
	}
	if a.Known != "" {
		fmt.Fprintf(&b, " [known issue %s]", a.Known)
	}
	for _, h := range a.History {
		b.WriteString("\n        " + h)
	}
	return b.String()
}
