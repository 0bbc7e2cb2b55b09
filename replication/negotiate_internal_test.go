package replication

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A request type this build does not know comes from a newer peer: it is
// answered with respUnsupported and this build's version, never with a
// malformed-message error, so the newer peer can fall back.
func TestNegotiate_UnknownRequestTypeIsUnsupported(t *testing.T) {
	s := &Store{log: slog.New(slog.DiscardHandler)}
	resp := s.handle([]byte{200, 0x90})
	require.NotEmpty(t, resp)
	assert.Equal(t, respUnsupported, resp[0])
	_, err := openResponse(resp)
	var u *unsupportedError
	require.ErrorAs(t, err, &u)
	assert.Equal(t, protocolVersion, u.protocol)
	assert.Zero(t, s.stats.rejected.Load(), "a newer peer is not hostile")
}

func TestNegotiate_Hello(t *testing.T) {
	b, err := encodeHello(helloRequest{name: "n1", incarnation: 7, partitions: numPartitions, protocol: protocolVersion})
	require.NoError(t, err)
	req, err := decodeRequest(b)
	require.NoError(t, err)
	assert.Equal(t, helloRequest{name: "n1", incarnation: 7, partitions: numPartitions, protocol: protocolVersion}, req)
	require.NoError(t, checkHello(req.(helloRequest)))

	tooOld := helloRequest{name: "n1", partitions: numPartitions, protocol: minProtocolVersion - 1}
	assert.ErrorContains(t, checkHello(tooOld), "upgrade it through the releases in between")
	assert.ErrorContains(t, checkHello(helloRequest{partitions: 7, protocol: protocolVersion}), "7 partitions")

	r, err := encodeHelloReply(helloReply{name: "n2", incarnation: 9, seesYou: true, ready: true, protocol: protocolVersion})
	require.NoError(t, err)
	h, err := decodeHelloReply(r)
	require.NoError(t, err)
	assert.Equal(t, helloReply{name: "n2", incarnation: 9, seesYou: true, ready: true, protocol: protocolVersion}, h)
}

// A write to a peer of protocol version 2 names its writer, and the peer
// answers whether it lists it; one to an older peer is the first release's
// bytes, and so is its answer.
func TestNegotiate_WriteNamesItsWriter(t *testing.T) {
	rec := &record{id: "s", created: 1, expires: 1 << 40}
	b, err := encodeWrite(memberKey{name: "n1", incarnation: 7}, rec)
	require.NoError(t, err)
	req, err := decodeRequest(b)
	require.NoError(t, err)
	assert.Equal(t, memberKey{name: "n1", incarnation: 7}, req.(applyRequest).from)
	assert.True(t, req.(applyRequest).write)

	old, err := encodeApply(rec)
	require.NoError(t, err)
	req, err = decodeRequest(old)
	require.NoError(t, err)
	assert.Zero(t, req.(applyRequest).from, "a write of the first release names nobody")

	listed, err := encodeWriteAck(writeAck{})
	require.NoError(t, err)
	assert.Equal(t, []byte{respOK}, listed, "the common answer is the first release's acknowledgement")
	ack, err := decodeWriteAck(listed)
	require.NoError(t, err)
	assert.Zero(t, ack)
	unlisted, err := encodeWriteAck(writeAck{notListed: true, fence: time.Second})
	require.NoError(t, err)
	_, err = decodeWriteAck(unlisted)
	require.ErrorIs(t, err, errNotListed)
	require.ErrorIs(t, err, ErrUnreachable, "callers treat it as a failed write")
	fenced, err := encodeWriteAck(writeAck{fence: 300 * time.Millisecond})
	require.NoError(t, err)
	ack, err = decodeWriteAck(fenced)
	require.NoError(t, err)
	assert.Equal(t, writeAck{fence: 300 * time.Millisecond}, ack)
	outranked, err := encodeWriteAck(writeAck{outranked: version{time: 1 << 50, node: 9}})
	require.NoError(t, err)
	ack, err = decodeWriteAck(outranked)
	require.NoError(t, err)
	assert.Equal(t, writeAck{outranked: version{time: 1 << 50, node: 9}}, ack, "protocol 3: the version that won travels too")
}

// A read to a peer of protocol version 2 names its reader; a node that
// does not list the reader answers with its copy, but not as an
// authoritative owner.
func TestNegotiate_ReadNamesItsReader(t *testing.T) {
	b, err := encodeGetFrom("s1", memberKey{name: "n2", incarnation: 3})
	require.NoError(t, err)
	req, err := decodeRequest(b)
	require.NoError(t, err)
	assert.Equal(t, getRequest{id: "s1", from: memberKey{name: "n2", incarnation: 3}}, req)
	old, err := encodeGet("s1")
	require.NoError(t, err)
	req, err = decodeRequest(old)
	require.NoError(t, err)
	assert.Equal(t, getRequest{id: "s1"}, req, "a read of the first release names nobody")
}
