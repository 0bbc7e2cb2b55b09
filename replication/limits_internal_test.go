package replication

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLimits_CheckWriteCountsTheMergedSession(t *testing.T) {
	l := Limits{MaxAttributes: 3, MaxValueSize: 4, MaxSessionSize: 10}
	cur := &record{id: "s", attrs: []attr{{name: "a", value: []byte("1")}, {name: "c", value: []byte("3")}}}
	delta := func(as ...attr) *record { return &record{id: "s", attrs: as} }

	require.NoError(t, l.checkWrite(cur, delta(attr{name: "b", value: []byte("2")})), "3 attributes")
	require.NoError(t, l.checkWrite(cur, delta(attr{name: "a", value: []byte("1111")})), "replaces a")
	require.ErrorIs(t, l.checkWrite(cur, delta(attr{name: "a", value: []byte("11111")})), ErrSessionTooLarge, "value over 4")
	require.ErrorIs(t, l.checkWrite(cur, delta(attr{name: "b", value: []byte("2")}, attr{name: "d", value: []byte("4")})),
		ErrSessionTooLarge, "4 attributes")
	require.ErrorIs(t, l.checkWrite(cur, delta(attr{name: "b", deleted: true}, attr{name: "d", deleted: true})),
		ErrSessionTooLarge, "tombstones count")
	require.ErrorIs(t, l.checkWrite(cur, delta(attr{name: "b", value: []byte("2222")}, attr{name: "c", value: []byte("3333")})),
		ErrSessionTooLarge, "12 bytes in all")
	require.NoError(t, l.checkWrite(nil, delta(attr{name: "z", value: []byte("9")})))

	assert.Equal(t, DefaultLimits(), Limits{}.withDefaults())
	assert.Equal(t, maxAttrsPerRecord, Limits{MaxAttributes: 1 << 20}.withDefaults().MaxAttributes)
	long := make([]byte, maxAttrNameLen+1)
	require.ErrorIs(t, l.checkRecord(delta(attr{name: string(long)})), ErrSessionTooLarge)
}
