package replication

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/transport"
)

// Tuning of the maintenance loop.
const (
	helloTimeout   = 5 * time.Second // how long a starting node waits for peers to list it
	transferWindow = 4               // partitions copied at once
	fetchBatch     = 512             // records per fetch or push during repair
)

// maintain is the store's maintenance loop, the one goroutine that moves
// data between nodes in the background. After the node has joined, it
// greets its peers, then runs a round at once and after every membership
// change or AntiEntropyInterval:
//
//   - It polls every peer's status: per partition, whether the peer holds
//     it completely as an owner, its digest and its record count. A peer
//     whose lease answers say its status has not changed is not asked
//     again (poll).
//   - State transfer: for each partition this node owns but does not hold
//     completely (it just started, joined, or inherited the partition from a
//     failed or departed member), it copies the partition, in chunks, from
//     an owner that holds it completely; when there is none (a rebalance
//     moved every copy), from every peer that holds records of it. Then the
//     partition is ready. Writes that arrive meanwhile are merged too: the
//     merge is a CRDT, so a write and a copy combine correctly in any order,
//     and no node ever waits for another's transfer (nodes that start
//     together find nothing to copy and are ready at once).
//   - Anti-entropy: with each peer, for every partition both hold
//     completely as owners and whose digests differ, it compares
//     per-session digests and exchanges only the sessions that differ, in
//     both directions. This heals writes lost while a peer was slow,
//     partitioned or not yet known, and clears the degraded mark of a peer
//     it repaired.
//   - Hand-off: records of partitions this node no longer owns are pushed
//     to the owners, then dropped if unchanged meanwhile. This is how
//     rebalancing after a join and a graceful Leave move data.
//   - It counts the partitions below their copy count (FullyReplicated).
func (s *Store) maintain() {
	select {
	case <-s.cfg.Membership.Settled():
	case <-s.done:
		return
	}
	s.joinedOnce.Do(func() {
		s.rebuildView()
		s.joined.Store(true)
	})
	s.greetPeers(s.ctx)
	close(s.greeted)
	s.repeat(s.roundPeriod, s.kick, func() { s.round(s.ctx) })
}

// Catching up: while re-replication makes progress, rounds come every
// catchUpInterval instead of AntiEntropyInterval. The count of partitions
// below their copy count only reaches 0 in a round that sees the new
// owners' statuses after they have copied, and a SIGKILL should not wait
// AntiEntropyInterval for it. After catchUpRounds rounds that find the same
// count again, the pause doubles each round up to AntiEntropyInterval: a
// frozen or cut-off owner, which no copying mends, is soon polled at the
// normal pace, while peers that are only slow to copy (64 servers starting
// on 2 cores) are not left for a whole AntiEntropyInterval after their last
// copy (that wait was most of the time a 64-node cluster took to converge).
const (
	catchUpInterval = 100 * time.Millisecond
	catchUpRounds   = 20
)

// catchUp is what roundPeriod remembers between rounds; only the
// maintenance loop uses it.
type catchUp struct {
	under int32         // the last round's count (Store.replicated)
	left  int           // short pauses left without progress
	pause time.Duration // the last pause after those
}

// roundPeriod is the pause before the next maintenance round.
func (s *Store) roundPeriod() time.Duration {
	c, under := &s.catchUp, s.replicated.Load()
	if under < 0 || c.under == 0 || under < c.under {
		// a new loss, a view change, or progress
		c.left, c.pause = catchUpRounds, catchUpInterval
	}
	c.under = under
	switch {
	case under == 0:
		return s.cfg.AntiEntropyInterval
	case c.left > 0:
		c.left--
		return min(s.cfg.AntiEntropyInterval, catchUpInterval)
	}
	c.pause = min(2*c.pause, s.cfg.AntiEntropyInterval)
	return c.pause
}

// round runs one round of maintenance: it polls the peers, then carries
// out what the round planner (roundplan.go) decides from their answers,
// step by step, each step deciding on what the previous one left.
func (s *Store) round(ctx context.Context) {
	if !s.settleAfterLoss() {
		return
	}
	v := s.view.Load()
	losses := s.losses.Load()
	since := s.clock.Monotonic()
	s.poll(ctx, v, false)
	s.greetAgain(ctx, v)
	st := freshStatuses(v, since)
	s.transfer(ctx, planTransfers(v, s.partStates(), st))
	s.resync(ctx, v)
	s.shareLoaded(ctx, v)
	if s.allOwnedReady(v) {
		s.readyOnce.Do(func() {
			close(s.readyCh)
			s.log.Info("store ready", "mode", s.cfg.Mode, "sessions", s.Stats().Sessions)
		})
	}
	s.repair(ctx, planRepairs(v, s.partStates(), st))
	s.handOff(ctx, planHandOffs(v, s.partStates(), st))
	s.replicated.Store(int32(underReplicated(v, s.partStates(), st)))
	if s.view.Load() != v || s.losses.Load() != losses {
		// The membership changed during the round, or an owner looked
		// gone: this count is of the old state. rebuildView and ownerLost
		// store -1 again after their change, so either they or this line
		// have the last word.
		s.replicated.Store(-1)
	}
}

// partStates returns the state of each of this node's partitions.
func (s *Store) partStates() []partState {
	out := make([]partState, len(s.parts))
	for i, p := range s.parts {
		n, d := p.stats()
		out[i] = partState{ready: p.ready.Load(), digest: d, count: n}
	}
	return out
}

// freshStatuses returns the statuses of v's peers that answered a poll
// made at monotonic time since or later.
func freshStatuses(v *view, since time.Duration) statuses {
	st := make(statuses, len(v.peers))
	for _, q := range v.peers {
		if s := fresh(q, since); s != nil {
			st[q] = s
		}
	}
	return st
}

// allOwnedReady reports whether every partition v owns is ready.
func (s *Store) allOwnedReady(v *view) bool {
	for i, p := range s.parts {
		if v.owns(i) && !p.ready.Load() {
			return false
		}
	}
	return true
}

// greetPeers says hello to every peer until each lists this node as a
// member (from then on their writes reach it too), or helloTimeout passes.
// Copying partitions before that could miss a write a peer sends to the
// old owners only. The peers are greeted all at once: one after another,
// 63 round trips to peers that are starting too took seconds.
func (s *Store) greetPeers(ctx context.Context) {
	deadline := s.clock.Monotonic() + helloTimeout
	var pending []*peer
	for _, q := range s.view.Load().peers {
		q.version.elder.Store(true) // in the cluster before this node: see negotiate.go
		pending = append(pending, q)
	}
	for len(pending) > 0 && s.clock.Monotonic() < deadline {
		again := make([]bool, len(pending))
		var wg sync.WaitGroup
		for i, q := range pending {
			wg.Go(func() { again[i] = s.greetOnce(ctx, q) })
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		var left []*peer
		for i, q := range pending {
			if again[i] {
				left = append(left, q)
			}
		}
		pending = left
		if len(pending) > 0 && !s.sleep(50*time.Millisecond) {
			return
		}
	}
	for _, q := range pending {
		s.log.Warn("peer does not list this node yet; going on", "peer", q.name)
	}
}

// greetOnce says hello to q for greetPeers and reports whether to say it
// again: q answered but does not list this node yet.
func (s *Store) greetOnce(ctx context.Context, q *peer) bool {
	h, err := s.greet(ctx, q)
	var re *remoteError
	switch {
	case ctx.Err() != nil:
		return false
	case errors.Is(err, ErrUnreachable): // gone or refusing: it will not send writes anyway
		return false
	case errors.As(err, &re): // refused: logged by helloAnswered
		return false
	case err != nil:
		s.log.Warn("bad hello reply", "peer", q.name, "err", err)
		return false
	}
	return !h.seesYou
}

// greet says hello to q and records its answer (negotiate.go).
func (s *Store) greet(ctx context.Context, q *peer) (helloReply, error) {
	req, err := encodeHello(helloRequest{name: s.self.name, incarnation: s.self.incarnation, partitions: numPartitions, protocol: protocolVersion})
	if err != nil {
		return helloReply{}, err
	}
	resp, err := s.callTimeout(ctx, q, req)
	if err != nil {
		return helloReply{}, err
	}
	h, err := decodeHelloReply(resp)
	s.helloAnswered(q, h, err)
	return h, err
}

// greetAgain says hello again to the peers that refused this node's hello
// (an operator may have upgraded them since), and to those whose protocol
// version it does not know: a peer that joined the view again (after a
// false suspicion or a partition) is a new peer to this node, and what a
// version adds is only sent once the version is known. Peers that do not
// answer lease requests are left for a later round: a frozen one would
// hold the round up for WriteTimeout. Like greetPeers, all at once.
func (s *Store) greetAgain(ctx context.Context, v *view) {
	var wg sync.WaitGroup
	for _, q := range v.peers {
		refused := q.version.refusal.Load()
		if (refused != nil && refused.hello || q.version.protocol.Load() == 0) && !q.silent.Load() {
			wg.Go(func() { _, _ = s.greet(ctx, q) })
		}
	}
	wg.Wait()
}

// poll asks the peers for their status. With all false, a peer whose
// last lease answer, from the last renewal round, carried the generation
// of the status it sent before is not asked: it is alive and its status
// is the same. An idle cluster then polls nobody, and one under load only
// the peers whose partitions changed. An owner whose last status said it
// did not hold one of its partitions yet is asked all the same: it is
// copying (a join, or re-replication after a loss), and an idle node
// renews its leases, which would carry the news, only every few seconds.
func (s *Store) poll(ctx context.Context, v *view, all bool) {
	req, _ := encodeStatusRequest()
	now := s.clock.Monotonic()
	since := now - s.leases.renewalPeriod() - s.cfg.ReadLease/2
	copying := copyingOwners(v)
	var wg sync.WaitGroup
	for _, q := range v.peers {
		if st := q.unchangedStatus(since, now); st != nil && !all && !copying[q] {
			q.status.Store(st)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.callTimeout(ctx, q, req)
			if errors.Is(err, transport.ErrUnreachable) && !errors.Is(err, transport.ErrNotSent) {
				// The connection broke under the call (a killed
				// process's connections break at once): a fresh dial
				// says whether anything still listens there
				// (peerRefused), or that the break was the link's.
				resp, err = s.callTimeout(ctx, q, req)
			}
			if err != nil {
				// Not a loss for ownerLost: this round counts q's
				// partitions as under-replicated without its status.
				s.log.Debug("status poll failed", "peer", q.name, "err", err)
				return
			}
			st, err := decodeStatusReply(resp)
			if err != nil {
				s.log.Warn("bad status reply", "peer", q.name, "err", err)
				return
			}
			st.at = s.clock.Monotonic()
			q.status.Store(st)
			q.answered()
		}()
	}
	wg.Wait()
}

// copyingOwners returns the peers that own a partition in v which their
// last status did not report ready.
func copyingOwners(v *view) map[*peer]bool {
	out := map[*peer]bool{}
	for pi := range v.owners {
		for _, q := range v.owners[pi] {
			if q.self || out[q] {
				continue
			}
			if st := q.status.Load(); st == nil || pi >= len(st.ready) || !st.ready[pi] {
				out[q] = true
			}
		}
	}
	return out
}

// fresh returns the status q reported in the current round, or nil.
func fresh(q *peer, since time.Duration) *peerStatus {
	st := q.status.Load()
	if st == nil || st.at < since {
		return nil
	}
	return st
}

// transfer carries out the round's transfer plans, transferWindow
// partitions at a time.
func (s *Store) transfer(ctx context.Context, plans []transferPlan) {
	if len(plans) == 0 {
		return
	}
	start := s.clock.Monotonic()
	before := s.stats.transferred.Load()
	next := make(chan transferPlan)
	var wg sync.WaitGroup
	for w := 0; w < min(transferWindow, len(plans)); w++ {
		wg.Go(func() {
			for plan := range next {
				if err := s.transferPartition(ctx, plan); err != nil && ctx.Err() == nil {
					s.log.Warn("state transfer of a partition failed; retrying next round", "partition", plan.partition, "err", err)
				}
			}
		})
	}
	for _, plan := range plans {
		select {
		case next <- plan:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if n := s.stats.transferred.Load() - before; n > 0 {
		s.log.Info("state transfer", "partitions", len(plans), "records", n, "took", (s.clock.Monotonic() - start).Round(time.Millisecond))
	}
}

// transferPartition makes a partition complete on this node as plan says:
// from the first complete owner that works, or by merging what every
// holder has.
func (s *Store) transferPartition(ctx context.Context, plan transferPlan) error {
	pi := plan.partition
	for _, q := range plan.owners {
		if err := s.copyPartition(ctx, q, pi, true); err != nil {
			s.log.Debug("copy from owner failed", "peer", q.name, "partition", pi, "err", err)
			continue
		}
		s.setReady(pi)
		return nil
	}
	for _, q := range plan.holders {
		if err := s.copyPartition(ctx, q, pi, false); err != nil {
			return err
		}
	}
	s.setReady(pi)
	return nil
}

// copyPartition copies partition pi from q in chunks, merging as it goes.
// With complete, q must hold the partition completely.
func (s *Store) copyPartition(ctx context.Context, q *peer, pi int, complete bool) error {
	after := ""
	for {
		req, err := encodeFetchRange(pi, after, s.cfg.TransferChunkBytes)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 4*s.cfg.WriteTimeout)
		resp, err := s.call(cctx, q, req)
		cancel()
		if err != nil {
			return err
		}
		chunk, err := decodeRangeReply(resp)
		if err != nil {
			return err
		}
		if complete && !chunk.ready {
			return errNotComplete
		}
		if err := s.applyRemote(chunk.records, "state transfer"); err != nil {
			return err
		}
		s.stats.transferred.Add(uint64(len(chunk.records)))
		if chunk.done || len(chunk.records) == 0 {
			return nil
		}
		after = chunk.records[len(chunk.records)-1].id
	}
}

// repair runs anti-entropy as the round's repair plans say, and clears the
// degraded mark of each peer whose exchanges all succeeded.
func (s *Store) repair(ctx context.Context, plans []repairPlan) {
	for _, plan := range plans {
		q := plan.peer
		exchanged, failed := 0, false
		for _, pi := range plan.partitions {
			n, err := s.exchange(ctx, q, pi, true)
			exchanged += n
			if err != nil {
				s.log.Debug("anti-entropy failed", "peer", q.name, "partition", pi, "err", err)
				failed = true
				break
			}
		}
		if exchanged > 0 {
			s.stats.repairs.Add(1)
			s.stats.repairedRecords.Add(uint64(exchanged))
			s.log.Debug("anti-entropy repaired", "peer", q.name, "records", exchanged)
		}
		if !failed && q.degraded.Load() {
			s.unfence(q)
		}
	}
}

// exchange compares the sessions of partition pi with q's by per-session
// digests, pushes this node's version of every session that differs and,
// with pull, fetches q's. It returns the number of records exchanged.
func (s *Store) exchange(ctx context.Context, q *peer, pi int, pull bool) (int, error) {
	mine := s.parts[pi].snapshot()
	n, _, err := s.exchangeRecords(ctx, q, pi, mine, pull)
	return n, err
}

// exchangeRecords is exchange with this node's records mine. It also
// reports whether q keeps what it holds of the partition: whether, when it
// answered, it held the partition completely as an owner (a leaving node
// owns nothing).
func (s *Store) exchangeRecords(ctx context.Context, q *peer, pi int, mine []*record, pull bool) (n int, keeps bool, err error) {
	req, err := encodeSummaryRequest(pi)
	if err != nil {
		return 0, false, err
	}
	resp, err := s.callTimeout(ctx, q, req)
	if err != nil {
		return 0, false, err
	}
	keeps, theirs, err := decodeSummaryReply(resp)
	if err != nil {
		return 0, false, err
	}
	byID := make(map[string]uint64, len(theirs))
	for _, e := range theirs {
		byID[e.id] = e.digest
	}
	var push []*record
	var fetch []string
	for _, r := range mine {
		d, ok := byID[r.id]
		delete(byID, r.id)
		if ok && d == r.digest() {
			continue
		}
		push = append(push, r)
		if ok {
			fetch = append(fetch, r.id)
		}
	}
	if pull {
		for id := range byID {
			fetch = append(fetch, id)
		}
	} else {
		fetch = nil
	}
	for len(fetch) > 0 {
		batch := fetch[:min(len(fetch), fetchBatch)]
		fetch = fetch[len(batch):]
		if err := s.pull(ctx, q, batch); err != nil {
			return n, false, err
		}
		n += len(batch)
	}
	for len(push) > 0 {
		batch := push[:min(len(push), fetchBatch)]
		push = push[len(batch):]
		msg, err := encodeRepair(batch...)
		if err != nil {
			return n, false, err
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		err = s.callAck(cctx, q, msg)
		cancel()
		if err != nil {
			return n, false, err
		}
		n += len(batch)
	}
	return n, keeps, nil
}

// pull fetches records by ID from q and merges them.
func (s *Store) pull(ctx context.Context, q *peer, ids []string) error {
	req, err := encodeFetch(ids)
	if err != nil {
		return err
	}
	resp, err := s.callTimeout(ctx, q, req)
	if err != nil {
		return err
	}
	rs, err := decodeRecordsReply(resp)
	if err != nil {
		return err
	}
	return s.applyRemote(rs, "repair")
}

// handOff pushes the records of each partition in plans to its owners,
// and drops those that did not change meanwhile where the plan allows it.
// Until then readers that find no complete owner still find the records
// here. It returns the number of records still held in partitions this
// node does not own.
func (s *Store) handOff(ctx context.Context, plans []handOffPlan) int {
	held := 0
	for _, plan := range plans {
		p := s.parts[plan.partition]
		mine := p.snapshot()
		// Drop only what every owner said it keeps: owners that are
		// leaving too may be handing the same records over at this moment
		// (a stop of the whole fleet), and each dropping its copy on the
		// strength of the others' would lose them all.
		pushed := len(plan.owners) > 0
		for _, q := range plan.owners {
			_, keeps, err := s.exchangeRecords(ctx, q, plan.partition, mine, false)
			if err != nil {
				s.log.Debug("hand-off failed", "peer", q.name, "partition", plan.partition, "err", err)
			}
			if !keeps {
				pushed = false
				break
			}
		}
		if pushed && plan.droppable {
			s.stats.handedOff.Add(uint64(p.dropUnchanged(mine)))
		}
		n, _ := p.stats()
		held += n
	}
	return held
}

// errNotComplete reports a peer that no longer holds a partition
// completely.
var errNotComplete = errors.New("peer no longer holds the partition completely")

// callTimeout calls q with the write timeout.
func (s *Store) callTimeout(ctx context.Context, q *peer, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	return s.call(ctx, q, req)
}
