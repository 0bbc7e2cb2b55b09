package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/sessionmesh/sessionmesh/replication"
)

// opKind is what a user's operation does.
type opKind int

// The operations of a user.
const (
	// opLogin creates a session: Save of user and w=0.
	opLogin opKind = iota + 1
	// opVisit increments the session's visit counter with Update.
	opVisit
	// opWrite sets attribute w to the next number with Save.
	opWrite
	// With asynchronous writes, opVisit and opWrite first load the
	// session with GetAtLeast at the version of the user's last write, as
	// an httpsession request does.
	// opLogout destroys the session.
	opLogout
	// opRead reads the session: Get with synchronous writes, GetAtLeast
	// with the version of the user's last acknowledged write otherwise.
	opRead
	// opProbe reads the session the user logged out of last.
	opProbe
	// opVerify reads a session on one node after the cluster converged.
	opVerify
)

var opNames = map[opKind]string{opLogin: "login", opVisit: "visit", opWrite: "write", opLogout: "logout",
	opRead: "read", opProbe: "probe", opVerify: "verify"}

func (o opKind) String() string { return opNames[o] }

// opTimeout bounds one operation, far above any fault's effect on it.
const opTimeout = 10 * time.Second

// event is one operation and its outcome.
type event struct {
	op         opKind
	id         string
	session    *sessionModel
	node       string
	start, end time.Duration
	err        error
	// unknown: the node was cut off from the serving side (frozen,
	// partitioned, killed) during the call, so its answer is not one a
	// client would have seen before the repair.
	unknown bool
	// noCopy: a synchronous write acknowledged by a node that does not own
	// the session while none of the owners it knew (owners) was reachable.
	noCopy bool
	owners []string
	// nonOwner: a write acknowledged by a node that does not own the
	// session while one of its links to the owners was lossy or cut.
	nonOwner bool
	// listed is when a peer last began to list the node's current
	// incarnation (-1: none since it started).
	listed time.Duration
	// loadFailed: an asynchronous write's GetAtLeast failed, so the write
	// did not run.
	loadFailed bool

	// disagree: the nodes' views of the members differed at some moment
	// of the call; settled: the cluster was settled throughout it.
	disagree, settled bool
	// What a read found, or an Update counted (value).
	found     bool
	user      string
	visits, w int
	value     int
	version   replication.Version
	wrote     int // opWrite: the value of w written
}

// String describes the event on one line.
func (e *event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8.3fs %-6s [%s] on %s ->", e.start.Seconds(), e.op, short(e.id), e.node)
	switch {
	case e.err != nil:
		fmt.Fprintf(&b, " error: %v", e.err)
	case e.op == opVisit:
		fmt.Fprintf(&b, " visits=%d", e.value)
	case e.op == opWrite:
		fmt.Fprintf(&b, " w=%d", e.wrote)
	case e.op == opRead || e.op == opProbe || e.op == opVerify:
		if e.found {
			fmt.Fprintf(&b, " user=%s visits=%d w=%d", e.user, e.visits, e.w)
		} else {
			b.WriteString(" not found")
		}
	default:
		b.WriteString(" ok")
	}
	if e.version != 0 {
		fmt.Fprintf(&b, " v=%s", e.version)
	}
	fmt.Fprintf(&b, " in %v", (e.end - e.start).Round(time.Millisecond))
	if e.unknown {
		b.WriteString(" (node cut off meanwhile: outcome unknown)")
	}
	return b.String()
}

// user is one simulated browser: one operation at a time, each on a node
// of the load balancer's rotation.
type user struct {
	name  string
	rng   *rand.Rand
	w     *world
	c     *checker
	async bool
	nextW int // the next value of w
}

// run performs operations, 20-400 ms apart, until stop is closed.
func (u *user) run(stop <-chan struct{}) {
	for {
		t := time.NewTimer(uniform(u.rng, 20*time.Millisecond, 400*time.Millisecond))
		select {
		case <-stop:
			t.Stop()
			return
		case <-t.C:
		}
		u.step()
	}
}

// step performs one operation.
func (u *user) step() {
	nodes := u.w.serving()
	r := u.rng.IntN(100)
	if len(nodes) == 0 {
		return
	}
	p := nodes[u.rng.IntN(len(nodes))]
	s := u.c.current(u.name)
	switch {
	case s == nil:
		s = &sessionModel{id: fmt.Sprintf("%s-%016x%016x", u.name, u.rng.Uint64(), u.rng.Uint64())}
		s.part, s.user = partitionOf(s.id), u.name
		u.nextW = 1
		u.do(p, opLogin, s)
	case s.logoutMaybe || r < 5:
		u.do(p, opLogout, s)
	case r < 45:
		u.do(p, opVisit, s)
	case r < 65:
		u.do(p, opWrite, s)
	case r < 95 || u.async:
		u.do(p, opRead, s)
	default:
		if g := u.c.lastGone(u.name); g != nil {
			u.do(p, opProbe, g)
		} else {
			u.do(p, opRead, s)
		}
	}
}

// do runs op on p's store and hands the outcome to the checker.
func (u *user) do(p *process, op opKind, s *sessionModel) *event {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	e := &event{op: op, id: s.id, session: s, node: p.member.Name, start: u.w.now(), listed: u.w.lastListed(p.member.Name)}
	before := u.w.stampOf(e.node)
	agree0, dis0 := u.w.agreement()
	settled0, unsettles0 := u.w.settledness()
	st := p.store
	switch op {
	case opLogin:
		e.version, e.err = st.Save(ctx, s.id, replication.Changes{
			Set: map[string][]byte{"user": []byte(u.name), "w": []byte("0")}, Lifetime: time.Hour})
	case opVisit:
		if u.async {
			if _, ok := u.load(ctx, st, e); !ok {
				break
			}
		}
		var v []byte
		var want replication.Version // as httpsession: the cookie's version, with asynchronous writes only
		if u.async {
			want = s.version
		}
		v, e.version, e.err = st.UpdateAtLeast(ctx, s.id, "visits", want, increment)
		e.value, _ = strconv.Atoi(string(v))
	case opWrite:
		e.wrote = u.nextW
		u.nextW++
		e.w = e.wrote
		// As httpsession: with asynchronous writes the write builds on the
		// session loaded at the cookie's version (the owners may not hold
		// the user's last write yet); with synchronous ones it is blind.
		var base replication.Session
		if u.async {
			var ok bool
			if base, ok = u.load(ctx, st, e); !ok {
				break
			}
		}
		e.version, e.err = st.Save(ctx, s.id, replication.Changes{Set: map[string][]byte{"w": []byte(strconv.Itoa(e.wrote))}, Base: base})
	case opLogout:
		e.err = st.Destroy(ctx, s.id)
	case opRead, opProbe, opVerify:
		var sess replication.Session
		if u.async && op == opRead {
			sess, e.found, e.err = st.GetAtLeast(ctx, s.id, s.version)
		} else {
			sess, e.found, e.err = st.Get(ctx, s.id)
		}
		if e.found {
			e.user, e.visits, e.w = readSession(sess)
		}
	}
	e.end = u.w.now()
	agree1, dis1 := u.w.agreement()
	settled1, unsettles1 := u.w.settledness()
	e.disagree = !agree0 || !agree1 || dis0 != dis1
	e.settled = settled0 && settled1 && unsettles0 == unsettles1
	after := u.w.stampOf(e.node)
	e.unknown = after.isolations != before.isolations
	if e.err == nil && (op == opLogin || op == opWrite || op == opLogout) && u.w.troubled(e.node) {
		if info := st.Partitions()[s.part]; !info.Owned {
			reach, faulty := u.w.linksTo(e.node, info.Owners)
			e.nonOwner, e.owners = faulty, info.Owners
			e.noCopy = !u.async && !reach && after.netChanges == before.netChanges
		}
	}
	if u.w.trace != nil {
		info := st.Partitions()[s.part]
		u.w.tracef("%s %s [p%d owners %v in %s's view]", u.name, e, s.part, info.Owners, e.node)
	}
	u.c.record(u.name, e)
	return e
}

// load is what an httpsession request does before it writes with
// asynchronous writes: GetAtLeast with the cookie's version, which also
// brings the node's clock past that version, so the write orders after
// the user's earlier ones. It returns the session and whether it was
// found; if not, e says why.
func (u *user) load(ctx context.Context, st *replication.Store, e *event) (replication.Session, bool) {
	sess, found, err := st.GetAtLeast(ctx, e.session.id, e.session.version)
	switch {
	case err != nil:
		e.err = fmt.Errorf("load: %w", err)
	case !found:
		e.err = fmt.Errorf("load found no session: %w", replication.ErrSessionEnded)
	}
	e.loadFailed = e.err != nil
	return sess, !e.loadFailed
}

// increment is the visit counter's UpdateFunc.
func increment(old []byte, exists bool) ([]byte, error) {
	n := 0
	if exists {
		var err error
		if n, err = strconv.Atoi(string(old)); err != nil {
			return nil, err
		}
	}
	return []byte(strconv.Itoa(n + 1)), nil
}

// readSession returns the attributes the checker looks at.
func readSession(s replication.Session) (user string, visits, w int) {
	if v, ok := s.Value("user"); ok {
		user = string(v)
	}
	if v, ok := s.Value("visits"); ok {
		visits, _ = strconv.Atoi(string(v))
	}
	if v, ok := s.Value("w"); ok {
		w, _ = strconv.Atoi(string(v))
	}
	return user, visits, w
}
