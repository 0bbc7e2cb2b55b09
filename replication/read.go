package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sessionmesh/sessionmesh/transport"
)

// Get returns the session id if it exists and has not expired or been
// destroyed. A missing session is (Session{}, false, nil).
//
// A node that owns the session's partition and holds it completely reads
// locally, without any network traffic. Otherwise it asks the owners,
// primary first, then the backups, and takes the first answer from an owner
// that holds the partition completely. During rebalancing, when no such
// owner answers, it asks every peer and merges what they hold.
func (s *Store) Get(ctx context.Context, id string) (Session, bool, error) {
	return s.GetAtLeast(ctx, id, 0)
}

// GetAtLeast is Get for a caller that knows the session has reached
// version want (the Version of its last write, carried from the previous
// request, e.g. in the cookie): when this node's copy is older, it asks
// every owner and waits for the write to arrive, at most MaxReadWait, then
// answers with the newest copy it found. That gives read-your-writes on
// any node with asynchronous writes, and through a degraded or partitioned
// moment with synchronous ones. Reads that had to wait, and those that
// gave up, are counted in Stats.
func (s *Store) GetAtLeast(ctx context.Context, id string, want Version) (Session, bool, error) {
	if s.closed() {
		return Session{}, false, ErrClosed
	}
	if !validID(id) {
		return Session{}, false, nil
	}
	pi := partitionOf(id)
	var r *record
	if p := s.parts[pi]; s.authoritative(p) {
		r = p.get(id)
	} else {
		var err error
		if r, err = s.readRemote(ctx, s.view.Load(), pi, id, true); err != nil {
			return Session{}, false, err
		}
	}
	if want != 0 && !reached(r, want) {
		var err error
		if r, err = s.catchUpRead(ctx, pi, id, want, r); err != nil {
			return Session{}, false, err
		}
	}
	if r == nil || !r.live(s.readNow()) {
		return Session{}, false, nil
	}
	return Session{r: r}, true, nil
}

// reached reports whether r reflects every write up to version want. A
// destroyed session has reached every version: nothing comes after.
func reached(r *record, want Version) bool {
	return r != nil && (r.destroyed || Version(r.maxVersion().time) >= want)
}

// maxWaitingReads bounds the reads waiting in catchUpRead at once, so
// that requests with made-up versions cannot tie up a node.
const maxWaitingReads = 64

// worthWaitingFor reports whether a read should wait for version want, and
// if so counts it among the waiting reads (the caller releases it). A
// version is not worth waiting for when it is further ahead of this node's
// clock than MaxClockOffset (no write can carry it; nor is it adopted into
// the clock), when it is so old that its write would have arrived long ago
// if it ever will (older than the arrival horizon, measured on the
// writer's clock: here, plus the largest offset this node has measured to
// a peer, at most MaxClockOffset/2), or when maxWaitingReads reads are
// waiting already. Versions come from clients (the cookie), so they are
// untrusted.
func (s *Store) worthWaitingFor(want Version) bool {
	wall := toTimestamp(want).Time()
	now := s.clock.Now()
	if wall.After(now.Add(s.cfg.MaxClockOffset)) || wall.Before(now.Add(-s.versionHorizon())) {
		return false
	}
	if s.waitingReads.Add(1) > maxWaitingReads {
		s.waitingReads.Add(-1)
		return false
	}
	return true
}

// arrivalHorizon is how old a write can be and still be on its way to an
// owner on a working network: its sender's queue, a batch in flight, a
// retry. A reader does not wait for an older version, and an asynchronous
// write carries its base's attributes younger than that (recentAttrs).
func (s *Store) arrivalHorizon() time.Duration {
	return 2*s.cfg.MaxReadWait + 2*s.cfg.WriteTimeout
}

// versionHorizon is the arrival horizon as versions show it on this
// node's clock: longer by the largest offset it has measured to a peer
// (at most MaxClockOffset/2), since a peer whose clock is behind stamps
// versions that look older here by as much.
func (s *Store) versionHorizon() time.Duration {
	return s.arrivalHorizon() + min(time.Duration(s.clockSpread.Load()), s.cfg.MaxClockOffset/2)
}

// catchUpRead waits for id to reach version want: it merges the copies of
// every owner (and of this node) until one shows the version, backing off
// from 1 ms to 20 ms, for at most MaxReadWait. When none holds the session
// at all by then, it fails with errWriteNotArrived rather than answer
// that there is no such session.
//
// errWriteNotArrived: the caller saw a write of the session within the
// arrival horizon, so the session cannot have ended since unnoticed, and
// no owner has it yet: its writer is cut off from them, or the owners are
// a view the writer was not in (found by the cluster simulator, seed
// 1676: an asynchronous login on a node that the others had wrongly
// declared dead was answered "session ended" by an Update on another node
// 74 ms later). Answering "no such session" would log the user out. A
// made-up version fails so until it is older than the horizon, and is
// ignored after that.
func (s *Store) catchUpRead(ctx context.Context, pi int, id string, want Version, r *record) (*record, error) {
	s.stats.behindReads.Add(1)
	if !s.worthWaitingFor(want) {
		s.stats.staleReads.Add(1)
		return r, nil
	}
	defer s.waitingReads.Add(-1)
	deadline := s.clock.Monotonic() + s.cfg.MaxReadWait
	for pause := time.Millisecond; ; pause = min(2*pause, 20*time.Millisecond) {
		v := s.view.Load()
		p := s.parts[pi]
		r = merge(r, p.get(id))
		for _, q := range v.targets(pi) {
			g, err := s.get(ctx, q, id, s.cfg.WriteTimeout)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			qr := g.r
			if err == nil && qr != nil && qr.id == id && s.admit("read", qr) == nil {
				if v.owns(pi) {
					qr, _, _ = p.apply(qr, s.now())
				}
				r = merge(r, qr)
			}
		}
		if reached(r, want) {
			return r, nil
		}
		if s.clock.Monotonic()+pause > deadline {
			s.stats.staleReads.Add(1)
			s.log.Debug("read gave up waiting for a write", "session_partition", pi, "want", want)
			if r == nil {
				return nil, errWriteNotArrived
			}
			return r, nil
		}
		if err := s.pause(ctx, pause); err != nil {
			return nil, err
		}
	}
}

// current returns the latest record of id that this node can know: its own
// when it holds the partition completely, else one read from the owners.
func (s *Store) current(ctx context.Context, v *view, pi int, id string) (*record, error) {
	if p := s.parts[pi]; s.authoritative(p) {
		return p.get(id), nil
	}
	return s.readRemote(ctx, v, pi, id, true)
}

// writeBase returns the record a blind write (Save without a base) of id
// starts from. Its changes carry their own versions and merge with whatever
// the base missed, but the base must have been seen by this node's hybrid
// clock, or a write made after another of the same attribute can get a
// lower version and lose to it (found by the cluster simulator: a degraded
// owner with a slower clock). So an owner uses its own copy only while it
// is authoritative; otherwise, like other nodes, it reads from the owners
// (which advances its clock past what they hold), without waiting for
// peers that do not answer lease requests: when those are the only
// owners it did not hear, and none of them last said it wrote without
// this node, it builds on its own copy. Otherwise, when an owner did not
// answer, the write fails as a read would (errNoAnswer): built on this
// node's own copy, it could be acknowledged and then lose to an earlier
// write it never saw (found by the cluster simulator over lossy links).
func (s *Store) writeBase(ctx context.Context, v *view, pi int, id string) (*record, error) {
	if p := s.parts[pi]; s.authoritative(p) {
		return p.get(id), nil
	}
	r, err := s.readRemote(ctx, v, pi, id, false)
	if errors.Is(err, errOnlySilentUnheard) {
		return s.parts[pi].get(id), nil
	}
	return r, err
}

// errNoAnswer reports a read that no owner of the session answered: what
// this node and the others hold may miss writes the owners acknowledged
// without them, and "no such session" would log out a user whose session
// is alive behind a broken link.
var errNoAnswer = fmt.Errorf("read session: no owner answered: %w", ErrUnreachable)

// errWriteNotArrived is catchUpRead's failure for a session no owner holds.
var errWriteNotArrived = fmt.Errorf("read session: no owner holds the session yet, though the caller saw a write of it moments ago: %w", ErrUnreachable)

// errMinority reports a read that no authoritative owner answered, made
// by or answered from a node in a minority (minority.go).
var errMinority = fmt.Errorf("read session: no authoritative owner answered, and this node or an owner is in a minority: %w", ErrMinority)

// errOnlySilentUnheard is errNoAnswer from a read that did not ask the
// owners that do not answer lease requests, and heard from no other.
var errOnlySilentUnheard = fmt.Errorf("read session: no owner answered but those not asked: %w", ErrUnreachable)

// readRemote reads id from its owners (see Get). When this node owns the
// partition, what it learns is merged into its own copy. With askSilent,
// peers that do not answer lease requests are asked too, last.
//
// When every owner of this node's view that answered says it owns the
// partition no more (errHandedOver), the views differ: this node's is
// behind theirs (a join it has not heard of yet), whose owners may hold
// writes it cannot see, or theirs is behind this node's (a death they
// have not taken in yet). It asks again, in the view it then has, until
// an owner answers as one, for at most WriteTimeout.
func (s *Store) readRemote(ctx context.Context, v *view, pi int, id string, askSilent bool) (*record, error) {
	deadline := s.clock.Monotonic() + s.cfg.WriteTimeout
	for pause := time.Millisecond; ; pause = min(2*pause, 20*time.Millisecond) {
		r, err := s.readOwners(ctx, v, pi, id, askSilent)
		if errors.Is(err, errMinority) && s.awaitVanishedAnswers(ctx) {
			r, err = s.readOwners(ctx, s.view.Load(), pi, id, askSilent)
		}
		if !errors.Is(err, errHandedOver) || s.clock.Monotonic()+pause > deadline {
			return r, err
		}
		if err := s.pause(ctx, pause); err != nil {
			return nil, err
		}
		v = s.view.Load()
	}
}

// errHandedOver reports a read whose owners, in the reader's view, all
// answered that they do not own the partition in theirs.
var errHandedOver = fmt.Errorf("read session: the owners have handed the session's partition over: %w", ErrUnreachable)

// readOwners is one attempt of readRemote in view v.
func (s *Store) readOwners(ctx context.Context, v *view, pi int, id string, askSilent bool) (*record, error) {
	if !s.joined.Load() {
		var err error
		if v, err = s.awaitJoined(ctx); err != nil {
			return nil, err
		}
	}
	p := s.parts[pi]
	owner := v.owns(pi)
	// What this node holds: as a new owner, what writes delivered so far;
	// as a former owner, what it has not handed over yet. Partial or
	// stale, it is still true, and merging keeps whatever is newer.
	merged := p.get(id)
	learn := func(r *record) error {
		if r == nil || r.id != id {
			return nil
		}
		if err := s.admit("read", r); err != nil {
			return err
		}
		if owner {
			merged, _, _ = p.apply(r, s.now())
		} else {
			merged = merge(merged, r)
		}
		return nil
	}

	// askAll asks qs in order, each for at most timeout, and reports
	// whether one of them holds the partition as an up-to-date owner.
	// answered records whether an owner answered (any peer, when this node
	// is the only owner), silent whether an owner did not answer without
	// being proven gone: then what the others hold is no evidence that the
	// session does not exist, or has no later writes. An owner that
	// refused the connection is gone, with the writes only it held.
	targets := v.targets(pi)
	answered, unheard, handedOver := false, false, false
	// unheardAhead: an owner that acknowledged writes without this node
	// did not answer; the others may have missed those writes too.
	// answeredBehind: an owner that answered knows it missed writes.
	unheardAhead, answeredBehind := false, false
	// inMinority: this node, or an owner that answered, is in a minority
	// (minority.go): what the answers hold may lack what the other side
	// of a partition wrote.
	inMinority := s.leases.inMinority()
	askAll := func(qs []*peer, timeout time.Duration) (bool, error) {
		for _, q := range qs {
			g, err := s.get(ctx, q, id, timeout)
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			if err != nil {
				silent := !errors.Is(err, transport.ErrRefused) && slices.Contains(targets, q)
				unheard = unheard || silent
				unheardAhead = unheardAhead || silent && q.ahead.Load()
				continue
			}
			switch {
			case len(targets) == 0:
				answered = true
			case !slices.Contains(targets, q):
			case g.disowned:
				handedOver = true
			default:
				answered = true
				answeredBehind = answeredBehind || g.behind && !g.ready
				inMinority = inMinority || g.minority
			}
			if err := learn(g.r); err != nil { // a partial copy is still true
				s.log.Warn("refused record from peer", "peer", q.name, "err", err)
				continue
			}
			if g.ready {
				return true, nil
			}
		}
		return false, nil
	}
	// Peers that do not answer lease requests are asked last, briefly: a
	// frozen peer must not hold every read up for WriteTimeout, but one
	// alive behind a broken link may hold the only copy of a write.
	isSilent := func(q *peer) bool { return q.silent.Load() }
	owners := slices.DeleteFunc(ownersByPreference(targets), isSilent)
	var others, silent []*peer
	for _, q := range v.peers {
		switch {
		case isSilent(q):
			silent = append(silent, q)
		case !slices.Contains(owners, q):
			others = append(others, q)
		}
	}
	if done, err := askAll(owners, s.cfg.WriteTimeout); done || err != nil {
		if err != nil {
			return nil, err
		}
		s.stats.remoteReads.Add(1)
		return merged, nil
	}
	// No owner that answered holds the partition completely and is up to
	// date: the partition is being rebalanced (former owners keep their
	// records until the new owners are complete), or a peer is silent.
	// Merge what everybody has.
	if _, err := askAll(others, s.cfg.WriteTimeout); err != nil {
		return nil, err
	}
	notAsked := false // a silent owner, not asked
	if !askSilent {
		for _, q := range silent {
			if slices.Contains(targets, q) {
				notAsked = true
				unheardAhead = unheardAhead || q.ahead.Load()
			}
		}
		silent = nil
	}
	if _, err := askAll(silent, s.cfg.ReadLease/2); err != nil {
		return nil, err
	}
	if merged == nil { // an owner may have completed meanwhile
		if _, err := askAll(owners, s.cfg.WriteTimeout); err != nil {
			return nil, err
		}
	}
	switch {
	case answeredBehind && (unheard || notAsked):
		// Found by the cluster simulator: the owners of a session were a
		// writer and an owner degraded there over a lossy link; the
		// writer acknowledged a write without it, and a read on a third
		// node lost the writer's answer and took the degraded owner's
		// copy, without that write.
		return nil, errNoAnswer
	case unheardAhead:
		// Found by the cluster simulator: a login acknowledged by one node
		// while both others were degraded there was read as missing on
		// one of them, which reached the other and not the writer.
		return nil, errNoAnswer
	case inMinority:
		// Found by the cluster simulator (seed 1947): a node restarted
		// while a partition healed reached the node that had been cut off
		// alone, and read its copies, which lacked a login made on the
		// other side, as "session ended".
		return nil, errMinority
	case answered:
	case unheard:
		return nil, errNoAnswer
	case notAsked:
		return nil, errOnlySilentUnheard
	case handedOver:
		return nil, errHandedOver
	}
	s.stats.remoteReads.Add(1)
	return merged, nil
}

// get asks q for one session.
func (s *Store) get(ctx context.Context, q *peer, id string, timeout time.Duration) (g getReply, err error) {
	var req []byte
	if q.version.protocol.Load() >= protocolV2 {
		req, err = encodeGetFrom(id, keyOf(s.self))
	} else {
		req, err = encodeGet(id)
	}
	if err != nil {
		return getReply{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp, err := s.call(cctx, q, req)
	if err != nil {
		s.log.Debug("read from peer failed", "peer", q.name, "err", err)
		return getReply{}, err
	}
	g, err = decodeGetReply(resp)
	if err != nil {
		s.log.Warn("bad read reply", "peer", q.name, "err", err)
	}
	return g, err
}

// ownersByPreference returns owners in order of preference for reads:
// the view's order (primary first), healthy before degraded.
func ownersByPreference(owners []*peer) []*peer {
	out := slices.Clone(owners)
	slices.SortStableFunc(out, func(a, b *peer) int {
		switch {
		case a.degraded.Load() == b.degraded.Load():
			return 0
		case b.degraded.Load():
			return -1
		}
		return 1
	})
	return out
}

// awaitJoined waits, at most WriteTimeout, until the node has joined the
// cluster, and returns the view from then. A node that has just started
// knows no peers: answering "no such session" before it has met them would
// log out users whose requests reach it first.
func (s *Store) awaitJoined(ctx context.Context) (*view, error) {
	t := time.NewTimer(s.cfg.WriteTimeout)
	defer t.Stop()
	select {
	case <-s.cfg.Membership.Settled():
		s.joinedOnce.Do(func() {
			s.rebuildView()
			s.joined.Store(true)
		})
	case <-t.C:
		s.log.Warn("read before the node has joined the cluster; answering with what it holds")
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, ErrClosed
	}
	return s.view.Load(), nil
}
