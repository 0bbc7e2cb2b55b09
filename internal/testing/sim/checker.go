package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/replication"
)

// sessionModel is what the checker knows of one session.
type sessionModel struct {
	id   string
	user string
	part int
	// lo and hi bound the visit count: lo acknowledged, hi with the
	// visits whose outcome is unknown.
	lo, hi int
	// wAcked and wMax bound attribute w likewise.
	wAcked, wMax int
	version      replication.Version // of the newest acknowledged write
	lastAck      time.Duration       // when the newest write was acknowledged
	lastAckNode  string
	loggedOut    bool // the logout was acknowledged
	logoutMaybe  bool // a logout's outcome is unknown
	// tainted says why the session's invariants no longer hold (every
	// copy may be lost), or "".
	tainted string
	// writes are the last acknowledged writes, oldest first.
	writes []ackedWrite
	// updateFailed is when an Update of the session last failed in a way
	// that may have left it applied somewhere (0: never).
	updateFailed time.Duration
}

// ackedWrite is an acknowledged write of a session.
type ackedWrite struct {
	login     bool
	visits, w int // the value it set; -1 for the other attribute
	version   replication.Version
	at        time.Duration // when it was acknowledged
	// disagree: the nodes' views differed while it ran; nonOwner: a
	// non-owner acknowledged it while a link to an owner was faulty.
	disagree, nonOwner bool
}

// maxWrites bounds sessionModel.writes.
const maxWrites = 32

// acked records the acknowledged write a, shown by e.
func (s *sessionModel) acked(e *event, a ackedWrite) {
	s.lastAck, s.lastAckNode = e.end, e.node
	s.version = max(s.version, e.version)
	a.disagree, a.nonOwner, a.version, a.at = e.disagree, e.nonOwner, e.version, e.end
	if len(s.writes) == maxWrites {
		s.writes = append(s.writes[:0], s.writes[1:]...)
	}
	s.writes = append(s.writes, a)
}

// seenNone is the seen of an answer that found nothing.
func seenNone(ackedWrite) bool { return false }

// seenUpTo returns the seen of an answer showing visits and w.
func seenUpTo(visits, w int) func(ackedWrite) bool {
	return func(a ackedWrite) bool {
		return a.login || (a.visits >= 0 && a.visits <= visits) || (a.w >= 0 && a.w <= w)
	}
}

// userModel is one user's sessions, fed its operations in order.
type userModel struct {
	name    string
	cur     *sessionModel
	gone    []*sessionModel // logged out, newest last
	history []*event        // the last historyLen, a ring
	next    int
}

const historyLen = 16

func (u *userModel) remember(e *event) {
	if len(u.history) < historyLen {
		u.history = append(u.history, e)
		return
	}
	u.history[u.next] = e
	u.next = (u.next + 1) % historyLen
}

func (u *userModel) recent() []string {
	out := make([]string, 0, len(u.history))
	for i := range u.history {
		out = append(out, u.history[(u.next+i)%len(u.history)].String())
	}
	return out
}

// checker checks the users' operations against the invariants of
// examples/internal/chaos's checker, and decides, from the faults, when a
// loss is legitimate. It is safe for concurrent use.
type checker struct {
	concern     replication.WriteConcern
	maxReadWait time.Duration

	mu       sync.Mutex
	sessions []*sessionModel                  // guards: every session logged into, in order
	users    map[string]*userModel            // guards
	found    []Anomaly                        // guards
	owners   [replication.Partitions][]string // guards: owners as of the last convergence
	faulted  map[string]bool                  // guards: nodes that may have missed writes since then
	counts   map[string]int                   // guards: operation outcomes, for the report
	// voided are the recent faults that voided the invariants of the
	// sessions they reached, kept for the logins in flight at the time,
	// which the checker learns of only when they return.
	voided []voiding // guards
}

// voiding is a fault that voided the invariants of some sessions: of those
// in partition part, or with part -1 (an asynchronous write's node or
// owner crashed), those written through node or of a partition in owned.
type voiding struct {
	at    time.Duration
	part  int
	node  string
	owned *[replication.Partitions]bool
	why   string
}

// reaches reports whether v voids the invariants of s, whose login ran on
// node.
func (v voiding) reaches(s *sessionModel, node string) bool {
	if v.part >= 0 {
		return v.part == s.part
	}
	return v.node == node || v.owned[s.part]
}

// voidLocked records v and forgets the faults older than any operation
// still in flight.
func (c *checker) voidLocked(v voiding) {
	c.voided = slices.DeleteFunc(c.voided, func(o voiding) bool { return o.at < v.at-opTimeout })
	c.voided = append(c.voided, v)
}

func newChecker(concern replication.WriteConcern, cfg replication.Config) *checker {
	return &checker{concern: concern, maxReadWait: cfg.MaxReadWait,
		users:   map[string]*userModel{},
		faulted: map[string]bool{}, counts: map[string]int{}}
}

func (c *checker) user(name string) *userModel {
	u := c.users[name]
	if u == nil {
		u = &userModel{name: name}
		c.users[name] = u
	}
	return u
}

// reportLocked records an anomaly shown by e, of known issue known ("" for
// none).
func (c *checker) reportLocked(u *userModel, e *event, k AnomalyKind, known, format string, args ...any) {
	c.found = append(c.found, Anomaly{Kind: k, At: e.end, User: u.name, Session: short(e.id), Node: e.node,
		Detail: fmt.Sprintf(format, args...), Known: known, History: u.recent()})
}

// current returns the user's session, nil when logged out.
func (c *checker) current(name string) *sessionModel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user(name).cur
}

// lastGone returns the session the user logged out of last, or nil.
func (c *checker) lastGone(name string) *sessionModel {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.user(name)
	if len(u.gone) == 0 {
		return nil
	}
	return u.gone[len(u.gone)-1]
}

// record checks e, one operation of user name, and updates the model.
func (c *checker) record(name string, e *event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	u := c.user(name)
	u.remember(e)
	c.counts[e.op.String()]++
	if e.err != nil {
		c.counts[e.op.String()+" error "+errorClass(e.err)]++
		// A session that may legitimately have lost writes (tainted) may
		// be refused as unreachable rather than answered as ended: its
		// node saw a write of it that no owner holds.
		lost := e.session != nil && e.session.tainted != "" && errors.Is(e.err, replication.ErrUnreachable)
		if e.settled && !errors.Is(e.err, replication.ErrSessionEnded) && !lost {
			k := ""
			if lateUpdate(e.err) {
				k = KnownUpdateDeadline
			}
			c.reportLocked(u, e, Unavailable, k, "%s failed in a settled cluster: %v", e.op, e.err)
		}
	}
	s := e.session
	if e.noCopy {
		c.reportLocked(u, e, AckWithoutCopy, KnownNonOwnerWrite, "%s acknowledged on %s, which does not own partition %d, while none of its owners %v was reachable from it",
			e.op, e.node, s.part, e.owners)
		s.tainted = "acknowledged without any copy" // reported once
	}
	switch e.op {
	case opLogin:
		if e.err != nil || e.unknown {
			return // unknown: the user logs in again
		}
		s.acked(e, ackedWrite{login: true, visits: -1, w: -1})
		for _, v := range c.voided {
			if v.at >= e.start && s.tainted == "" && v.reaches(s, e.node) {
				s.tainted = v.why + ", while its login was in flight"
				c.counts["sessions tainted"]++
			}
		}
		c.sessions = append(c.sessions, s)
		u.cur = s
	case opVisit:
		c.checkVisit(u, e)
	case opWrite:
		s.wMax = max(s.wMax, e.w)
		if e.err != nil || e.unknown {
			return
		}
		s.wAcked = e.w
		s.acked(e, ackedWrite{visits: -1, w: e.w})
	case opLogout:
		if e.err != nil || e.unknown {
			s.logoutMaybe = true
			return // the user sends it again
		}
		s.loggedOut = true
		s.acked(e, ackedWrite{visits: -1, w: -1})
		u.gone = append(u.gone, s)
		u.cur = nil
	case opRead, opVerify:
		c.checkRead(u, e)
	case opProbe:
		if e.err == nil && !e.unknown && e.found && s.tainted == "" {
			c.reportLocked(u, e, Resurrected, s.known(e, seenNone),
				"found a session whose logout was acknowledged at %.3fs (visits=%d)", s.lastAck.Seconds(), e.visits)
		}
	}
}

// checkVisit checks an Update of the visit counter: it must count one
// more than the visits acknowledged, plus at most those whose outcome is
// unknown.
func (c *checker) checkVisit(u *userModel, e *event) {
	s := e.session
	if errors.Is(e.err, replication.ErrSessionEnded) {
		gaveUp := c.concern == replication.Async && e.end-e.start >= c.maxReadWait
		if s.tainted == "" && !s.logoutMaybe && !gaveUp {
			c.reportLocked(u, e, LoggedOut, c.visitKnown(s, e, seenNone),
				"Update said the session ended; it was never logged out (%d visits acknowledged)", s.lo)
		}
		u.cur = nil // the user logs in again
		return
	}
	if e.err != nil || e.unknown {
		s.hi++
		s.updateFailed = e.end
		return
	}
	if s.tainted == "" {
		switch {
		case e.value < s.lo+1:
			c.reportLocked(u, e, LostWrite, c.visitKnown(s, e, seenUpTo(e.value-1, s.wMax)),
				"Update counted visits=%d, want %s: %d acknowledged visit(s) lost", e.value, span(s.lo+1, s.hi+1), s.lo+1-e.value)
		case e.value > s.hi+1:
			c.reportLocked(u, e, ExtraCount, s.failoverKnown(e), "Update counted visits=%d, want %s", e.value, span(s.lo+1, s.hi+1))
		}
	}
	// What the coordinator counted is what the cluster holds now.
	s.lo, s.hi = e.value, e.value
	s.acked(e, ackedWrite{visits: e.value, w: -1})
}

// checkRead checks a read of the user's session against what was
// acknowledged. A read with asynchronous writes that waited MaxReadWait
// and gave up may be stale (docs/consistency.md rule 5).
func (c *checker) checkRead(u *userModel, e *event) {
	s := e.session
	if e.err != nil || e.unknown || s.tainted != "" {
		return
	}
	gaveUp := c.concern == replication.Async && e.op == opRead && e.end-e.start >= c.maxReadWait
	if s.loggedOut {
		if e.found {
			c.reportLocked(u, e, Resurrected, s.known(e, seenNone),
				"found a session whose logout was acknowledged at %.3fs (visits=%d)", s.lastAck.Seconds(), e.visits)
		}
		return
	}
	if !e.found {
		switch {
		case s.logoutMaybe:
		case gaveUp:
			c.counts["async reads that gave up"]++
		default:
			c.reportLocked(u, e, LoggedOut, c.readKnown(s, e, seenNone),
				"%s found no session; it was never logged out (%d visits, w=%d acknowledged)", e.op, s.lo, s.wAcked)
		}
		return
	}
	switch {
	case e.user == "": // the login's attributes are missing: a lost write
		c.reportLocked(u, e, LostWrite, c.readKnown(s, e, func(a ackedWrite) bool { return !a.login && seenUpTo(e.visits, e.w)(a) }),
			"%s found the session without its login's attributes (visits=%d w=%d)", e.op, e.visits, e.w)
	case e.user != u.name:
		c.reportLocked(u, e, WrongUser, "", "%s found user %q, want %q", e.op, e.user, u.name)
	}
	stale := e.visits < s.lo || e.w < s.wAcked
	if stale && gaveUp {
		c.counts["async reads that gave up"]++
		stale = false
	}
	if stale {
		c.reportLocked(u, e, LostWrite, c.readKnown(s, e, seenUpTo(e.visits, e.w)),
			"%s found visits=%d w=%d, want visits %s and w %s (last write acknowledged on %s at %.3fs)",
			e.op, e.visits, e.w, span(s.lo, s.hi), span(s.wAcked, s.wMax), s.lastAckNode, s.lastAck.Seconds())
	}
	if e.visits > s.hi || e.w > s.wMax {
		c.reportLocked(u, e, ExtraCount, s.failoverKnown(e), "%s found visits=%d w=%d, want visits %s and w %s",
			e.op, e.visits, e.w, span(s.lo, s.hi), span(s.wAcked, s.wMax))
	}
}

// diverged records that the nodes answered one session differently after
// convergence.
func (c *checker) diverged(name string, s *sessionModel, answers []string, at time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.tainted != "" {
		return
	}
	u := c.user(name)
	c.found = append(c.found, Anomaly{Kind: Diverged, At: at, User: name, Session: short(s.id),
		Detail: "after convergence the nodes answer " + strings.Join(answers, ", "), History: u.recent()})
}

// fail records an anomaly not tied to a user.
func (c *checker) fail(k AnomalyKind, at time.Duration, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.found = append(c.found, Anomaly{Kind: k, At: at, Detail: fmt.Sprintf(format, args...)})
}

// anomalies returns what was found.
func (c *checker) anomalies() []Anomaly {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.found)
}

// allSessions returns every session logged into, in order.
func (c *checker) allSessions() []*sessionModel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sessions)
}

// countsCopy returns the operation counts.
func (c *checker) countsCopy() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// errorClass names an operation's error for the counts.
func errorClass(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{{replication.ErrSessionEnded, "ended"}, {replication.ErrClosed, "closed"}, {replication.ErrConflict, "conflict"},
		{replication.ErrUnreachable, "unreachable"}, {context.DeadlineExceeded, "timeout"}} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	if lateUpdate(err) {
		return "refused as late"
	}
	return "other"
}

func span(lo, hi int) string {
	if lo == hi {
		return fmt.Sprintf("exactly %d", lo)
	}
	return fmt.Sprintf("%d..%d", lo, hi)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
