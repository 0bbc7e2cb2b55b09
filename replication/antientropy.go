package replication

import (
	"context"
	"fmt"
)

// fetchBatch is the number of records asked for in one fetch during repair.
const fetchBatch = 512

// antiEntropy repairs differences between replicas. Every
// AntiEntropyInterval it repairs with a random healthy peer, and with every
// degraded peer that answers again (which makes that peer healthy). A
// repair compares the per-partition digests of both nodes and, for each
// partition that differs, the per-session digests; it then pulls the
// sessions that differ and pushes its own, so one round repairs both sides.
// It heals writes missed while a peer was slow, unreachable or not yet
// known, without copying whole partitions.
func (s *Store) antiEntropy() {
	defer s.wg.Done()
	select {
	case <-s.readyCh:
	case <-s.done:
		return
	}
	for s.sleep(s.cfg.AntiEntropyInterval) {
		for _, q := range s.peers.Load().list {
			if q.degraded.Load() {
				s.repairDegraded(q)
			}
		}
		if q := s.randomPeer(func(q *peer) bool { return !q.degraded.Load() }); q != nil {
			if _, err := s.repairWith(s.ctx, q); err != nil && s.ctx.Err() == nil {
				s.log.Debug("anti-entropy round failed", "peer", q.name, "err", err)
			}
		}
	}
}

// repairDegraded repairs a degraded peer and marks it healthy when the
// repair completes in time.
func (s *Store) repairDegraded(q *peer) {
	ctx, cancel := context.WithTimeout(s.ctx, 4*s.cfg.WriteTimeout)
	defer cancel()
	n, err := s.repairWith(ctx, q)
	if err != nil {
		s.log.Debug("degraded peer still not repaired", "peer", q.name, "err", err)
		return
	}
	q.degraded.Store(false)
	s.log.Info("degraded peer repaired; waiting for its acknowledgements again", "peer", q.name, "records", n)
}

// repairWith runs one anti-entropy round with q and returns the number of
// records exchanged.
func (s *Store) repairWith(ctx context.Context, q *peer) (int, error) {
	req, _ := encodeDigestsRequest()
	resp, err := s.callTimeout(ctx, q, req)
	if err != nil {
		return 0, err
	}
	ready, digests, err := decodeDigestsReply(resp)
	if err != nil {
		return 0, err
	}
	exchanged := 0
	for pi, p := range s.parts {
		if !ready[pi] || !p.ready.Load() {
			continue
		}
		if _, d := p.stats(); d == digests[pi] {
			continue
		}
		n, err := s.repairPartition(ctx, q, pi)
		exchanged += n
		if err != nil {
			return exchanged, fmt.Errorf("repair partition %d: %w", pi, err)
		}
	}
	if exchanged > 0 {
		s.stats.repairs.Add(1)
		s.stats.repairedRecords.Add(uint64(exchanged))
		s.log.Debug("anti-entropy repaired", "peer", q.name, "records", exchanged)
	}
	return exchanged, nil
}

// repairPartition exchanges the sessions of one partition whose digests
// differ between this node and q.
func (s *Store) repairPartition(ctx context.Context, q *peer, pi int) (int, error) {
	req, err := encodeSummaryRequest(pi)
	if err != nil {
		return 0, err
	}
	resp, err := s.callTimeout(ctx, q, req)
	if err != nil {
		return 0, err
	}
	ready, theirs, err := decodeSummaryReply(resp)
	if err != nil {
		return 0, err
	}
	if !ready {
		return 0, nil
	}
	mine := s.parts[pi].snapshot()
	byID := make(map[string]uint64, len(theirs))
	for _, e := range theirs {
		byID[e.id] = e.digest
	}
	var push []*record
	var pull []string
	for _, r := range mine {
		d, ok := byID[r.id]
		if ok && d == r.digest() {
			delete(byID, r.id)
			continue
		}
		push = append(push, r)
		if ok {
			pull = append(pull, r.id)
			delete(byID, r.id)
		}
	}
	for id := range byID {
		pull = append(pull, id)
	}
	n := 0
	for len(pull) > 0 {
		batch := pull[:min(len(pull), fetchBatch)]
		pull = pull[len(batch):]
		if err := s.pull(ctx, q, batch); err != nil {
			return n, err
		}
		n += len(batch)
	}
	for len(push) > 0 {
		batch := push[:min(len(push), fetchBatch)]
		push = push[len(batch):]
		msg, err := encodeApply(batch...)
		if err != nil {
			return n, err
		}
		resp, err := s.callTimeout(ctx, q, msg)
		if err == nil {
			err = decodeAckReply(resp)
		}
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
	return s.applyRemote(rs)
}

// callTimeout calls q with the write timeout.
func (s *Store) callTimeout(ctx context.Context, q *peer, req []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
	defer cancel()
	return s.tr.Call(ctx, q.addr, req)
}
