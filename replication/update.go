package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/transport"
)

// maxUpdateAttempts bounds how often Update runs its function when other
// updates of the same attribute keep winning. Between attempts it backs
// off for a random time that grows with the attempts, up to 2 ms, so that
// under heavy contention every updater gets its turn.
const maxUpdateAttempts = 100

// UpdateFunc computes an attribute's new value from its current one
// (exists is false when the attribute is not set). It may run more than
// once per Update, so it must have no side effects beyond its result.
// Returning an error aborts the update with that error.
type UpdateFunc func(old []byte, exists bool) ([]byte, error)

// Update atomically replaces attribute key of session id with the result
// of fn applied to its current value, and returns the new value and the
// write's Version. Unlike a Get followed by a Save, concurrent Updates of
// one attribute never lose each other's changes, whichever nodes they run
// on: a counter incremented by 64 parallel requests ends 64 higher.
//
// It is optimistic concurrency on the attribute's version. This node
// computes the new value; the session's coordinator (its partition's
// primary, or the next owner holding the partition completely when the
// primary is unreachable) applies it only if the attribute's version is
// still the one the value was computed from, and otherwise answers with
// the current value, for fn to run again (at most 100 times, then
// ErrConflict). The applied write is then replicated like any other.
// Reads and plain Saves pay nothing for this; a Save of the same attribute
// is not ordered with Updates.
//
// When the coordinator fails while the update is in flight, Update returns
// an error and the update may or may not have been applied; Update itself
// never sends an update again once it may have been applied, so a caller
// that does not retry applies it at most once. It returns ErrSessionEnded
// when the session does not exist, was destroyed or has expired.
func (s *Store) Update(ctx context.Context, id, key string, fn UpdateFunc) ([]byte, Version, error) {
	return s.UpdateAtLeast(ctx, id, key, 0, fn)
}

// UpdateAtLeast is Update for a caller that has seen version want of the
// session (as GetAtLeast takes it): with Async writes, an owner may not
// have the caller's last write yet, and coordinated there an update would
// start from an older value or find no session at all. Its base is read
// as GetAtLeast reads, and only an owner whose copy has reached want
// coordinates it (another waits until it has, up to WriteTimeout). A want
// that no owner reaches within MaxReadWait (a made-up version from a
// client) is ignored. With Sync writes every owner has every acknowledged
// write, and want changes nothing; 0 is Update.
func (s *Store) UpdateAtLeast(ctx context.Context, id, key string, want Version, fn UpdateFunc) ([]byte, Version, error) {
	if s.closed() {
		return nil, 0, ErrClosed
	}
	if !validID(id) {
		return nil, 0, fmt.Errorf("update session: %w", ErrInvalidID)
	}
	if err := s.writable(ctx); err != nil {
		return nil, 0, err
	}
	s.leases.beginWrite()
	defer s.leases.endWrite()
	pi := partitionOf(id)
	v := s.view.Load()
	cur, err := s.current(ctx, v, pi, id)
	if err != nil {
		return nil, 0, err
	}
	if want != 0 && !reached(cur, want) {
		if cur, err = s.catchUpRead(ctx, pi, id, want, cur); err != nil {
			return nil, 0, err
		}
		if !reached(cur, want) {
			want = 0 // no owner has it: not a version to wait for
		}
	}
	if cur == nil || !cur.live(s.now()) {
		return nil, 0, ErrSessionEnded
	}
	base := attrOf(cur, key)
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		value, err := fn(base.value, base.exists)
		if err != nil {
			return nil, 0, err
		}
		req := updateRequest{id: id, key: key, expected: base.version, value: value, atLeast: want}
		res, err := s.coordinate(ctx, v, pi, req)
		// No owner could coordinate, and none applied it: a moment
		// without an up-to-date owner (a lapsed lease, a rebalance).
		// Sending the same request again is safe.
		for pause, waited := 5*time.Millisecond, time.Duration(0); errors.Is(err, errNoCoordinator) && waited < s.cfg.WriteTimeout; pause = min(2*pause, 50*time.Millisecond) {
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
			waited += pause
			v = s.view.Load()
			res, err = s.coordinate(ctx, v, pi, req)
		}
		if err != nil {
			return nil, 0, err
		}
		switch res.outcome {
		case updateApplied:
			// The coordinator has it; the other owners get it now.
			if err := s.replicateUpdate(ctx, v, pi, res.coordinator, base, res.delta, cur); err != nil {
				return nil, 0, err
			}
			return value, Version(res.delta.maxVersion().time), nil
		case updateEnded:
			return nil, 0, ErrSessionEnded
		case updateConflict:
			base = res.current
			s.stats.updateConflicts.Add(1)
			pause := time.Duration(rand.Int64N(int64(min(attempt+1, 10)) * int64(200*time.Microsecond)))
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		}
		v = s.view.Load()
	}
	return nil, 0, fmt.Errorf("update %q: %w", key, ErrConflict)
}

// attrState is an attribute's value and version, or its absence.
type attrState struct {
	value   []byte
	exists  bool
	version version
}

// attrOf returns the state of attribute key in r.
func attrOf(r *record, key string) attrState {
	if i := r.find(key); i >= 0 {
		a := r.attrs[i]
		return attrState{value: a.value, exists: !a.deleted, version: a.version}
	}
	return attrState{}
}

// updateResult is a coordinator's answer.
type updateResult struct {
	outcome     byte
	delta       *record   // updateApplied
	current     attrState // updateConflict
	coordinator *peer     // who applied it
}

// coordinate runs req at the session's coordinator: the first owner, in
// the view's order, that holds the partition completely and answers. A
// call that certainly did not reach an owner moves on to the next one; any
// other failure ends the update, as the owner may have applied it.
func (s *Store) coordinate(ctx context.Context, v *view, pi int, req updateRequest) (updateResult, error) {
	for _, q := range v.owners[pi] {
		if q.self {
			res := s.applyUpdate(pi, req)
			if res.outcome != updateNotReady {
				res.coordinator = q
				return res, nil
			}
			continue
		}
		req.from, req.sent, req.budget = keyOf(s.self), int64(s.clock.Monotonic()), s.cfg.WriteTimeout
		msg, err := encodeUpdate(req)
		if err != nil {
			return updateResult{}, err
		}
		resp, err := s.callTimeout(ctx, q, msg)
		switch {
		case err == nil:
		case errors.Is(err, transport.ErrNotSent):
			continue
		default:
			return updateResult{}, fmt.Errorf("update at %s: %w", q.name, err)
		}
		res, err := decodeUpdateReply(resp)
		if err != nil {
			return updateResult{}, fmt.Errorf("update at %s: %w", q.name, err)
		}
		if res.outcome == updateNotReady {
			continue
		}
		if err := s.admit("update reply", res.delta); err != nil {
			return updateResult{}, err
		}
		res.coordinator = q
		return res, nil
	}
	return updateResult{}, errNoCoordinator
}

// errNoCoordinator reports that no owner of the session could coordinate
// an update (none holds it completely and up to date, or none was
// reached), so none applied it.
var errNoCoordinator = fmt.Errorf("update: no owner of the session holds it completely: %w", ErrUnreachable)

// applyUpdate is the coordinator's side of an update: under the
// partition's lock, it applies the write if the attribute's version is the
// expected one. It never calls the network.
func (s *Store) applyUpdate(pi int, req updateRequest) updateResult {
	p := s.parts[pi]
	if !s.authoritative(p) || s.Health() != nil { // another owner coordinates
		return updateResult{outcome: updateNotReady}
	}
	now := s.now()
	var res updateResult
	p.update(req.id, func(cur *record) *record {
		res = coordinateRule(cur, req, now, version{time: s.hlc.Now(), node: s.node}, s.cfg.Limits)
		return res.delta
	})
	if res.outcome == updateApplied {
		s.stats.writes.Add(1)
	}
	return res
}

// replicateUpdate sends an applied update to the owners other than its
// coordinator and waits for them as Save does. Each owner applies it only
// if it has not applied another update of the attribute made from the same
// or a later state: during a failover, an update coordinated by a
// primary that died after answering can meet one coordinated by the next
// owner; the second one to reach a replica is refused there, and Update
// reports it (ErrConflict), never acknowledging both.
//
// With asynchronous writes the owners also get base, the session as the
// caller held it (one that reached the caller's last write), applied
// before the update: a replica that missed a write still on its way from
// another node would otherwise hold the update's version, which the
// caller's next GetAtLeast asks for, without that earlier write.
//
// before is the attribute's state the update was computed from. When this
// node coordinated the update and every other owner refused it, the
// update fails and this node takes it back (undoUpdate).
func (s *Store) replicateUpdate(ctx context.Context, v *view, pi int, coordinator *peer, before attrState, delta, base *record) error {
	if s.cfg.WriteConcern != Async {
		base = nil
	}
	expected := before.version
	// The copy is encoded once, when a replica other than this node needs
	// it.
	copyMsg := sync.OnceValues(func() ([]byte, error) {
		return encodeUpdateCopy(updateCopyRequest{expected: expected, delta: delta, base: base, from: keyOf(s.self)})
	})
	var refused error
	results := make(chan ackResult, len(v.owners[pi]))
	waiting := 0
	for _, q := range v.owners[pi] {
		switch {
		case q == coordinator:
			continue
		case q.self:
			if base != nil {
				out, old, _ := s.parts[pi].apply(base, s.now())
				s.sessionEvent(pi, old, out, true)
			}
			if !s.applyUpdateReplica(pi, expected, delta) {
				refused = ErrConflict
			}
			continue
		}
		msg, err := copyMsg()
		if err != nil {
			return err
		}
		waiting++
		go func() {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
			defer cancel()
			results <- ackResult{q: q, err: s.callAck(cctx, q, msg)}
		}()
	}
	var missed []ackResult
	notListed := false      // an owner does not count this node: see errCopyNotListed
	takenElsewhere := false // an owner took the update, or may have
	for ; waiting > 0; waiting-- {
		r := <-results
		var re *remoteError
		switch {
		case r.err == nil:
			takenElsewhere = true
		case errors.As(r.err, &re) && re.msg == errCopyNotListed.Error():
			notListed = true
		case errors.Is(r.err, ErrUnreachable), errors.Is(r.err, context.DeadlineExceeded) && ctx.Err() == nil:
			// Crashed or frozen owners catch up by transfer or repair;
			// they must not answer from their copies meanwhile.
			missed = append(missed, r)
			takenElsewhere = takenElsewhere || !errors.Is(r.err, transport.ErrNotSent)
		case errors.As(r.err, &re) && re.msg == errUpdateRefused.Error():
			refused = ErrConflict
		default:
			return fmt.Errorf("replicate update: %w", r.err)
		}
	}
	s.fenceMissed(missed)
	if (refused != nil || notListed) && coordinator.self && !takenElsewhere {
		s.undoUpdate(pi, delta, before)
	}
	if refused != nil {
		return fmt.Errorf("update lost to a concurrent update during a failover: %w", refused)
	}
	if notListed {
		return errNotListed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.reachLaterOwners(ctx, v, coordinator, []*record{delta}, func(ctx context.Context, q *peer, _ []*record) error {
		msg, err := copyMsg()
		if err != nil {
			return err
		}
		return s.callAck(ctx, q, msg)
	}); err != nil {
		return err
	}
	return s.awaitFence(ctx)
}

// undoUpdate takes back an update that this node coordinated and applied
// but no other owner took (they do not list this node, or hold a competing
// update): the attribute goes back to before, unless a later write has
// replaced the update meanwhile. Kept, the failed update would win by
// version wherever anti-entropy later pushed this node's copy, over
// updates acknowledged meanwhile on nodes with slower clocks (found by the
// cluster simulator, seed 4729: a node the others wrongly suspected
// counted two visits that failed, and its copy, pushed to a node that had
// just dropped it, replaced the next, acknowledged visit there).
func (s *Store) undoUpdate(pi int, delta *record, before attrState) {
	s.parts[pi].revert(delta.id, func(cur *record) *record {
		return withAttrUndone(cur, delta.attrs[0], before)
	})
	s.stats.undoneUpdates.Add(1)
}

// errUpdateTooLate answers an update that reached its coordinator after
// its caller stopped waiting.
var errUpdateTooLate = errors.New("update arrived after its caller gave up; not applied")

// errCopyNotListed is a replica's answer to an update coordinated by a node
// it does not list as a member, as a write's owner answers a writer it does
// not list (errNotListed): their views of the owners differ, and an owner
// of the replica's view that is not one of the coordinator's does not get
// the update (found by the cluster simulator, seed 4313: a node the others
// had wrongly declared dead coordinated a visit that its co-owner, which had
// just dropped it, applied; the partition's new co-owner had copied it
// before and answered a read without the visit). The replica does not apply
// it, and the update fails with ErrUnreachable.
var errCopyNotListed = errors.New("update copy from a coordinator this node does not list as a member; not applied")

// errUpdateRefused is a replica's answer to an update that lost to
// another one.
var errUpdateRefused = errors.New("update refused: the attribute moved on from another state")

// applyUpdateReplica applies an update coordinated elsewhere unless this
// node has applied a competing update of the attribute: one made from the
// same or a later state by another coordinator.
func (s *Store) applyUpdateReplica(pi int, expected version, delta *record) bool {
	ok := false
	s.parts[pi].update(delta.id, func(cur *record) *record {
		if ok = replicaRule(cur, expected, delta); !ok {
			return nil
		}
		return delta
	})
	return ok
}
