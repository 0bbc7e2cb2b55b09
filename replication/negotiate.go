package replication

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/sessionmesh/sessionmesh/transport"
)

// This file is how a store speaks with peers of other builds and how it
// notices peers that refuse it.
//
// Versions. Every hello carries the highest protocol version its sender
// speaks (protocol.go), and so does its reply; a node of the first
// release sends none and is taken for protocolV1. A store records each
// peer's version and sends it only what that version knows. A request of
// a type the receiver does not know is answered with respUnsupported and
// the receiver's version, never with a malformed-message error, so a
// sender that did not know the version yet learns it and falls back. A
// peer whose version is below minProtocolVersion has its hello refused
// with an error that names both versions. Version 2 sends two things only
// to peers whose recorded version has them: the writer's name after the
// records of a write (write.go) and the reader's name after the ID of a
// read (read.go), which a version 1 decoder would refuse as trailing
// bytes. Its other additions are fields that version 1 decoders skip. A
// later version that adds a request type does the same. A peer whose
// version is not known yet (it joined the view again after a false
// suspicion) is greeted at the next maintenance round.
//
// Refusals. A peer that is alive but refuses this node (its transport
// refuses the handshake, transport.ErrHandshake, or its store refuses the
// hello) cannot receive this node's writes. The store logs it once per
// change, shows it in Peers, and, when the peer was already in the cluster
// when this node started, reports ErrPeerRefused in Health: the node that
// joins a cluster that refuses it is the one that must not become ready,
// so that a rollout of a bad build stops at its first node. A peer that
// joined later and refuses this node is the newcomer's problem, and this
// node stays ready for the users it serves.

// peerVersion is what a store knows of a peer's build. Its zero value is
// a peer not heard from yet.
type peerVersion struct {
	// protocol is the highest protocol version the peer speaks, as its
	// hello said; 0 until then.
	protocol atomic.Uint64
	// refusal is why the peer refuses this node, or nil.
	refusal atomic.Pointer[peerRefusal]
	// elder is set for peers that were members when this node started.
	elder atomic.Bool
}

// peerRefusal is a peer's refusal of this node.
type peerRefusal struct {
	reason string
	hello  bool // the store refused the hello (cleared by a hello), not the transport
}

// unsupportedError is a peer's answer to a request type it does not know.
type unsupportedError struct{ protocol uint64 }

func (e *unsupportedError) Error() string {
	return fmt.Sprintf("peer does not know this request type (it speaks protocol version %d, this node %d)", e.protocol, protocolVersion)
}

// unsupportedResponse is the answer to a request of an unknown type.
func unsupportedResponse() []byte {
	e := newEncoder(respUnsupported)
	e.uint64(protocolVersion)
	b, _ := e.finish()
	return b
}

// decodeUnsupported decodes a respUnsupported answer.
func decodeUnsupported(resp []byte) error {
	d := newDecoder(resp[1:])
	defer d.release()
	e := &unsupportedError{protocol: d.uint64()}
	if err := d.done(); err != nil {
		return err
	}
	return e
}

// call sends req to q and returns the response, noting on the way what the
// answer says about q: its protocol version, and whether its transport
// refuses this node. Every request to a peer goes through it.
func (s *Store) call(ctx context.Context, q *peer, req []byte) ([]byte, error) {
	resp, err := s.tr.Call(ctx, q.addr, req)
	switch {
	case errors.Is(err, transport.ErrRefused):
		s.peerRefused(q)
	case err == nil:
		s.peerAccepts(q)
		if len(resp) > 0 && resp[0] == respUnsupported {
			if u, ok := decodeUnsupported(resp).(*unsupportedError); ok {
				q.version.protocol.Store(u.protocol)
			}
		}
		if r := q.version.refusal.Load(); r != nil && !r.hello {
			s.setRefusal(q, nil)
		}
	case errors.Is(err, transport.ErrHandshake):
		s.setRefusal(q, &peerRefusal{reason: err.Error()})
	}
	return resp, err
}

// helloAnswered records q's answer to this node's hello: its version, or
// its refusal.
func (s *Store) helloAnswered(q *peer, h helloReply, err error) {
	var re *remoteError
	switch {
	case err == nil:
		q.version.protocol.Store(h.protocol)
		if r := q.version.refusal.Load(); r != nil && r.hello {
			s.setRefusal(q, nil)
		}
	case errors.As(err, &re):
		s.setRefusal(q, &peerRefusal{reason: "refuses this node's hello: " + re.msg, hello: true})
	}
}

// checkHello decides whether to accept a peer's hello: it must use the
// same partitions and speak a protocol version this build still speaks.
func checkHello(h helloRequest) error {
	switch {
	case h.partitions != numPartitions:
		return fmt.Errorf("peer uses %d partitions, this node %d", h.partitions, numPartitions)
	case h.protocol < minProtocolVersion:
		return fmt.Errorf("peer speaks protocol versions up to %d, this node %d to %d: upgrade it through the releases in between",
			h.protocol, minProtocolVersion, protocolVersion)
	}
	return nil
}

// setRefusal records that q refuses this node (r) or accepts it (nil),
// and logs the change.
func (s *Store) setRefusal(q *peer, r *peerRefusal) {
	prev := q.version.refusal.Swap(r)
	switch {
	case r != nil && (prev == nil || prev.reason != r.reason):
		s.log.Warn("peer refuses this node: writes cannot reach it", "peer", q.name, "addr", q.addr,
			"reason", r.reason, "not_ready", q.version.elder.Load())
	case r == nil && prev != nil:
		s.log.Info("peer accepts this node again", "peer", q.name)
	}
}

// refusalProblem returns the Health error for the peers of v that were
// members before this node started and refuse it, or nil.
func refusalProblem(v *view) error {
	var first *peer
	n := 0
	for _, q := range v.peers {
		if q.version.elder.Load() && q.version.refusal.Load() != nil {
			if first == nil {
				first = q
			}
			n++
		}
	}
	if first == nil {
		return nil
	}
	err := fmt.Errorf("%w: %s: %s", ErrPeerRefused, first.name, first.version.refusal.Load().reason)
	if n > 1 {
		err = fmt.Errorf("%w (and %d more peers)", err, n-1)
	}
	return err
}
