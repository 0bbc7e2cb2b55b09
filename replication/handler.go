package replication

import (
	"errors"
	"fmt"
	"sort"
)

// handle answers one request from a peer. It runs on the transport's
// connection goroutines, concurrently for different connections: it only
// touches partitions under their locks and never calls the network.
func (s *Store) handle(req []byte) []byte {
	resp, err := s.dispatch(req)
	if err != nil {
		if errors.Is(err, errMalformed) {
			s.stats.rejected.Add(1)
			s.log.Warn("refused malformed request", "err", err)
		}
		return errorResponse(err)
	}
	return resp
}

func (s *Store) dispatch(req []byte) ([]byte, error) {
	if len(req) == 0 {
		return nil, fmt.Errorf("%w: empty request", errMalformed)
	}
	if s.closed() {
		return nil, ErrClosed
	}
	d := newDecoder(req[1:])
	defer d.release()
	switch req[0] {
	case msgHello:
		h := decodeHello(d)
		if err := d.done(); err != nil {
			return nil, err
		}
		if h.partitions != numPartitions {
			return nil, fmt.Errorf("peer uses %d partitions, this node %d", h.partitions, numPartitions)
		}
		return encodeHelloReply(helloReply{
			name:        s.self.name,
			incarnation: s.self.incarnation,
			seesYou:     s.view.Load().sees(h.name, h.incarnation),
			ready:       s.IsReady(),
		})

	case msgApply, msgRepair:
		rs := d.records()
		if err := d.done(); err != nil {
			return nil, err
		}
		if err := s.applyRecords(rs, req[0] == msgApply); err != nil {
			return nil, err
		}
		return []byte{respOK}, nil

	case msgGet:
		id := d.str(maxIDLen)
		if err := d.done(); err != nil {
			return nil, err
		}
		p := s.parts[partitionOf(id)]
		return encodeGetReply(s.authoritative(p), p.get(id))

	case msgLease:
		holder, grantor := decodeLeaseRequest(d)
		if err := d.done(); err != nil {
			return nil, err
		}
		return encodeLeaseReply(s.grantLease(holder, grantor))

	case msgStatus:
		if err := d.done(); err != nil {
			return nil, err
		}
		return encodeStatusReply(s.localStatus())

	case msgUpdate:
		u := decodeUpdate(d)
		if err := d.done(); err != nil {
			return nil, err
		}
		if u.deadline != 0 && s.now() > u.deadline {
			return nil, errUpdateTooLate
		}
		pi := partitionOf(u.id)
		if !s.view.Load().owns(pi) {
			return encodeUpdateReply(updateResult{outcome: updateNotReady})
		}
		return encodeUpdateReply(s.applyUpdate(pi, u))

	case msgUpdateCopy:
		expected, r := decodeUpdateReplica(d)
		if err := d.done(); err != nil {
			return nil, err
		}
		if err := s.checkRemote([]*record{r}); err != nil {
			return nil, err
		}
		if err := s.clock.Update(r.maxVersion().time); err != nil {
			s.stats.rejected.Add(1)
			return nil, fmt.Errorf("refuse record: %w", err)
		}
		if !s.applyUpdateReplica(partitionOf(r.id), expected, r) {
			return nil, errUpdateRefused
		}
		return []byte{respOK}, nil

	case msgLeaving:
		name, incarnation := decodeLeaving(d)
		if err := d.done(); err != nil {
			return nil, err
		}
		s.peerLeaving(name, incarnation)
		return []byte{respOK}, nil

	case msgSummary:
		pi := decodePartition(d)
		if err := d.done(); err != nil {
			return nil, err
		}
		p := s.parts[pi]
		rs := p.snapshot()
		entries := make([]summaryEntry, len(rs))
		for i, r := range rs {
			entries[i] = summaryEntry{id: r.id, digest: r.digest()}
		}
		return encodeSummaryReply(p.ready.Load(), entries)

	case msgFetch:
		ids := decodeIDs(d)
		if err := d.done(); err != nil {
			return nil, err
		}
		rs := make([]*record, 0, len(ids))
		for _, id := range ids {
			if r := s.parts[partitionOf(id)].get(id); r != nil {
				rs = append(rs, r)
			}
		}
		return encodeRecordsReply(rs)

	case msgFetchRange:
		n := d.arrayLen(3, 64)
		pi := decodePartition(d)
		after := d.str(maxIDLen)
		maxBytes := int(d.int64())
		d.skip(n - 3)
		if err := d.done(); err != nil {
			return nil, err
		}
		return encodeRangeReply(s.fetchRange(s.parts[pi], after, maxBytes))
	}
	return nil, fmt.Errorf("%w: unknown request type %d", errMalformed, req[0])
}

// applyRemote merges records from a peer that are not a write: state
// transfer, repair, hand-off.
func (s *Store) applyRemote(rs []*record) error { return s.applyRecords(rs, false) }

// applyRecords merges records from a peer; fromWrite says they are a write
// (which may report session events) rather than a copy. Records over the
// limits, or with versions too far ahead of the local clock, are refused,
// all of them, so that a write is applied whole or not at all.
func (s *Store) applyRecords(rs []*record, fromWrite bool) error {
	if err := s.checkRemote(rs); err != nil {
		return err
	}
	for _, r := range rs {
		if err := s.clock.Update(r.maxVersion().time); err != nil {
			s.stats.rejected.Add(1)
			return fmt.Errorf("refuse record: %w", err)
		}
	}
	now := s.now()
	for _, r := range rs {
		pi := partitionOf(r.id)
		out, old, _ := s.parts[pi].apply(r, now)
		s.sessionEvent(pi, old, out, fromWrite)
	}
	return nil
}

// fetchRange returns the records of p after the ID after, up to about
// maxBytes (at least one record).
func (s *Store) fetchRange(p *partition, after string, maxBytes int) rangeReply {
	maxBytes = min(max(maxBytes, 1), s.cfg.TransferChunkBytes)
	rs := p.snapshot()
	i := sort.Search(len(rs), func(i int) bool { return rs[i].id > after })
	out := rangeReply{ready: s.authoritative(p)}
	size := 0
	for ; i < len(rs); i++ {
		if size > 0 && size+rs[i].size() > maxBytes {
			break
		}
		size += rs[i].size()
		out.records = append(out.records, rs[i])
	}
	out.done = i == len(rs)
	return out
}

// localStatus reports this node's readiness, digest and record count for
// every partition.
func (s *Store) localStatus() *peerStatus {
	st := &peerStatus{
		ready:   make([]bool, numPartitions),
		digests: make([]uint64, numPartitions),
		counts:  make([]uint32, numPartitions),
	}
	for i, p := range s.parts {
		st.ready[i] = p.ready.Load()
		n, d := p.stats()
		st.digests[i], st.counts[i] = d, uint32(n)
	}
	return st
}
