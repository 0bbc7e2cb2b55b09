package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

// touchFraction sets how far a read must move the idle deadline before the
// extension is replicated: one eighth of the idle timeout. Other nodes may
// therefore see an idle deadline up to IdleTimeout/8 older than the last
// read implies; they never see one later.
const touchFraction = 8

// sendQueue bounds the records waiting for one peer's background sender.
const sendQueue = 4096

// Save applies changes to session id, creating it if it does not exist,
// and replicates them to every owner of the session. With the default
// (synchronous) write concern it returns once every live owner has
// acknowledged the write, or has failed (a crashed peer is skipped at once),
// or has not answered within WriteTimeout (the peer is then marked degraded
// and repaired by anti-entropy). It returns the version of the write (see
// Version), or ErrSessionEnded when the session has been destroyed or has
// expired, ErrSessionRenewed when its ID has been renewed (see Rename);
// nothing is written then.
func (s *Store) Save(ctx context.Context, id string, c Changes) (Version, error) {
	if s.closed() {
		return 0, ErrClosed
	}
	if !validID(id) {
		return 0, fmt.Errorf("save session: %w", ErrInvalidID)
	}
	s.leases.beginWrite()
	defer s.leases.endWrite()
	v, pi := s.view.Load(), partitionOf(id)
	cur, local, err := s.saveBase(ctx, v, pi, id, c.Base)
	if err != nil {
		return 0, err
	}
	now := s.now()
	var delta *record
	switch {
	case cur == nil:
		delta = &record{id: id, created: now, idleMs: c.IdleTimeout.Milliseconds()}
		if c.Lifetime > 0 {
			delta.expires = now + c.Lifetime.Milliseconds()
		}
	case !cur.live(now):
		return 0, endedError(cur)
	default:
		delta = &record{id: id, created: cur.created, expires: cur.expires, idleMs: cur.idleMs}
	}
	if delta.idleMs > 0 {
		delta.idleUntil = now + delta.idleMs
	}
	if !c.ExpiresAt.IsZero() {
		delta.expires = max(delta.expires, c.ExpiresAt.UnixMilli())
	}
	if cur != nil && local && len(c.Delete) > 0 {
		// Deleting what is not there would only leave a tombstone. (A
		// caller's base may predate a concurrent write of the attribute:
		// then the delete must travel.)
		c.Delete = slices.DeleteFunc(slices.Clone(c.Delete), func(name string) bool {
			return !attrOf(cur, name).exists
		})
	}
	delta.attrs = s.changedAttrs(c)
	if err := s.cfg.Limits.checkWrite(cur, delta); err != nil {
		return 0, fmt.Errorf("save session: %w", err)
	}
	if cur == nil {
		release, err := s.budget.reserve(delta)
		if err != nil {
			return 0, fmt.Errorf("save session: %w", err)
		}
		defer release()
	}
	written := writtenVersion(cur, delta)
	if s.cfg.WriteConcern == Async && cur != nil {
		delta = merge(delta, recentAttrs(cur, s.clock.Now().Add(-s.versionHorizon())))
	}
	outranked, err := s.writeRecords(ctx, v, delta)
	if err != nil || outranked.isZero() || c.empty() {
		return written, err
	}
	return s.rewrite(ctx, v, delta, version{time: toTimestamp(written), node: s.node}, outranked)
}

// rewrite writes delta again above outranked, the version of another write
// of one of its attributes that an owner holds and that won over delta's
// there; was is the version delta gave the attributes it changes. The other write is older (its writer's clock is ahead of this
// node's, and this write's base did not hold it: a write that failed but
// took effect on some owners, a base read from an owner that had not got
// it yet) or concurrent; either way this write, acknowledged after it, must
// be the one that stays (found by the cluster simulator: a user's failed
// write, applied on one owner, won over their next, acknowledged write,
// made on a node whose clock was a second behind). One more round trip, on
// writes that would otherwise be lost. When outranked is further ahead of
// this node's clock than MaxClockOffset allows, the write stays as it is.
func (s *Store) rewrite(ctx context.Context, v *view, delta *record, was, outranked version) (Version, error) {
	if err := s.hlc.Update(outranked.time); err != nil {
		s.log.Warn("a newer write of the same attribute is too far ahead of this node's clock to write above it", "err", err)
		return Version(was.time), nil
	}
	s.stats.rewrites.Add(1)
	now := version{time: s.hlc.Now(), node: s.node}
	_, err := s.writeRecords(ctx, v, restamped(delta, was, now))
	return Version(now.time), err
}

// recentAttrs returns a record of id with the attributes of cur written
// after since, or nil when there are none. An asynchronous write carries
// them: the writes it builds on may still be on their way to some owners,
// from other nodes and on other senders, and a replica that got this write
// first would pass GetAtLeast for its version without them (found by the
// cluster simulator: a login's attributes, delayed on one link, were
// missing from a copy that already held the next write, made elsewhere).
// Older attributes have arrived everywhere, or anti-entropy brings them.
func recentAttrs(cur *record, since time.Time) *record {
	after := hlc.FromTime(since)
	var as []attr
	for _, a := range cur.attrs {
		if a.version.time > after {
			as = append(as, a)
		}
	}
	if as == nil {
		return nil
	}
	return &record{id: cur.id, created: cur.created, expires: cur.expires, idleMs: cur.idleMs, attrs: as}
}

// saveBase returns the record a write of id builds on: this node's own
// copy while it is authoritative for the partition, else the caller's base
// (read earlier in the request, so this node's clock has seen it), else
// what the owners hold. local reports that it is this node's own or the owners'
// current copy rather than the caller's.
func (s *Store) saveBase(ctx context.Context, v *view, pi int, id string, base Session) (cur *record, local bool, err error) {
	if s.authoritative(s.parts[pi]) || base.r == nil || base.r.id != id {
		cur, err = s.writeBase(ctx, v, pi, id)
		return cur, true, err
	}
	return base.r, false, nil
}

// writtenVersion returns the version a reader must see to see delta: its
// own, or the session's when delta changes no attribute.
func writtenVersion(cur, delta *record) Version {
	v := delta.maxVersion()
	if v.isZero() && cur != nil {
		v = cur.maxVersion()
	}
	return Version(v.time)
}

// changedAttrs turns c into attributes sorted by name, all with one new
// version.
func (s *Store) changedAttrs(c Changes) []attr {
	if c.empty() {
		return nil
	}
	v := version{time: s.hlc.Now(), node: s.node}
	as := make([]attr, 0, len(c.Set)+len(c.Delete))
	for name, value := range c.Set {
		as = append(as, attr{name: name, value: value, version: v})
	}
	for _, name := range c.Delete {
		if _, set := c.Set[name]; !set {
			as = append(as, attr{name: name, version: v, deleted: true})
		}
	}
	slices.SortFunc(as, func(a, b attr) int {
		switch {
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	return as
}

// Touch records that sess (as returned by Get) was just used, extending its
// idle deadline. The extension is kept locally and replicated only once it
// has moved by an eighth of the idle timeout, so reads do not turn into
// replicated writes. It returns ErrSessionEnded when the session is gone
// (ErrSessionRenewed when its ID was renewed).
func (s *Store) Touch(ctx context.Context, sess Session) error {
	if s.closed() {
		return ErrClosed
	}
	if sess.r == nil {
		return ErrSessionEnded
	}
	id, pi, now := sess.r.id, partitionOf(sess.r.id), s.now()
	cur := sess.r
	if p := s.parts[pi]; s.authoritative(p) {
		cur = p.get(id) // the live record, whose local touch is shared
	}
	if cur == nil {
		return ErrSessionEnded
	}
	if !cur.live(now) {
		return endedError(cur)
	}
	if cur.idleMs <= 0 {
		return nil
	}
	until := now + cur.idleMs
	for {
		t := cur.touched.Load()
		if t >= until || cur.touched.CompareAndSwap(t, until) {
			break
		}
	}
	if until-cur.idleUntil < cur.idleMs/touchFraction {
		return nil
	}
	delta := &record{id: id, created: cur.created, expires: cur.expires, idleMs: cur.idleMs, idleUntil: until}
	s.leases.beginWrite()
	defer s.leases.endWrite()
	return s.write(ctx, s.view.Load(), delta)
}

// RenameGrace is how long after a renewal of a session's ID (Rename,
// Retire) Renamed reports it: long enough for the renewal's response, with
// the new ID, to reach the client, and for the requests the client sent
// meanwhile with the old ID to arrive. After it, a client that still sends
// the old ID never got the new one, and is better served as one whose
// session ended.
const RenameGrace = time.Minute

// Destroy ends session id everywhere. Its tombstone stays until the
// session's absolute deadline, so no late or re-sent write can bring it
// back. Destroying a session that does not exist is not an error.
func (s *Store) Destroy(ctx context.Context, id string) error {
	return s.end(ctx, id, false)
}

// Retire ends session id everywhere as a renewal of its ID does, for a
// caller that moves the session to its new ID itself: scs's RenewToken
// deletes the old token, then commits the session under a new one. Like
// Destroy's, its tombstone stays until the session's deadline; like the
// old ID's after Rename, it records the renewal (not the new ID): writes
// to id fail with ErrSessionRenewed, and Renamed reports it for
// RenameGrace. A caller that cannot tell a renewal from a logout (scs's
// Delete serves both) may retire in both cases: a client that logged out
// stops sending the ID once the logout's response has cleared it.
func (s *Store) Retire(ctx context.Context, id string) error {
	return s.end(ctx, id, true)
}

// end destroys id, as a renewal when renewed.
func (s *Store) end(ctx context.Context, id string, renewed bool) error {
	if s.closed() {
		return ErrClosed
	}
	if !validID(id) {
		return nil
	}
	s.leases.beginWrite()
	defer s.leases.endWrite()
	v, pi := s.view.Load(), partitionOf(id)
	var cur *record
	if p := s.parts[pi]; p.ready.Load() {
		cur = p.get(id)
	}
	// A node that does not hold the partition does not read the session
	// first: its tombstone lives TombstoneTTL, and each owner's merge
	// extends it to the session's own deadline (deadlines merge by
	// maximum).
	t := s.tombstone(id, cur)
	if renewed {
		t.renamed = s.now()
	}
	return s.write(ctx, v, t)
}

// tombstone returns the record that destroys id, whose current record is
// cur (nil when unknown).
func (s *Store) tombstone(id string, cur *record) *record {
	t := &record{id: id, destroyed: true, expires: s.now() + s.cfg.TombstoneTTL.Milliseconds()}
	if cur != nil && cur.expires != 0 {
		t.created, t.expires, t.idleMs = cur.created, cur.expires, cur.idleMs
	}
	return t
}

// Rename moves session oldID to newID, applies changes to it, and destroys
// oldID, as one write: an owner of both applies the new session and the old
// tombstone together, and Rename returns once both are on every live owner,
// so the old ID stops working everywhere when the new one starts to. Call it
// when a user logs in (session fixation). The session keeps its creation
// time and absolute deadline.
//
// The old ID's tombstone records that the session was renamed, not
// destroyed, and nothing else: later writes to oldID fail with
// ErrSessionRenewed (so a request that was in flight during the renewal
// can leave the client's new ID alone; see Renamed), and nothing leads
// from oldID to newID, which would let whoever planted oldID follow the
// session. A write to oldID that races with Rename moves with the session
// when Rename reads it, and is lost when it comes later: applied to oldID
// just before the tombstone, or refused with ErrSessionRenewed after it.
// It returns the version of the new session (see Version), or
// ErrSessionEnded when oldID is gone (ErrSessionRenewed when it was renamed
// already).
func (s *Store) Rename(ctx context.Context, oldID, newID string, c Changes) (Version, error) {
	if s.closed() {
		return 0, ErrClosed
	}
	if !validID(oldID) || !validID(newID) || oldID == newID {
		return 0, fmt.Errorf("rename session: %w", ErrInvalidID)
	}
	s.leases.beginWrite()
	defer s.leases.endWrite()
	v := s.view.Load()
	cur, err := s.current(ctx, v, partitionOf(oldID), oldID)
	if err != nil {
		return 0, err
	}
	now := s.now()
	if cur == nil {
		return 0, ErrSessionEnded
	}
	if !cur.live(now) {
		return 0, endedError(cur)
	}
	moved := &record{id: newID, created: cur.created, expires: cur.expires, idleMs: cur.idleMs}
	if moved.idleMs > 0 {
		moved.idleUntil = now + moved.idleMs
	}
	for _, a := range cur.attrs {
		if !a.deleted {
			moved.attrs = append(moved.attrs, a)
		}
	}
	if !c.ExpiresAt.IsZero() {
		moved.expires = max(moved.expires, c.ExpiresAt.UnixMilli())
	}
	moved = merge(moved, &record{id: newID, attrs: s.changedAttrs(c)})
	if err := s.cfg.Limits.checkRecord(moved); err != nil {
		return 0, fmt.Errorf("rename session: %w", err)
	}
	release, err := s.budget.reserve(moved)
	if err != nil {
		return 0, fmt.Errorf("rename session: %w", err)
	}
	defer release()
	tomb := s.tombstone(oldID, cur)
	tomb.renamed = now
	return Version(moved.maxVersion().time), s.write(ctx, v, moved, tomb)
}

// Renamed reports whether session id ended because its ID was renewed
// (Rename, Retire) less than RenameGrace ago, as far as the session's
// owners know. It says nothing about the new ID. A live, destroyed,
// expired or unknown session is not renamed, nor one renamed longer ago.
// It reads like Get: locally on a node that holds the session's partition,
// else from its owners. The time of the renewal is the renewing node's
// clock, compared with this node's: clock offsets shift the grace by as
// much.
//
// A caller that finds no session for the ID a client sent uses it to tell
// a client whose ID was just renewed (the new ID is on its way, in the
// renewal's response) from one whose session ended: the first must keep
// its ID, the second gets a new session.
func (s *Store) Renamed(ctx context.Context, id string) (bool, error) {
	if s.closed() {
		return false, ErrClosed
	}
	if !validID(id) {
		return false, nil
	}
	cur, err := s.current(ctx, s.view.Load(), partitionOf(id), id)
	if err != nil {
		return false, err
	}
	now := s.now()
	return cur != nil && cur.destroyed && cur.renamed > 0 && now < cur.renamed+RenameGrace.Milliseconds() && now < cur.expires, nil
}

// endedError returns the error of a write to cur, a session that is not
// live: ErrSessionRenewed when Rename ended it, else ErrSessionEnded.
func endedError(cur *record) error {
	if cur.destroyed && cur.renamed > 0 {
		return ErrSessionRenewed
	}
	return ErrSessionEnded
}

// write applies records on this node where it owns them and sends each
// owner the records it owns, all of them in one message, so a peer applies
// them together. It waits as Save documents.
func (s *Store) write(ctx context.Context, v *view, rs ...*record) error {
	_, err := s.writeRecords(ctx, v, rs...)
	return err
}

// writeRecords is write; it also returns the newest version that an owner
// (this node included) holds of an attribute the records set, where that
// version won over the write's (see rewrite), or the zero version.
func (s *Store) writeRecords(ctx context.Context, v *view, rs ...*record) (outranked version, err error) {
	if err := s.writable(ctx); err != nil {
		return outranked, err
	}
	if err := s.awaitGreeted(ctx); err != nil {
		return outranked, err
	}
	start := s.clock.Monotonic()
	defer func() { s.stats.writeLatency.observe(s.clock.Monotonic() - start) }()
	now := s.now()
	type send struct {
		q   *peer
		rs  []*record
		msg []byte
	}
	var sends []*send
	byPeer := map[*peer]*send{}
	// elsewhere lists, for each record this node does not own, its owners:
	// one of them must acknowledge it, or it is on no node.
	var elsewhere [][]*peer
	for _, r := range rs {
		pi := partitionOf(r.id)
		if v.owns(pi) {
			out, old, _ := s.parts[pi].apply(r, now)
			s.sessionEvent(pi, old, out, true)
			outranked = newest(outranked, outrankedBy(old, r))
		} else {
			elsewhere = append(elsewhere, v.targets(pi))
		}
		for _, q := range v.targets(pi) {
			sd := byPeer[q]
			if sd == nil {
				sd = &send{q: q}
				byPeer[q] = sd
				sends = append(sends, sd)
			}
			sd.rs = append(sd.rs, r)
		}
	}
	s.stats.writes.Add(1)
	async := s.cfg.WriteConcern == Async
	var mustWait map[*peer]bool // degraded owners that are all a record has
	for _, owners := range elsewhere {
		if mustWait == nil {
			mustWait = map[*peer]bool{}
		}
		if !slices.ContainsFunc(owners, func(q *peer) bool { return !q.degraded.Load() }) {
			for _, q := range owners {
				mustWait[q] = true
			}
		}
	}
	// An asynchronous write is acknowledged once this node holds it. A
	// record this node does not own it never holds: it waits for the
	// record's owners as a synchronous write does, or a failed background
	// send would leave it on no node.
	var ownersElsewhere map[*peer]bool
	if async && len(elsewhere) > 0 {
		ownersElsewhere = map[*peer]bool{}
		for _, owners := range elsewhere {
			for _, q := range owners {
				ownersElsewhere[q] = true
			}
		}
	}
	waitFor := sends[:0]
	for _, sd := range sends {
		if async && !ownersElsewhere[sd.q] || sd.q.degraded.Load() && !mustWait[sd.q] && !sd.q.unlisting.Load() {
			s.enqueue(sd.q, sd.rs)
		} else {
			waitFor = append(waitFor, sd)
		}
	}
	sends = waitFor
	if len(sends) == 0 {
		if async {
			return outranked, nil
		}
		if len(elsewhere) > 0 {
			return outranked, errNoOwnerAcked // no owner at all: a view without members
		}
		if s.view.Load() != v { // checked first: the method value would cost an allocation per write
			if err := s.reachLaterOwners(ctx, v, nil, rs, s.sendWrite); err != nil {
				return outranked, err
			}
		}
		return outranked, s.awaitFence(ctx)
	}
	// Encode each distinct set of records once per protocol: a peer of
	// protocol version 2 or later is told who writes, and answers whether
	// it counts this node as a member.
	for i, sd := range sends {
		named := sd.q.version.protocol.Load() >= protocolV2
		for _, prev := range sends[:i] {
			if slices.Equal(prev.rs, sd.rs) && (prev.q.version.protocol.Load() >= protocolV2) == named {
				sd.msg = prev.msg
				break
			}
		}
		if sd.msg == nil {
			msg, err := s.encodeWriteFor(sd.q, sd.rs)
			if err != nil {
				return outranked, fmt.Errorf("encode write: %w", err)
			}
			sd.msg = msg
		}
	}
	results := make(chan ackResult, len(sends))
	call := func(sd *send) {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		defer cancel()
		resp, err := s.call(cctx, sd.q, sd.msg)
		var ack writeAck
		if err == nil {
			ack, err = decodeWriteAck(resp)
		}
		results <- ackResult{q: sd.q, err: err, fenceUntil: s.leases.mono() + int64(ack.fence), outranked: ack.outranked}
	}
	// The first peer is called on this goroutine, the others on their
	// own, so the common case (one other owner) starts no goroutine.
	for _, sd := range sends[1:] {
		go call(sd)
	}
	call(sends[0])
	var missed []ackResult
	notListed := false       // an owner does not count this node: see errNotListed
	var acked map[*peer]bool // only needed for records owned elsewhere
	if len(elsewhere) > 0 {
		acked = make(map[*peer]bool, len(sends))
	}
	var fenceUntil int64 // the owners' fences (fenceRemaining)
	for waiting := len(sends); waiting > 0; waiting-- {
		r := <-results
		switch {
		case r.err == nil:
			fenceUntil = max(fenceUntil, r.fenceUntil)
			outranked = newest(outranked, r.outranked)
			if acked != nil {
				acked[r.q] = true
			}
			continue
		case errors.Is(r.err, errNotListed):
			// It has the write, but its view of the members, and so of
			// the owners, is not this node's.
			notListed = true
			s.log.Debug("an owner does not list this node", "peer", r.q.name)
			continue
		case ctx.Err() != nil:
			continue // the caller gave up; the write is applied and sent
		case errors.Is(r.err, context.DeadlineExceeded):
			s.log.Debug("peer did not acknowledge a write in time", "peer", r.q.name, "timeout", s.cfg.WriteTimeout)
			s.stats.degradedWrites.Add(1)
			s.ownerLost(r.q, r.err)
		case errors.Is(r.err, ErrUnreachable):
			// A crashed or restarting peer catches up when it comes back;
			// one cut off must not answer from its copy meanwhile.
			s.log.Debug("peer unreachable", "peer", r.q.name, "err", r.err)
			s.ownerLost(r.q, r.err)
		default:
			s.stats.writeErrors.Add(1)
			s.log.Warn("peer refused a write", "peer", r.q.name, "err", r.err)
		}
		missed = append(missed, r)
	}
	s.fenceMissed(missed)
	if err := ctx.Err(); err != nil {
		return outranked, err
	}
	// An owner that missed the write and, at its last lease exchange, did
	// not list this node is not fenced by it: it answers from its copy
	// under the leases of its own view (found by the cluster simulator: a
	// node the others had wrongly declared dead acknowledged a login that
	// its co-owner, which had dropped it, missed over a lossy link and
	// answered as unknown).
	notListed = notListed || slices.ContainsFunc(missed, func(r ackResult) bool { return r.q.unlisting.Load() })
	if notListed {
		return outranked, errNotListed
	}
	for _, owners := range elsewhere {
		if !slices.ContainsFunc(owners, func(q *peer) bool { return acked[q] }) {
			// This node holds no copy: acknowledged, the write would be on
			// no node. Resending it is harmless (writes merge).
			return outranked, errNoOwnerAcked
		}
	}
	if s.view.Load() != v { // see above
		if err := s.reachLaterOwners(ctx, v, nil, rs, s.sendWrite); err != nil {
			return outranked, err
		}
	}
	return outranked, s.awaitFenceUntil(ctx, fenceUntil)
}

// encodeWriteFor encodes a write of rs for q: naming this node as its
// writer for a peer of protocol version 2 or later, which answers whether
// it counts this node as a member; as the first release's apply for an
// older one.
func (s *Store) encodeWriteFor(q *peer, rs []*record) ([]byte, error) {
	if q.version.protocol.Load() >= protocolV2 {
		return encodeWrite(keyOf(s.self), rs...)
	}
	return encodeApply(rs...)
}

// sendWrite sends the records of a write to q and waits for its
// acknowledgement.
func (s *Store) sendWrite(ctx context.Context, q *peer, rs []*record) error {
	msg, err := s.encodeWriteFor(q, rs)
	if err != nil {
		return err
	}
	resp, err := s.call(ctx, q, msg)
	if err == nil {
		_, err = decodeWriteAck(resp)
	}
	return err
}

// reachLaterOwners sends records of a write sent by view v (send) to the
// owners that the current view has and v did not, other than skip, and
// fences those that do not acknowledge them, before the write is
// acknowledged. A peer that joined the view while the write was in flight
// may hold a lease from this node already, granted after it merged with
// the owners and before the write took effect here, and would answer
// from a copy that lacks it (found by the cluster simulator, seed 1829: a
// visit begun while its node wrongly suspected the session's other owner
// was coordinated by the view without that owner and acknowledged just
// after the suspicion ended; the owner, merged a moment before, read it as
// missing). Views rarely change during a write; when they do, this costs
// one round trip to the newcomers. A newcomer that answers that it does
// not list this node is not reached by its fences: the write then fails
// with errNotListed, as one to such an owner of its own view does.
func (s *Store) reachLaterOwners(ctx context.Context, v *view, skip *peer, rs []*record, send func(context.Context, *peer, []*record) error) error {
	var notListed atomic.Bool
	for range 3 { // the view may change again meanwhile
		cur := s.view.Load()
		if cur == v {
			break
		}
		byPeer := map[*peer][]*record{}
		for _, r := range rs {
			pi := partitionOf(r.id)
			for _, q := range cur.targets(pi) {
				if q != skip && !slices.Contains(v.targets(pi), q) {
					byPeer[q] = append(byPeer[q], r)
				}
			}
		}
		var wg sync.WaitGroup
		for q, qrs := range byPeer {
			wg.Go(func() {
				cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
				defer cancel()
				err := send(cctx, q, qrs)
				var re *remoteError
				switch {
				case err == nil:
				case errors.Is(err, errNotListed), errors.As(err, &re) && re.msg == errCopyNotListed.Error():
					notListed.Store(true)
				default:
					s.log.Debug("an owner that joined the view during a write did not take it", "peer", q.name, "err", err)
					s.fenceFailed(q, err)
				}
			})
		}
		wg.Wait()
		v = cur
	}
	if notListed.Load() {
		return errNotListed
	}
	return nil
}

// awaitGreeted holds a write of a node that has just started until its
// peers list it (greetPeers), at most helloTimeout. A peer that does not
// list the writer yet does not count it among the owners: a write the
// writer acknowledged with the owners of its own view would be missing on
// an owner in the peer's view, which answers reads from its copy (found by
// the cluster simulator: a restarted node's login, read at once on another
// node, was not found there). In production the peers list a node within
// moments of its join, so the wait is short.
func (s *Store) awaitGreeted(ctx context.Context) error {
	select {
	case <-s.greeted:
		return nil
	default:
	}
	select {
	case <-s.greeted:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrClosed
	}
}

// errNotListed fails a write that an owner took but answered that it does
// not list the writer as a member: the two nodes' views of the members,
// and so of the session's owners, differ (a false suspicion, a crash
// verdict or a join reaching nodes one after another). The owners of the
// other view did not all get the write, and the fence that covers a write
// acknowledged without an owner does not reach a node that does not count
// the writer, so acknowledging it could lose it (found by the cluster
// simulator: a node the others had wrongly declared dead acknowledged a
// write that a read on another owner did not see). The write may surface
// later through anti-entropy; the caller should treat it as failed.
var errNotListed = fmt.Errorf("write: an owner does not list this node as a member: %w", ErrUnreachable)

// errNoOwnerAcked fails a synchronous write made on a node that does not
// own the session when none of the owners acknowledged it.
var errNoOwnerAcked = fmt.Errorf("write: no owner of the session acknowledged it: %w", ErrUnreachable)

// ackResult is one owner's answer to a replicated write.
type ackResult struct {
	q   *peer
	err error
	// fenceUntil is the monotonic time (nanoseconds) before which the
	// write may not be acknowledged, by the owner's fences.
	fenceUntil int64
	outranked  version // see writeAck
}

// fenceMissed fences the owners that may have missed a write, once every
// owner has answered: the write is then on the others before a fenced
// owner can learn (from a lease's epoch) that it must merge with them.
func (s *Store) fenceMissed(missed []ackResult) {
	for _, r := range missed {
		s.fenceFailed(r.q, r.err)
	}
}

// callAck sends msg to q and checks its acknowledgement.
func (s *Store) callAck(ctx context.Context, q *peer, msg []byte) error {
	resp, err := s.call(ctx, q, msg)
	if err != nil {
		return err
	}
	return decodeAckReply(resp)
}

// enqueue hands records to q's sender without waiting (asynchronous
// writes, degraded peers). When the queue is full the records are dropped
// and counted: anti-entropy repairs the peer, and memory stays bounded.
func (s *Store) enqueue(q *peer, rs []*record) {
	q.startSender.Do(func() { s.goroutine(func() { s.send(q) }) })
	for _, r := range rs {
		select {
		case q.queue <- r:
		default:
			s.stats.skippedSends.Add(1)
			s.fence(q)
		}
	}
}

// send is q's sender: it sends queued records in batches of up to
// fetchBatch, one batch in flight, until q leaves the view or the store
// closes.
func (s *Store) send(q *peer) {
	batch := make([]*record, 0, fetchBatch)
	for {
		select {
		case <-s.done:
			return
		case <-q.gone:
			return
		case r := <-q.queue:
			batch = append(batch[:0], r)
		}
	fill:
		for len(batch) < fetchBatch {
			select {
			case r := <-q.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		msg, err := encodeApply(batch...)
		if err == nil {
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.WriteTimeout)
			err = s.callAck(ctx, q, msg)
			cancel()
		}
		if err != nil {
			s.stats.skippedSends.Add(uint64(len(batch)))
			s.log.Debug("background send failed; anti-entropy will repair", "peer", q.name, "records", len(batch), "err", err)
			s.fenceFailed(q, err)
			if s.ctx.Err() == nil && (errors.Is(err, ErrUnreachable) || errors.Is(err, context.DeadlineExceeded)) {
				s.ownerLost(q, err)
			}
		}
	}
}
