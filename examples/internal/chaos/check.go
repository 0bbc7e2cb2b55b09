package chaos

import (
	"fmt"
	"strings"
	"time"
)

// Op is what a simulated user's request does.
type Op int

// The operations of a simulated user.
const (
	// OpLogin is POST /login through the load balancer.
	OpLogin Op = iota + 1
	// OpVisit is POST /visit through the load balancer: the counter + 1.
	OpVisit
	// OpMe is GET /me through the load balancer.
	OpMe
	// OpLogout is POST /logout through the load balancer.
	OpLogout
	// OpProbe is GET /me through the load balancer with the cookie of a
	// session the user logged out of: it must answer 401.
	OpProbe
	// OpVerify is GET /me with the current session's cookie, sent
	// directly to one node after the cluster has recovered from a fault
	// and at the end: every node must answer with exactly the counts
	// acknowledged.
	OpVerify
	// OpVerifyGone is OpProbe sent directly to one node.
	OpVerifyGone
)

var opNames = map[Op]string{
	OpLogin: "POST /login", OpVisit: "POST /visit", OpMe: "GET /me", OpLogout: "POST /logout",
	OpProbe: "GET /me (logged-out cookie)", OpVerify: "GET /me", OpVerifyGone: "GET /me (logged-out cookie)",
}

// String returns the request, such as "POST /visit".
func (o Op) String() string {
	if s, ok := opNames[o]; ok {
		return s
	}
	return fmt.Sprintf("Op(%d)", int(o))
}

// Event is one request of a simulated user and its outcome, as the
// checker sees it.
type Event struct {
	// Op is the request.
	Op Op
	// Session is the session ID the request carried ("" for none).
	Session string
	// NewSession is the session ID a login answer set.
	NewSession string
	// Node is the node the request was sent to directly; "" means
	// through the load balancer.
	Node string
	// Sent is when the request was sent; Took how long the answer took.
	Sent time.Time
	Took time.Duration
	// Status is the HTTP status, 0 when there was no answer.
	Status int
	// Err describes a failed request (no answer, or an unreadable one).
	Err string
	// TimedOut is set when the client gave up waiting: the request may
	// still be processed later.
	TimedOut bool
	// AnsweredBy, User and Visits are the fields of the JSON answer;
	// HasVisits tells whether visits was present.
	AnsweredBy string
	User       string
	Visits     int
	HasVisits  bool
	// Tried lists the backends the load balancer tried, in order, and
	// MaybeApplied counts the failed tries that may have reached a
	// handler (so a retry may have applied the request twice).
	Tried        []string
	MaybeApplied int
	// Fault is the index of the fault being injected or recovered from
	// when the request was sent, or else of one injected while it was in
	// flight; 0 between faults.
	Fault int
}

// answered reports whether the request got an answer that the checker
// understands: 200 with JSON, or 401.
func (e *Event) answered() bool {
	return e.Err == "" && (e.Status == 200 || e.Status == 401)
}

// Format describes the event on one line, with times relative to start.
func (e *Event) Format(start time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8.3fs %s", e.Sent.Sub(start).Seconds(), e.Op)
	if e.Session != "" {
		fmt.Fprintf(&b, " [session %s]", short(e.Session))
	}
	if e.Node != "" {
		fmt.Fprintf(&b, " directly on %s", e.Node)
	} else {
		fmt.Fprintf(&b, " via the proxy")
	}
	b.WriteString(" -> ")
	switch {
	case e.Err != "":
		fmt.Fprintf(&b, "error: %s", e.Err)
		if e.Status != 0 {
			fmt.Fprintf(&b, " (status %d)", e.Status)
		}
	default:
		fmt.Fprintf(&b, "%d", e.Status)
		if e.User != "" {
			fmt.Fprintf(&b, " user=%s", e.User)
		}
		if e.HasVisits {
			fmt.Fprintf(&b, " visits=%d", e.Visits)
		}
		if e.NewSession != "" {
			fmt.Fprintf(&b, " new session %s", short(e.NewSession))
		}
	}
	if e.AnsweredBy != "" {
		fmt.Fprintf(&b, " by %s", e.AnsweredBy)
	}
	fmt.Fprintf(&b, " in %s", e.Took.Round(time.Millisecond))
	if len(e.Tried) > 1 {
		fmt.Fprintf(&b, " (proxy tried %s", strings.Join(e.Tried, ", "))
		if e.MaybeApplied > 0 {
			fmt.Fprintf(&b, "; %d failed tries may have been applied", e.MaybeApplied)
		}
		b.WriteString(")")
	}
	if e.Fault > 0 {
		fmt.Fprintf(&b, " [fault #%d]", e.Fault)
	}
	return b.String()
}

// short returns the first 8 characters of a session ID: enough to find it
// again, without printing a whole (secret) ID.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// AnomalyKind classifies what the checker found wrong.
type AnomalyKind int

// The kinds of anomaly. Each must occur zero times.
const (
	// LostWrite: an answer showed fewer visits than were acknowledged
	// (the counter went backwards, or a read missed an acknowledged
	// write).
	LostWrite AnomalyKind = iota + 1
	// ExtraCount: an answer showed more visits than were sent (a visit
	// counted twice, or a count from nowhere).
	ExtraCount
	// LoggedOut: a session that was never logged out was answered 401
	// ("not logged in"). With one fault at a time and recovery between,
	// at least one replica of every session survives, so this must never
	// happen.
	LoggedOut
	// Resurrected: the cookie of a session whose logout was
	// acknowledged was answered as logged in.
	Resurrected
	// WrongUser: an answer named another user than the session's.
	WrongUser
	// ReusedID: a login answered with a session ID that the user had
	// before (RenewID must give a fresh one).
	ReusedID
	// NotRecovered: the cluster did not report every node ready and
	// fully replicated within the recovery timeout after a fault.
	NotRecovered
	// NodeExited: a node exited without the harness asking it to, or a
	// graceful stop failed.
	NodeExited
	// Leak: a node's goroutines or heap grew beyond the soak bounds.
	Leak
	// Diverged: after the cluster reported every session fully
	// replicated, nodes answered the same session differently (a
	// verification round, directly on every node).
	Diverged
)

var anomalyNames = map[AnomalyKind]string{
	LostWrite: "lost acknowledged write", ExtraCount: "count skipped or doubled",
	LoggedOut: "user logged out", Resurrected: "logged-out session resurrected",
	WrongUser: "wrong user", ReusedID: "session ID reused at login",
	NotRecovered: "cluster did not recover", NodeExited: "node exited unexpectedly",
	Leak: "goroutine or heap growth", Diverged: "replicas disagree",
}

// AllAnomalyKinds lists every AnomalyKind in order.
var AllAnomalyKinds = []AnomalyKind{LostWrite, ExtraCount, LoggedOut, Resurrected, Diverged, WrongUser, ReusedID, NotRecovered, NodeExited, Leak}

// String describes the kind.
func (k AnomalyKind) String() string {
	if s, ok := anomalyNames[k]; ok {
		return s
	}
	return fmt.Sprintf("AnomalyKind(%d)", int(k))
}

// Anomaly is one violation of what the cluster promises, with the
// evidence for it.
type Anomaly struct {
	// Kind classifies it.
	Kind AnomalyKind
	// User and Session identify the simulated user and the (shortened)
	// session ID; empty for cluster-level anomalies.
	User, Session string
	// Node is the node that answered or is concerned.
	Node string
	// At is when the request was sent (or the check was made).
	At time.Time
	// Fault is the index of the fault in progress (0: between faults).
	Fault int
	// Detail says what was expected and what came.
	Detail string
	// History holds the user's last requests before and including the
	// one that showed the anomaly, and, for a LoggedOut anomaly, the
	// follow-up that tells whether the logout was transient.
	History []string
}

// sessionModel is what a user knows of one of its sessions.
type sessionModel struct {
	id string
	// ends is the earliest moment the session may expire: its login was
	// sent then minus the lifetime, and the server created it later.
	ends  time.Time
	acked int // the count last confirmed by an answer
	// maybe counts the visits since then whose outcome is unknown (no
	// answer, 5xx, retried by the proxy after a broken connection): each
	// may or may not have counted.
	maybe int
	// tainted is set when a request of the session timed out at the
	// client: it may still be processed, concurrently with later ones,
	// so counts are no longer checked (rule 3 of docs/consistency.md).
	tainted bool
	// loggedOut is the anomaly of the first 401 this session got, if
	// any; later answers tell whether it was transient.
	loggedOut *Anomaly
	back      bool // the session answered 200 after its first 401
	// logoutMaybe is set when a logout of the session failed (no answer,
	// an error status): it may have been applied, so a 401 after it is no
	// anomaly.
	logoutMaybe bool
}

// userModel checks the events of one simulated user, in the order the
// user sent them (one at a time). It is not safe for concurrent use; each
// user's worker owns its model.
type userModel struct {
	name      string
	lifetime  time.Duration // the servers' absolute session lifetime
	cur       *sessionModel
	destroyed map[string]time.Time // logged-out session IDs: when the logout was acknowledged
	known     map[string]bool      // every session ID the user has had
}

// newUserModel returns the model of a user whose sessions last lifetime.
func newUserModel(name string, lifetime time.Duration) *userModel {
	return &userModel{name: name, lifetime: lifetime, destroyed: map[string]time.Time{}, known: map[string]bool{}}
}

// apply checks e against what the user's earlier requests imply, updates
// the model, and returns the anomalies e shows.
func (m *userModel) apply(e *Event) []*Anomaly {
	var out []*Anomaly
	report := func(k AnomalyKind, format string, args ...any) {
		out = append(out, &Anomaly{
			Kind: k, User: m.name, Session: short(e.Session), Node: cmpOr(e.Node, e.AnsweredBy),
			At: e.Sent, Fault: e.Fault, Detail: fmt.Sprintf(format, args...),
		})
	}
	where := "via the proxy"
	if e.Node != "" {
		where = "directly on " + e.Node
	}
	if e.AnsweredBy != "" && e.Node == "" {
		where += " (answered by " + e.AnsweredBy + ")"
	}
	if e.answered() && e.Status == 200 && e.User != "" && e.User != m.name {
		report(WrongUser, "%s %s answered user %q, want %q", e.Op, where, e.User, m.name)
	}
	switch e.Op {
	case OpLogin:
		if e.Err != "" || e.Status != 200 || e.NewSession == "" {
			return out // unknown: the user logs in again
		}
		if m.known[e.NewSession] {
			report(ReusedID, "POST /login %s answered with session %s, which this user had before", where, short(e.NewSession))
		}
		m.known[e.NewSession] = true
		m.cur = &sessionModel{id: e.NewSession, ends: e.Sent.Add(m.lifetime)}

	case OpLogout:
		if m.cur == nil || e.Session != m.cur.id {
			return out
		}
		if !e.answered() || e.Status != 200 {
			m.cur.logoutMaybe = true // unknown: the user sends it again
			return out
		}
		m.destroyed[m.cur.id] = e.Sent.Add(e.Took)
		m.cur = nil

	case OpProbe, OpVerifyGone:
		if _, ok := m.destroyed[e.Session]; ok && e.answered() && e.Status == 200 {
			report(Resurrected, "%s %s answered 200 (user %q, visits %d) for a session whose logout was acknowledged; want 401",
				e.Op, where, e.User, e.Visits)
		}

	case OpVisit, OpMe, OpVerify:
		s := m.cur
		if s == nil || e.Session != s.id {
			return out
		}
		if !e.Sent.Add(e.Took).Before(s.ends) {
			// The session may have reached its absolute lifetime before
			// the request was processed: a 401 is its expiry. (Users log
			// in again after half the lifetime; only slow checks at the
			// end get here.)
			return out
		}
		if !e.answered() || (e.Status == 200 && !e.HasVisits) {
			if e.Op == OpVisit {
				s.maybe += 1 + e.MaybeApplied
			}
			if e.TimedOut {
				s.tainted = true
			}
			return out
		}
		if e.Status == 401 {
			if s.logoutMaybe {
				m.cur = nil // the failed logout was applied after all
				return out
			}
			if s.loggedOut == nil {
				report(LoggedOut, "%s %s answered 401 (not logged in) for a session that was never logged out (%d visits acknowledged)",
					e.Op, where, s.acked)
				s.loggedOut = out[len(out)-1]
			}
			return out
		}
		if s.loggedOut != nil && !s.back {
			s.back = true
			s.loggedOut.Detail += fmt.Sprintf("; transient: the session answered 200 again %s later (%s %s)",
				e.Sent.Sub(s.loggedOut.At).Round(time.Millisecond), e.Op, where)
		}
		lo, hi := s.acked, s.acked+s.maybe
		if e.Op == OpVisit {
			lo, hi = lo+1, hi+1+e.MaybeApplied
		}
		v := e.Visits
		wrong := true
		switch {
		case s.tainted:
			wrong = false
		case v < lo:
			report(LostWrite, "%s %s answered visits=%d, want %s: %d acknowledged visit(s) lost (%d acknowledged)",
				e.Op, where, v, span(lo, hi), lo-v, s.acked)
		case v > hi:
			report(ExtraCount, "%s %s answered visits=%d, want %s: %d more than sent", e.Op, where, v, span(lo, hi), v-hi)
		default:
			wrong = false
		}
		// A visit's answer is what the cluster now holds, right or wrong:
		// carry on from it, so that one loss is reported once. A read
		// that was wrong came from one stale copy: the next request may
		// land on a good one.
		if e.Op == OpVisit || !wrong {
			s.acked, s.maybe = v, 0
		}
	}
	return out
}

// diverged reports whether the answers of one verification round (the
// same cookie, directly on each node) disagree, and describes them.
func diverged(round []*Event) (bool, string) {
	var parts []string
	seen := map[string]bool{}
	for _, e := range round {
		var ans string
		switch {
		case !e.answered():
			continue // no answer says nothing about the replica
		case e.Status == 401:
			ans = "401"
		default:
			ans = fmt.Sprintf("visits=%d", e.Visits)
		}
		seen[ans] = true
		parts = append(parts, e.Node+" "+ans)
	}
	return len(seen) > 1, strings.Join(parts, ", ")
}

// span formats an allowed range.
func span(lo, hi int) string {
	if lo == hi {
		return fmt.Sprintf("exactly %d", lo)
	}
	return fmt.Sprintf("%d..%d", lo, hi)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
