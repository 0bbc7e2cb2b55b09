package replication

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

func TestMessages_RecordRoundTrip(t *testing.T) {
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

func TestMessages_ApplyRoundTrip(t *testing.T) {
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

func TestMessages_DecodeNormalisesAttributes(t *testing.T) {
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

func TestMessages_RejectsHugeCountsWithoutAllocating(t *testing.T) {
	// An array header claiming 2^32-1 records, then nothing.
	msg := []byte{respOK, 0xdd, 0xff, 0xff, 0xff, 0xff}
	_, err := decodeRecordsReply(msg)
	require.ErrorIs(t, err, errMalformed)
	// A string claiming 4 GiB.
	_, _, err = decodeGetReply([]byte{respOK, 0x92, 0xc3, 0x97, 0xdb, 0xff, 0xff, 0xff, 0xff})
	require.ErrorIs(t, err, errMalformed)
}

func TestMessages_RemoteError(t *testing.T) {
	_, err := decodeRecordsReply(errorResponse(assert.AnError))
	var re *remoteError
	require.ErrorAs(t, err, &re)
	assert.Contains(t, err.Error(), assert.AnError.Error())
}

func TestMessages_LeaseAndUpdateRoundTrip(t *testing.T) {
	req, err := encodeLeaseRequest("n1", 7, 9)
	require.NoError(t, err)
	d := newDecoder(req[1:])
	holder, grantor := decodeLeaseRequest(d)
	require.NoError(t, d.done())
	assert.Equal(t, memberKey{"n1", 7}, holder)
	assert.Equal(t, uint64(9), grantor)

	want := leaseReply{outcome: leaseBehind, epoch: 4, duration: 1500 * time.Millisecond}
	resp, err := encodeLeaseReply(want)
	require.NoError(t, err)
	got, err := decodeLeaseReply(resp)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	u := updateRequest{id: "s", key: "visits", expected: version{time: 5, node: 6}, value: []byte("3"), deadline: 1234}
	msg, err := encodeUpdate(u)
	require.NoError(t, err)
	d = newDecoder(msg[1:])
	back := decodeUpdate(d)
	require.NoError(t, d.done())
	assert.Equal(t, u, back, "the deadline travels with the update")
}
