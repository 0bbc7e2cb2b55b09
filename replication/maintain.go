package replication

import (
	"context"
	"errors"
	"sync"
	"time"
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
//     it completely as an owner, its digest and its record count.
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
	s.repeat(s.cfg.AntiEntropyInterval, s.kick, func() { s.round(s.ctx) })
}

// round runs one round of maintenance.
func (s *Store) round(ctx context.Context) {
	v := s.view.Load()
	start := s.clock.Monotonic()
	s.poll(ctx, v)
	s.transfer(ctx, v, start)
	s.resync(ctx, v)
	if s.allOwnedReady(v) {
		s.readyOnce.Do(func() {
			close(s.readyCh)
			s.log.Info("store ready", "mode", s.cfg.Mode, "sessions", s.Stats().Sessions)
		})
	}
	s.repairOwners(ctx, v, start)
	s.handOff(ctx, v, start)
	s.countUnderReplicated(v, start)
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
// old owners only.
func (s *Store) greetPeers(ctx context.Context) {
	req, err := encodeHello(helloRequest{name: s.self.name, incarnation: s.self.incarnation, partitions: numPartitions})
	if err != nil {
		s.log.Error("encode hello", "err", err)
		return
	}
	deadline := s.clock.Monotonic() + helloTimeout
	pending := map[*peer]bool{}
	for _, q := range s.view.Load().peers {
		pending[q] = true
	}
	for len(pending) > 0 && s.clock.Monotonic() < deadline {
		for q := range pending {
			resp, err := s.callTimeout(ctx, q, req)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				if errors.Is(err, ErrUnreachable) {
					delete(pending, q) // gone: it will not send writes anyway
				}
				continue
			}
			h, err := decodeHelloReply(resp)
			if err != nil {
				s.log.Warn("bad hello reply", "peer", q.name, "err", err)
				delete(pending, q)
				continue
			}
			if h.seesYou {
				delete(pending, q)
			}
		}
		if len(pending) > 0 && !s.sleep(50*time.Millisecond) {
			return
		}
	}
	for q := range pending {
		s.log.Warn("peer does not list this node yet; going on", "peer", q.name)
	}
}

// poll asks every peer for its status.
func (s *Store) poll(ctx context.Context, v *view) {
	req, _ := encodeStatusRequest()
	var wg sync.WaitGroup
	for _, q := range v.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := s.callTimeout(ctx, q, req)
			if err != nil {
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
		}()
	}
	wg.Wait()
}

// fresh returns the status q reported in the current round, or nil.
func fresh(q *peer, since time.Duration) *peerStatus {
	st := q.status.Load()
	if st == nil || st.at < since {
		return nil
	}
	return st
}

// transfer copies the partitions this node owns but does not hold
// completely, transferWindow at a time.
func (s *Store) transfer(ctx context.Context, v *view, since time.Duration) {
	var todo []int
	for i, p := range s.parts {
		if v.owns(i) && !p.ready.Load() {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return
	}
	start := s.clock.Monotonic()
	before := s.stats.transferred.Load()
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(transferWindow, len(todo)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pi := range next {
				if err := s.transferPartition(ctx, v, pi, since); err != nil && ctx.Err() == nil {
					s.log.Warn("state transfer of a partition failed; retrying next round", "partition", pi, "err", err)
				}
			}
		}()
	}
	for _, pi := range todo {
		select {
		case next <- pi:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
	if n := s.stats.transferred.Load() - before; n > 0 {
		s.log.Info("state transfer", "partitions", len(todo), "records", n, "took", (s.clock.Monotonic() - start).Round(time.Millisecond))
	}
}

// transferPartition makes partition pi complete on this node.
func (s *Store) transferPartition(ctx context.Context, v *view, pi int, since time.Duration) error {
	var holders []*peer
	for _, q := range v.owners[pi] {
		if st := fresh(q, since); !q.self && st != nil && st.ready[pi] {
			if err := s.copyPartition(ctx, q, pi, true); err != nil {
				s.log.Debug("copy from owner failed", "peer", q.name, "partition", pi, "err", err)
				continue
			}
			s.setReady(pi)
			return nil
		}
	}
	// No owner holds it completely: a rebalance moved every copy, or the
	// cluster is starting. Merge what every peer holds.
	for _, q := range v.peers {
		if st := fresh(q, since); st != nil && st.counts[pi] > 0 {
			holders = append(holders, q)
		}
	}
	for _, q := range holders {
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
		resp, err := s.tr.Call(cctx, q.addr, req)
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

// repairOwners runs anti-entropy with every peer that answered this
// round's poll, and clears the degraded mark of those it fully repaired.
func (s *Store) repairOwners(ctx context.Context, v *view, since time.Duration) {
	for _, q := range v.peers {
		st := fresh(q, since)
		if st == nil {
			continue
		}
		exchanged, failed := 0, false
		for pi, p := range s.parts {
			if !p.ready.Load() || !st.ready[pi] {
				continue
			}
			if _, d := p.stats(); d == st.digests[pi] {
				continue
			}
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
	return s.exchangeRecords(ctx, q, pi, mine, pull)
}

func (s *Store) exchangeRecords(ctx context.Context, q *peer, pi int, mine []*record, pull bool) (int, error) {
	req, err := encodeSummaryRequest(pi)
	if err != nil {
		return 0, err
	}
	resp, err := s.callTimeout(ctx, q, req)
	if err != nil {
		return 0, err
	}
	_, theirs, err := decodeSummaryReply(resp)
	if err != nil {
		return 0, err
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
	n := 0
	for len(fetch) > 0 {
		batch := fetch[:min(len(fetch), fetchBatch)]
		fetch = fetch[len(batch):]
		if err := s.pull(ctx, q, batch); err != nil {
			return n, err
		}
		n += len(batch)
	}
	for len(push) > 0 {
		batch := push[:min(len(push), fetchBatch)]
		push = push[len(batch):]
		msg, err := encodeRepair(batch...)
		if err != nil {
			return n, err
		}
		cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
		err = s.callAck(cctx, q, msg)
		cancel()
		if err != nil {
			return n, err
		}
		n += len(batch)
	}
	return n, nil
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

// handOff pushes the records of partitions this node holds but does not
// own to their owners, and drops those that did not change meanwhile once
// every owner reports (in a status polled since since) that it holds the
// partition completely. Until then readers that find no complete owner
// still find the records here. It returns the number of records still held
// in partitions this node does not own.
func (s *Store) handOff(ctx context.Context, v *view, since time.Duration) int {
	held := 0
	for pi, p := range s.parts {
		if v.owns(pi) {
			continue
		}
		mine := p.snapshot()
		if len(mine) == 0 {
			continue
		}
		owners := v.targets(pi)
		pushed, complete := len(owners) > 0, true
		for _, q := range owners {
			if _, err := s.exchangeRecords(ctx, q, pi, mine, false); err != nil {
				s.log.Debug("hand-off failed", "peer", q.name, "partition", pi, "err", err)
				pushed = false
				break
			}
			if st := fresh(q, since); st == nil || !st.ready[pi] {
				complete = false
			}
		}
		if pushed && complete {
			n := p.dropUnchanged(mine)
			s.stats.handedOff.Add(uint64(n))
		}
		n, _ := p.stats()
		held += n
	}
	return held
}

// countUnderReplicated counts the partitions that have fewer ready copies
// than their owners, by this round's statuses.
func (s *Store) countUnderReplicated(v *view, since time.Duration) {
	under := 0
	for pi := range s.parts {
		for _, q := range v.owners[pi] {
			var ready bool
			if q.self {
				ready = s.parts[pi].ready.Load()
			} else if st := fresh(q, since); st != nil {
				ready = st.ready[pi]
			}
			if !ready {
				under++
				break
			}
		}
	}
	s.replicated.Store(int32(under))
	if s.view.Load() != v {
		// The membership changed during the round: this count is of the
		// old one. rebuildView stores -1 again after the new view, so
		// either it or this line has the last word.
		s.replicated.Store(-1)
	}
}

// errNotComplete reports a peer that no longer holds a partition
// completely.
var errNotComplete = errors.New("peer no longer holds the partition completely")

// callTimeout calls q with the write timeout.
func (s *Store) callTimeout(ctx context.Context, q *peer, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	return s.tr.Call(ctx, q.addr, req)
}
