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
		switch {
		case errors.Is(err, errUnknownRequest): // a newer peer: it falls back
			s.log.Debug("answered a request of an unknown type", "err", err)
			return unsupportedResponse()
		case errors.Is(err, errMalformed):
			s.stats.rejected.Add(1)
			s.log.Warn("refused malformed request", "err", err)
		}
		return errorResponse(err)
	}
	return resp
}

// dispatch decodes a request and runs it.
func (s *Store) dispatch(frame []byte) ([]byte, error) {
	if s.closed() {
		return nil, ErrClosed
	}
	req, err := decodeRequest(frame)
	if err != nil {
		return nil, err
	}
	switch r := req.(type) {
	case helloRequest:
		if err := checkHello(r); err != nil {
			return nil, err
		}
		v := s.view.Load()
		if q := v.byName[r.name]; q != nil && q.incarnation == r.incarnation {
			q.version.protocol.Store(r.protocol)
		}
		return encodeHelloReply(helloReply{
			name:        s.self.name,
			incarnation: s.self.incarnation,
			seesYou:     v.sees(r.name, r.incarnation),
			ready:       s.IsReady(),
			protocol:    protocolVersion,
		})

	case applyRequest:
		outranked, err := s.applyRecords(r.records, r.write, "apply")
		if err != nil {
			return nil, err
		}
		if r.from.name != "" { // the writer wants to know whether this node counts it
			v := s.view.Load()
			if q := v.byName[r.from.name]; q == nil || q.version.protocol.Load() < protocolV3 {
				outranked = version{}
			}
			return encodeWriteAck(writeAck{notListed: !v.listsSender(r.from), fence: s.fenceRemaining(), outranked: outranked})
		}
		return []byte{respOK}, nil

	case getRequest:
		pi := partitionOf(r.id)
		p := s.parts[pi]
		// A node that does not list the reader answers from another view
		// of the owners (one that declared every other node dead is alone
		// in its view, and authoritative there): its copy is true, but no
		// proof that the session does not exist or has nothing newer. Nor
		// is the copy of a node whose clock is far ahead: it has dropped
		// the records its clock says have expired.
		v := s.view.Load()
		ready := v.listsSender(r.from) && s.authoritative(p) && s.clockProblem.Load() == nil
		return encodeGetReply(getReply{ready: ready, disowned: !v.owns(pi), behind: s.leases.missedWrites.Load(),
			minority: s.leases.inMinority(), r: p.get(r.id)})

	case leaseRequest:
		return encodeLeaseReply(s.grantLease(r))

	case statusRequest:
		return encodeStatusReply(s.localStatus())

	case updateRequest:
		if s.updateLate(r) {
			return nil, errUpdateTooLate
		}
		pi := partitionOf(r.id)
		v := s.view.Load()
		if !v.owns(pi) || !v.listsSender(r.from) {
			// Not an owner, or one whose view of the members is not the
			// caller's: what it holds may be another view's (a node that
			// declared everyone else dead answers for itself alone), so
			// the caller asks the next owner.
			return encodeUpdateReply(updateResult{outcome: updateNotReady})
		}
		return encodeUpdateReply(s.applyUpdate(pi, r))

	case updateCopyRequest:
		if err := s.admit("update copy", r.delta); err != nil {
			return nil, err
		}
		if !s.view.Load().listsSender(r.from) {
			return nil, errCopyNotListed
		}
		if r.base != nil {
			if _, err := s.applyRecords([]*record{r.base}, true, "update copy"); err != nil {
				return nil, err
			}
		}
		if !s.applyUpdateReplica(partitionOf(r.delta.id), r.expected, r.delta) {
			return nil, errUpdateRefused
		}
		return []byte{respOK}, nil

	case leavingRequest:
		s.peerLeaving(r.name, r.incarnation)
		return []byte{respOK}, nil

	case summaryRequest:
		p := s.parts[r.partition]
		rs := p.snapshot()
		entries := make([]summaryEntry, len(rs))
		for i, rec := range rs {
			entries[i] = summaryEntry{id: rec.id, digest: rec.digest()}
		}
		return encodeSummaryReply(p.ready.Load(), entries)

	case fetchRequest:
		rs := make([]*record, 0, len(r.ids))
		for _, id := range r.ids {
			if rec := s.parts[partitionOf(id)].get(id); rec != nil {
				rs = append(rs, rec)
			}
		}
		return encodeRecordsReply(rs)

	case fetchRangeRequest:
		return encodeRangeReply(s.fetchRange(s.parts[r.partition], r.after, r.maxBytes))
	}
	return nil, fmt.Errorf("%w: request %T has no handler", errMalformed, req)
}

// updateLate reports whether update request r arrived after its caller
// stopped waiting, as far as this node can tell on its monotonic clock.
// When it cannot tell (no estimate of the caller's clock yet), it takes
// the request: a caller's first update seldom meets a healed partition.
func (s *Store) updateLate(r updateRequest) bool {
	if late, ok := s.peerClocks.lateBy(r.from, r.sent, r.budget, int64(s.clock.Monotonic())); ok {
		return late > 0
	}
	return r.sent == 0 && r.deadline != 0 && s.now() > r.deadline // an older caller
}

// applyRemote merges records from a peer that are not a write: state
// transfer, repair, hand-off (path says which, for logs).
func (s *Store) applyRemote(rs []*record, path string) error {
	_, err := s.applyRecords(rs, false, path)
	return err
}

// applyRecords admits records from a peer and merges them; fromWrite says
// they are a write (which may report session events) rather than a copy.
// It returns the newest version this node held of an attribute the records
// set, where it won over theirs (see rewrite).
func (s *Store) applyRecords(rs []*record, fromWrite bool, path string) (outranked version, err error) {
	if err := s.admit(path, rs...); err != nil {
		return outranked, err
	}
	now := s.now()
	for _, r := range rs {
		pi := partitionOf(r.id)
		out, old, _ := s.parts[pi].apply(r, now)
		s.sessionEvent(pi, old, out, fromWrite)
		outranked = newest(outranked, outrankedBy(old, r))
	}
	return outranked, nil
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
		gen:     s.statusGen(),
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
