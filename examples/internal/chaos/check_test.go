package chaos

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// script feeds events to a fresh model of user "u" and returns the kinds
// of anomaly each event showed.
type script struct {
	t   *testing.T
	m   *userModel
	now time.Time
	all []*Anomaly
}

func newScript(t *testing.T) *script {
	return &script{t: t, m: newUserModel("u", time.Hour), now: time.Unix(1000, 0)}
}

// do applies e (with times filled in) and returns the anomaly kinds.
func (s *script) do(e Event) []AnomalyKind {
	s.now = s.now.Add(time.Second)
	e.Sent, e.Took = s.now, time.Millisecond
	got := s.m.apply(&e)
	s.all = append(s.all, got...)
	var kinds []AnomalyKind
	for _, a := range got {
		kinds = append(kinds, a.Kind)
	}
	return kinds
}

func login(id string) Event { return Event{Op: OpLogin, Status: 200, User: "u", NewSession: id} }
func visit(id string, v int) Event {
	return Event{Op: OpVisit, Session: id, Status: 200, Visits: v, HasVisits: true}
}
func me(id string, v int) Event {
	return Event{Op: OpMe, Session: id, Status: 200, User: "u", Visits: v, HasVisits: true}
}
func failed(op Op, id string) Event {
	return Event{Op: op, Session: id, Status: 502, Err: "status 502"}
}

func TestUserModel_ExactCountsPass(t *testing.T) {
	s := newScript(t)
	assert.Empty(t, s.do(login("a")))
	for v := 1; v <= 5; v++ {
		assert.Empty(t, s.do(visit("a", v)))
		assert.Empty(t, s.do(me("a", v)))
	}
	assert.Empty(t, s.do(Event{Op: OpLogout, Session: "a", Status: 200}))
	assert.Empty(t, s.do(Event{Op: OpProbe, Session: "a", Status: 401}))
	assert.Empty(t, s.do(login("b")))
	assert.Empty(t, s.do(visit("b", 1)), "a new session counts from 0")
}

func TestUserModel_LostWrite(t *testing.T) {
	s := newScript(t)
	s.do(login("a"))
	s.do(visit("a", 1))
	s.do(visit("a", 2))
	assert.Equal(t, []AnomalyKind{LostWrite}, s.do(visit("a", 2)), "the read missed visit 2")
	assert.Empty(t, s.do(visit("a", 3)), "carries on from what the cluster holds: reported once")
	assert.Equal(t, []AnomalyKind{LostWrite}, s.do(me("a", 1)), "a stale read")
	assert.Empty(t, s.do(me("a", 3)), "a stale read is not adopted")
	assert.Contains(t, s.all[0].Detail, "want exactly 3")
}

func TestUserModel_ExtraCount(t *testing.T) {
	s := newScript(t)
	s.do(login("a"))
	s.do(visit("a", 1))
	assert.Equal(t, []AnomalyKind{ExtraCount}, s.do(visit("a", 3)))
	assert.Equal(t, []AnomalyKind{ExtraCount}, s.do(me("a", 5)))
}

func TestUserModel_UnknownOutcomesWidenTheRange(t *testing.T) {
	s := newScript(t)
	s.do(login("a"))
	s.do(visit("a", 1))
	s.do(failed(OpVisit, "a"))
	s.do(failed(OpVisit, "a"))
	assert.Empty(t, s.do(visit("a", 4)), "both failed visits counted")
	s.do(failed(OpVisit, "a"))
	assert.Empty(t, s.do(me("a", 4)), "the failed visit did not count")
	assert.Equal(t, []AnomalyKind{ExtraCount}, s.do(visit("a", 6)), "resolved: exactly 5 now")

	// A retry by the proxy after a broken connection may apply twice.
	e := visit("a", 7)
	e.MaybeApplied = 1
	assert.Empty(t, s.do(e))
	e = visit("a", 10)
	e.MaybeApplied = 1
	assert.Equal(t, []AnomalyKind{ExtraCount}, s.do(e), "at most 9")
}

func TestUserModel_TimeoutTaintsTheSession(t *testing.T) {
	s := newScript(t)
	s.do(login("a"))
	s.do(Event{Op: OpVisit, Session: "a", Err: "timeout", TimedOut: true})
	assert.Empty(t, s.do(visit("a", 1)), "counts are no longer checked")
	assert.Empty(t, s.do(me("a", 0)))
	s.do(login("b"))
	assert.Equal(t, []AnomalyKind{LostWrite}, s.do(me("b", -1)), "a new session is checked again")
}

func TestUserModel_LoggedOutOncePerSessionAndTransient(t *testing.T) {
	s := newScript(t)
	s.do(login("a"))
	s.do(visit("a", 1))
	assert.Equal(t, []AnomalyKind{LoggedOut}, s.do(Event{Op: OpMe, Session: "a", Status: 401, AnsweredBy: "n2"}))
	assert.Empty(t, s.do(Event{Op: OpVerify, Session: "a", Node: "n3", Status: 401}), "reported once per session")
	assert.Empty(t, s.do(me("a", 1)))
	require.Len(t, s.all, 1)
	assert.Contains(t, s.all[0].Detail, "transient")
	assert.Equal(t, "n2", s.all[0].Node)
}

func TestUserModel_Resurrected(t *testing.T) {
	s := newScript(t)
	s.do(login("a"))
	s.do(failed(OpLogout, "a"))
	assert.Empty(t, s.do(Event{Op: OpProbe, Session: "a", Status: 200, User: "u"}), "the logout was not acknowledged")
	s.do(Event{Op: OpLogout, Session: "a", Status: 200})
	assert.Equal(t, []AnomalyKind{Resurrected}, s.do(Event{Op: OpVerifyGone, Session: "a", Node: "n1", Status: 200, User: "u"}))
	assert.Empty(t, s.do(Event{Op: OpVerifyGone, Session: "a", Node: "n1", Status: 502, Err: "x"}))
}

// A logout that failed may have been applied (a 500 after a timeout
// towards a frozen owner): a 401 after it is no anomaly. A failed logout
// of an older session says nothing of the current one.
func TestUserModel_FailedLogoutMayHaveBeenApplied(t *testing.T) {
	s := newScript(t)
	s.do(login("a"))
	s.do(failed(OpLogout, "a"))
	assert.Empty(t, s.do(Event{Op: OpMe, Session: "a", Node: "n1", Status: 401}))

	s.do(login("b"))
	s.do(failed(OpLogout, "a"))
	assert.Equal(t, []AnomalyKind{LoggedOut}, s.do(Event{Op: OpMe, Session: "b", Node: "n1", Status: 401}))
}

func TestUserModel_WrongUserAndReusedID(t *testing.T) {
	s := newScript(t)
	s.do(login("a"))
	e := me("a", 0)
	e.User = "someone else"
	assert.Equal(t, []AnomalyKind{WrongUser}, s.do(e))
	s.do(Event{Op: OpLogout, Session: "a", Status: 200})
	assert.Equal(t, []AnomalyKind{ReusedID}, s.do(login("a")))
}

func TestEvent_Format(t *testing.T) {
	start := time.Unix(1000, 0)
	e := Event{Op: OpVisit, Session: "abcdefghijklmnop", Sent: start.Add(1500 * time.Millisecond), Took: 3 * time.Millisecond,
		Status: 200, Visits: 4, HasVisits: true, AnsweredBy: "n2", Tried: []string{"n1", "n2"}, MaybeApplied: 1, Fault: 3}
	assert.Equal(t, "   1.500s POST /visit [session abcdefgh] via the proxy -> 200 visits=4 by n2 in 3ms (proxy tried n1, n2; 1 failed tries may have been applied) [fault #3]",
		e.Format(start))
}

func TestUserModel_ExpiredSessionsAreNotJudged(t *testing.T) {
	s := newScript(t)
	s.m.lifetime = 10 * time.Second
	s.do(login("a")) // sent at 1001s: may expire from 1011s
	s.do(visit("a", 1))
	s.now = s.now.Add(7 * time.Second)
	assert.Equal(t, []AnomalyKind{LoggedOut}, s.do(Event{Op: OpMe, Session: "a", Status: 401}), "answered at 1010s: before the lifetime")
	s.do(login("b")) // sent at 1011s: may expire from 1021s
	s.now = s.now.Add(9 * time.Second)
	assert.Empty(t, s.do(Event{Op: OpVerify, Session: "b", Node: "n1", Status: 401}), "answered after the lifetime: its expiry")
}

func TestDiverged(t *testing.T) {
	ans := func(node string, status, visits int) *Event {
		return &Event{Op: OpVerify, Node: node, Status: status, Visits: visits, HasVisits: status == 200}
	}
	bad, _ := diverged([]*Event{ans("n1", 200, 3), ans("n2", 200, 3), {Op: OpVerify, Node: "n3", Err: "refused"}})
	assert.False(t, bad, "no answer says nothing")
	bad, why := diverged([]*Event{ans("n1", 200, 3), ans("n2", 200, 2), ans("n3", 401, 0)})
	assert.True(t, bad)
	assert.Equal(t, "n1 visits=3, n2 visits=2, n3 401", why)
}
