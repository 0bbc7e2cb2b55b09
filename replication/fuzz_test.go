package replication

import (
	"testing"
	"time"
)

// FuzzDecodeRecords feeds arbitrary bytes to the record decoder: it must
// never panic or allocate beyond its input, and whatever it accepts must
// encode and decode to the same records.
func FuzzDecodeRecords(f *testing.F) {
	seed, _ := encodeRecordsReply([]*record{
		{id: "s1", created: 1, expires: 2, attrs: []attr{{name: "user", value: []byte("ann"), version: version{3, 4}}}},
		{id: "s2", destroyed: true, expires: 9},
	})
	f.Add(seed)
	f.Add([]byte{respOK, 0x90})
	f.Add([]byte{respOK, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := decodeRecordsReply(data)
		if err != nil {
			return
		}
		again, err := encodeRecordsReply(rs)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := decodeRecordsReply(again)
		if err != nil {
			t.Fatalf("decode of re-encoded records: %v", err)
		}
		if len(back) != len(rs) {
			t.Fatalf("%d records became %d", len(rs), len(back))
		}
		for i := range rs {
			if !sameRecord(rs[i], back[i]) {
				t.Fatalf("record %d changed in a round trip: %+v vs %+v", i, rs[i], back[i])
			}
		}
	})
}

// FuzzDecodeReplies runs every response decoder on arbitrary bytes.
func FuzzDecodeReplies(f *testing.F) {
	hello, _ := encodeHelloReply(helloReply{name: "n1", incarnation: 7, seesYou: true, ready: true})
	get, _ := encodeGetReply(getReply{ready: true, r: &record{id: "s", attrs: []attr{{name: "a", value: []byte("b"), version: version{1, 1}}}}})
	digests, _ := encodeStatusReply(&peerStatus{ready: make([]bool, numPartitions), digests: make([]uint64, numPartitions), counts: make([]uint32, numPartitions)})
	summary, _ := encodeSummaryReply(true, []summaryEntry{{id: "s", digest: 42}})
	rng, _ := encodeRangeReply(rangeReply{ready: true, records: []*record{{id: "s"}}, done: true})
	lease, _ := encodeLeaseReply(leaseReply{outcome: leaseGranted, epoch: 3, duration: time.Second})
	for _, seed := range [][]byte{hello, get, digests, summary, rng, lease, {respOK}, errorResponse(errMalformed)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = decodeHelloReply(data)
		_, _ = decodeGetReply(data)
		_, _ = decodeStatusReply(data)
		_, _, _ = decodeSummaryReply(data)
		_, _ = decodeRangeReply(data)
		_ = decodeAckReply(data)
		_, _ = decodeLeaseReply(data)
		_, _ = decodeUpdateReply(data)
	})
}
