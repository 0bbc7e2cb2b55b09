package replication

import (
	"context"
	"errors"
	"time"
)

// helloTimeout bounds how long a joining node waits for a peer to see it
// as a member before it copies the peer's sessions anyway.
const helloTimeout = 5 * time.Second

// transferWindow is the number of partitions copied at once.
const transferWindow = 4

// catchUp brings a new node up to date, then closes Ready.
//
// The node first waits until it has joined the cluster, then until every
// peer sees it as a member (from then on their writes are sent to it too),
// then copies every partition from a ready peer, in chunks, merging as it
// goes. Writes that arrive meanwhile are merged as well: the merge is a
// CRDT, so a write and a copy of the same session combine correctly in any
// order, and no node ever waits for another's transfer (two nodes that
// start together are both not ready, find no ready peer, and both become
// ready at once with what they have).
func (s *Store) catchUp() {
	defer s.wg.Done()
	select {
	case <-s.cfg.Membership.Settled():
	case <-s.done:
		return
	}
	s.refreshPeers()
	ctx := s.ctx
	for attempt := 0; ; attempt++ {
		src := s.greetPeers(ctx)
		if ctx.Err() != nil {
			return
		}
		if src == nil {
			break // nobody holds more than this node
		}
		start := time.Now()
		n, err := s.copyFrom(ctx, src)
		if err == nil {
			s.log.Info("caught up", "from", src.name, "records", n, "took", time.Since(start).Round(time.Millisecond))
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("state transfer failed; retrying", "from", src.name, "err", err)
		if !s.sleep(min(time.Duration(attempt+1)*100*time.Millisecond, 2*time.Second)) {
			return
		}
	}
	for _, p := range s.parts {
		p.ready.Store(true)
	}
	close(s.readyCh)
	s.log.Info("store ready", "sessions", s.Stats().Sessions)
}

// greetPeers says hello to every peer until each sees this node (or
// helloTimeout passes) and returns a ready peer to copy from, or nil when
// no peer is ready.
func (s *Store) greetPeers(ctx context.Context) *peer {
	req, err := encodeHello(helloMsg{name: s.self.Name, incarnation: s.self.Incarnation, partitions: numPartitions})
	if err != nil {
		s.log.Error("encode hello", "err", err)
		return nil
	}
	deadline := time.Now().Add(helloTimeout)
	pending := map[*peer]bool{}
	for _, q := range s.peers.Load().list {
		pending[q] = true
	}
	var ready []*peer
	for len(pending) > 0 && time.Now().Before(deadline) {
		for q := range pending {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.WriteTimeout)
			resp, err := s.tr.Call(cctx, q.addr, req)
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				if errors.Is(err, ErrUnreachable) {
					delete(pending, q) // gone: it will not send us writes anyway
				}
				continue
			}
			h, err := decodeHelloReply(resp)
			if err != nil {
				s.log.Warn("bad hello reply", "peer", q.name, "err", err)
				delete(pending, q)
				continue
			}
			q.ready.Store(h.ready)
			if h.seesYou {
				delete(pending, q)
				if h.ready {
					ready = append(ready, q)
				}
			}
		}
		if len(pending) > 0 && !s.sleep(50*time.Millisecond) {
			return nil
		}
	}
	for q := range pending {
		s.log.Warn("peer does not list this node yet; copying anyway", "peer", q.name)
		if q.ready.Load() {
			ready = append(ready, q)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	return ready[0]
}

// copyFrom copies every partition from src, transferWindow partitions at a
// time, and returns the number of records received.
func (s *Store) copyFrom(ctx context.Context, src *peer) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	errs := make(chan error, transferWindow)
	counts := make(chan int, transferWindow)
	for w := 0; w < transferWindow; w++ {
		go func() {
			total := 0
			var err error
			for pi := range next {
				var n int
				if n, err = s.copyPartition(ctx, src, pi); err != nil {
					cancel()
					break
				}
				total += n
			}
			for range next { // drain after an error so the feeder finishes
			}
			counts <- total
			errs <- err
		}()
	}
feed:
	for pi := range s.parts {
		select {
		case next <- pi:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	total := 0
	var first error
	for w := 0; w < transferWindow; w++ {
		total += <-counts
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return total, first
}

// copyPartition copies one partition from src in chunks and marks it ready.
func (s *Store) copyPartition(ctx context.Context, src *peer, pi int) (int, error) {
	p := s.parts[pi]
	after, n := "", 0
	for {
		req, err := encodeFetchRange(pi, after, s.cfg.TransferChunkBytes)
		if err != nil {
			return n, err
		}
		cctx, cancel := context.WithTimeout(ctx, 4*s.cfg.WriteTimeout)
		resp, err := s.tr.Call(cctx, src.addr, req)
		cancel()
		if err != nil {
			return n, err
		}
		chunk, err := decodeRangeReply(resp)
		if err != nil {
			return n, err
		}
		if !chunk.ready {
			return n, errors.New("source is not ready")
		}
		if err := s.applyRemote(chunk.records); err != nil {
			return n, err
		}
		n += len(chunk.records)
		if chunk.done || len(chunk.records) == 0 {
			p.ready.Store(true)
			return n, nil
		}
		after = chunk.records[len(chunk.records)-1].id
	}
}
