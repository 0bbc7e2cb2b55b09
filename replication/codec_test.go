package replication

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func TestCodec_RecordRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rs := rapid.SliceOfN(genRecord(), 0, 5).Draw(t, "records")
		msg, err := encodeRecordsReply(rs)
		require.NoError(t, err)
		got, err := decodeRecordsReply(msg)
		require.NoError(t, err)
		require.Len(t, got, len(rs))
		for i := range rs {
			requireSame(t, rs[i], got[i])
		}
	})
}

func TestCodec_ApplyRoundTrip(t *testing.T) {
	r := &record{id: "abc", created: 1, expires: 2, idleMs: 3, idleUntil: 4,
		attrs: []attr{{name: "a", value: []byte("v"), version: version{7, 8}}, {name: "b", version: version{9, 1}, deleted: true}}}
	msg, err := encodeApply(r)
	require.NoError(t, err)
	require.Equal(t, msgApply, msg[0])
	d := newDecoder(msg[1:])
	defer d.release()
	got := d.records()
	require.NoError(t, d.done())
	require.Len(t, got, 1)
	requireSame(t, r, got[0])
}

func TestCodec_DecodeNormalisesAttributes(t *testing.T) {
	r := &record{id: "s", attrs: []attr{
		{name: "b", value: []byte("1"), version: version{1, 1}},
		{name: "a", value: []byte("2"), version: version{1, 1}},
		{name: "b", value: []byte("3"), version: version{2, 1}},
	}}
	msg, err := encodeRecordsReply([]*record{r})
	require.NoError(t, err)
	got, err := decodeRecordsReply(msg)
	require.NoError(t, err)
	require.Len(t, got[0].attrs, 2)
	assert.Equal(t, "a", got[0].attrs[0].name)
	assert.Equal(t, []byte("3"), got[0].attrs[1].value, "the newer duplicate wins")
}

func TestCodec_RejectsHugeCountsWithoutAllocating(t *testing.T) {
	// An array header claiming 2^32-1 records, then nothing.
	msg := []byte{respOK, 0xdd, 0xff, 0xff, 0xff, 0xff}
	_, err := decodeRecordsReply(msg)
	require.ErrorIs(t, err, errMalformed)
	// A string claiming 4 GiB.
	_, err = decodeGetReply([]byte{respOK, 0x92, 0xc3, 0x97, 0xdb, 0xff, 0xff, 0xff, 0xff})
	require.ErrorIs(t, err, errMalformed)
}

func TestCodec_GetReplyRoundTrip(t *testing.T) {
	r := &record{id: "s", attrs: []attr{{name: "a", value: []byte("b"), version: version{1, 1}}}}
	msg, err := encodeGetReply(getReply{disowned: true, behind: true, r: r})
	require.NoError(t, err)
	g, err := decodeGetReply(msg)
	require.NoError(t, err)
	assert.False(t, g.ready)
	assert.True(t, g.disowned)
	assert.True(t, g.behind)
	requireSame(t, r, g.r)

	// A build from before the behind field: [ready, no record, disowned].
	g, err = decodeGetReply([]byte{respOK, 0x93, 0xc2, 0xc0, 0xc2})
	require.NoError(t, err)
	assert.False(t, g.behind, "an older replier says nothing of missed writes")
}

func TestCodec_RemoteError(t *testing.T) {
	_, err := decodeRecordsReply(errorResponse(assert.AnError))
	var re *remoteError
	require.ErrorAs(t, err, &re)
	assert.Contains(t, err.Error(), assert.AnError.Error())
}

func TestDecodeRequest_RoundTrip(t *testing.T) {
	must := func(b []byte, err error) []byte {
		require.NoError(t, err)
		return b
	}
	r := &record{id: "s", created: 1, expires: 2, attrs: []attr{{name: "a", value: []byte("v"), version: version{7, 8}}}}
	for _, tc := range []struct {
		frame []byte
		want  request
	}{
		{must(encodeHello(helloRequest{name: "n1", incarnation: 7, partitions: numPartitions})), helloRequest{name: "n1", incarnation: 7, partitions: numPartitions}},
		{must(encodeApply(r)), applyRequest{records: []*record{r}, write: true}},
		{must(encodeRepair(r)), applyRequest{records: []*record{r}}},
		{must(encodeGet("s")), getRequest{id: "s"}},
		{must(encodeStatusRequest()), statusRequest{}},
		{must(encodeSummaryRequest(9)), summaryRequest{partition: 9}},
		{must(encodeFetch([]string{"a", "b"})), fetchRequest{ids: []string{"a", "b"}}},
		{must(encodeFetchRange(3, "after", 4096)), fetchRangeRequest{partition: 3, after: "after", maxBytes: 4096}},
		{must(encodeLeaving("n2", 5)), leavingRequest{name: "n2", incarnation: 5}},
		{must(encodeLeaseRequest(leaseRequest{holder: memberKey{"n1", 7}, grantor: 9, owning: 5})), leaseRequest{holder: memberKey{"n1", 7}, grantor: 9, owning: 5}},
		{must(encodeUpdate(updateRequest{id: "s", key: "visits", expected: version{time: 5, node: 6}, value: []byte("3"), deadline: 1234})),
			updateRequest{id: "s", key: "visits", expected: version{time: 5, node: 6}, value: []byte("3"), deadline: 1234}},
		{must(encodeUpdate(updateRequest{id: "s", key: "visits", value: []byte("3"), atLeast: 99})),
			updateRequest{id: "s", key: "visits", value: []byte("3"), atLeast: 99}},
		{must(encodeUpdateCopy(updateCopyRequest{expected: version{time: 5, node: 6}, delta: r})), updateCopyRequest{expected: version{time: 5, node: 6}, delta: r}},
		{must(encodeUpdateCopy(updateCopyRequest{delta: r, base: r})), updateCopyRequest{delta: r, base: r}},
		{must(encodeUpdateCopy(updateCopyRequest{delta: r, from: memberKey{"n3", 9}})), updateCopyRequest{delta: r, from: memberKey{"n3", 9}}},
	} {
		got, err := decodeRequest(tc.frame)
		require.NoError(t, err, "%T", tc.want)
		assert.Equal(t, tc.want.requestType(), tc.frame[0], "%T", tc.want)
		if a, ok := tc.want.(applyRequest); ok {
			b := got.(applyRequest)
			assert.Equal(t, a.write, b.write)
			require.Len(t, b.records, 1)
			requireSame(t, r, b.records[0])
			continue
		}
		if u, ok := tc.want.(updateCopyRequest); ok {
			b := got.(updateCopyRequest)
			assert.Equal(t, u.expected, b.expected)
			assert.Equal(t, u.from, b.from)
			requireSame(t, r, b.delta)
			continue
		}
		assert.Equal(t, tc.want, got)
	}

	_, err := decodeRequest(nil)
	require.ErrorIs(t, err, errMalformed)
	_, err = decodeRequest([]byte{200})
	require.ErrorIs(t, err, errUnknownRequest, "an unknown request type: a newer peer's, not malformed")
	require.NotErrorIs(t, err, errMalformed)
	_, err = decodeRequest(append(must(encodeGet("s")), 0x01))
	require.ErrorIs(t, err, errMalformed, "trailing bytes")
}

func TestReplies_LeaseRoundTrip(t *testing.T) {
	want := leaseReply{outcome: leaseBehind, epoch: 4, duration: 1500 * time.Millisecond}
	resp, err := encodeLeaseReply(want)
	require.NoError(t, err)
	got, err := decodeLeaseReply(resp)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}
