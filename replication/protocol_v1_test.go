package replication

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

// The frames in testdata/protocol-v1 were encoded by the first release
// (protocol version 1). This build must understand every one of them as
// that release meant it: a cluster rolls from it to this build and back
// with its nodes talking across versions the whole time (the upgrade
// scenario of examples/demo runs the real binaries; this test pins the
// bytes). Never regenerate them: they are what a released build sends.

func goldenV1(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "protocol-v1", name+".bin"))
	require.NoError(t, err)
	return b
}

func v1Version(ts, node uint64) version { return version{time: hlc.Timestamp(ts), node: node} }

// The records the frames carry.
func v1Live() *record {
	return &record{id: "s-live", created: 1700000000000, expires: 1700086400000, idleMs: 1800000, idleUntil: 1700001800000,
		attrs: []attr{{name: "old", deleted: true, version: v1Version(113, 8)},
			{name: "user", value: []byte("alice"), version: v1Version(111, 7)},
			{name: "visits", value: []byte{0x03}, version: v1Version(112, 7)}}}
}

func v1Dead() *record {
	return &record{id: "s-dead", created: 1700000000000, expires: 1700086400000, destroyed: true}
}

func v1Delta() *record {
	return &record{id: "s-live", attrs: []attr{{name: "visits", value: []byte{0x04}, version: v1Version(114, 7)}}}
}

func assertRecords(t *testing.T, want, got []*record) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := want[i], got[i]
		assert.Equal(t, []any{w.id, w.created, w.expires, w.idleMs, w.idleUntil, w.destroyed, w.renamed},
			[]any{g.id, g.created, g.expires, g.idleMs, g.idleUntil, g.destroyed, g.renamed}, "record %d", i)
		assert.Equal(t, w.attrs, g.attrs, "record %d", i)
	}
}

func TestProtocolV1_Requests(t *testing.T) {
	decode := func(name string) request {
		t.Helper()
		req, err := decodeRequest(goldenV1(t, name))
		require.NoError(t, err, name)
		return req
	}
	assert.Equal(t, helloRequest{name: "n1", incarnation: 42, partitions: numPartitions, protocol: protocolV1}, decode("hello"),
		"a hello without a version is version 1's")
	require.NoError(t, checkHello(decode("hello").(helloRequest)), "this build still speaks version 1")

	apply := decode("apply").(applyRequest)
	assert.True(t, apply.write)
	assertRecords(t, []*record{v1Live(), v1Dead()}, apply.records)
	repair := decode("repair").(applyRequest)
	assert.False(t, repair.write)
	assertRecords(t, []*record{v1Live()}, repair.records)

	assert.Equal(t, getRequest{id: "s-live"}, decode("get"))
	assert.Equal(t, statusRequest{}, decode("status"))
	assert.Equal(t, summaryRequest{partition: 17}, decode("summary"))
	assert.Equal(t, fetchRequest{ids: []string{"s-live", "s-dead"}}, decode("fetch"))
	assert.Equal(t, fetchRangeRequest{partition: 17, after: "s-a", maxBytes: 65536}, decode("fetch-range"))
	assert.Equal(t, leavingRequest{name: "n1", incarnation: 42}, decode("leaving"))
	assert.Equal(t, leaseRequest{holder: memberKey{name: "n1", incarnation: 42}, grantor: 43}, decode("lease"),
		"no owning hash and no send time: the grantor does not compare views or clocks with it")
	assert.Equal(t, updateRequest{id: "s-live", key: "visits", expected: v1Version(112, 7), value: []byte{0x04}, deadline: 1700000001000},
		decode("update"), "the wall-clock deadline of version 1 is kept, and honoured")
	uc := decode("update-copy").(updateCopyRequest)
	assert.Equal(t, v1Version(112, 7), uc.expected)
	assertRecords(t, []*record{v1Delta()}, []*record{uc.delta})
}

func TestProtocolV1_Replies(t *testing.T) {
	h, err := decodeHelloReply(goldenV1(t, "reply-hello"))
	require.NoError(t, err)
	assert.Equal(t, helloReply{name: "n2", incarnation: 43, seesYou: true, ready: true, protocol: protocolV1}, h)

	g, err := decodeGetReply(goldenV1(t, "reply-get"))
	require.NoError(t, err)
	assert.True(t, g.ready)
	assert.False(t, g.disowned, "the first release's owners and former owners answer alike")
	assertRecords(t, []*record{v1Live()}, []*record{g.r})

	l, err := decodeLeaseReply(goldenV1(t, "reply-lease"))
	require.NoError(t, err)
	assert.Equal(t, leaseReply{outcome: leaseGranted, epoch: 5, duration: 250 * time.Millisecond}, l)

	u, err := decodeUpdateReply(goldenV1(t, "reply-update"))
	require.NoError(t, err)
	assert.Equal(t, updateApplied, u.outcome)
	assertRecords(t, []*record{v1Delta()}, []*record{u.delta})

	rr, err := decodeRangeReply(goldenV1(t, "reply-range"))
	require.NoError(t, err)
	assert.True(t, rr.ready)
	assert.True(t, rr.done)
	assertRecords(t, []*record{v1Live(), v1Dead()}, rr.records)

	ready, entries, err := decodeSummaryReply(goldenV1(t, "reply-summary"))
	require.NoError(t, err)
	assert.True(t, ready)
	assert.Equal(t, []summaryEntry{{id: "s-live", digest: 0xfeedface}}, entries)

	rs, err := decodeRecordsReply(goldenV1(t, "reply-records"))
	require.NoError(t, err)
	assertRecords(t, []*record{v1Live()}, rs)

	st, err := decodeStatusReply(goldenV1(t, "reply-status"))
	require.NoError(t, err)
	require.Len(t, st.ready, numPartitions)
	assert.True(t, st.ready[3])
	assert.Equal(t, uint64(0xabc), st.digests[3])
	assert.Equal(t, uint32(2), st.counts[3])
	assert.False(t, st.ready[4])
}

// What this build adds to the messages version 1 also sends are fields
// appended at the end, which version 1's decoders skip: the encodings
// start with version 1's bytes, field for field.
func TestProtocolV1_NewFieldsAreAppended(t *testing.T) {
	hello, err := encodeHello(helloRequest{name: "n1", incarnation: 42, partitions: numPartitions, protocol: protocolVersion})
	require.NoError(t, err)
	old := goldenV1(t, "hello")
	// The array length grows (3 -> 4); everything after it is version 1's
	// fields, then the new one.
	assert.Equal(t, old[0], hello[0])
	assert.Equal(t, old[2:], hello[2:len(old)], "version 1's fields, unchanged, first")

	lease, err := encodeLeaseRequest(leaseRequest{holder: memberKey{name: "n1", incarnation: 42}, grantor: 43, owning: 9, sent: 10})
	require.NoError(t, err)
	old = goldenV1(t, "lease")
	assert.Equal(t, old[2:], lease[2:len(old)])
}
