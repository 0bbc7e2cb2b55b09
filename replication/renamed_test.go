package replication

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMerge_RenamedTombstoneStaysRenamed(t *testing.T) {
	live := &record{id: "s", expires: 100, attrs: []attr{{name: "user", value: []byte("ann"), version: version{5, 1}}}}
	renamed := &record{id: "s", expires: 100, destroyed: true, renamed: 40}
	destroyed := &record{id: "s", expires: 100, destroyed: true}
	got := merge(merge(live, renamed), destroyed)
	assert.True(t, got.destroyed)
	assert.Equal(t, int64(40), got.renamed, "a later destroy of the old ID does not hide the renewal")
	assert.Equal(t, int64(50), merge(got, &record{id: "s", expires: 100, destroyed: true, renamed: 50}).renamed, "the latest renewal counts")
	assert.Equal(t, renamed.digest(), destroyed.digest(), "peers that drop the field do not make anti-entropy chase it")
	assert.NotSame(t, destroyed, merge(destroyed, renamed), "the renewal alone is news to a replica")
}

// A record from a peer of the previous release has seven fields and no
// renamed field; one from a later release may have more fields than this
// one knows. Both decode.
func TestCodec_RecordFieldsOfOtherReleases(t *testing.T) {
	encode := func(fields int, destroyed bool, renamed int64) []byte {
		e := newEncoder(respOK)
		e.arrayLen(1)
		e.arrayLen(fields)
		e.str("s")
		e.int64(1)
		e.int64(2)
		e.int64(0)
		e.int64(0)
		e.boolean(destroyed)
		e.arrayLen(0)
		if fields > 7 {
			e.int64(renamed)
		}
		for i := 8; i < fields; i++ {
			e.str("a field of a later release")
		}
		msg, err := e.finish()
		require.NoError(t, err)
		return msg
	}
	for _, tc := range []struct {
		name        string
		fields      int
		destroyed   bool
		renamed     int64
		wantRenamed int64
	}{
		{"previous release", 7, true, 0, 0},
		{"this release", 8, true, 1234, 1234},
		{"later release", 10, true, 1234, 1234},
		{"renamed without destroyed is dropped", 8, false, 1234, 0},
		{"a negative time is none", 8, true, -5, 0},
	} {
		got, err := decodeRecordsReply(encode(tc.fields, tc.destroyed, tc.renamed))
		require.NoError(t, err, tc.name)
		require.Len(t, got, 1)
		assert.Equal(t, tc.destroyed, got[0].destroyed, tc.name)
		assert.Equal(t, tc.wantRenamed, got[0].renamed, tc.name)
	}
}
