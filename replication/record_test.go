package replication

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

// genRecord generates records of one session, as different replicas could
// hold them: a few attribute names, versions from a few nodes and times,
// deletes, sometimes destroyed (by a rename or not).
func genRecord() *rapid.Generator[*record] {
	return rapid.Custom(func(t *rapid.T) *record {
		r := &record{
			id:        "s1",
			created:   rapid.Int64Range(1, 5).Draw(t, "created"),
			expires:   rapid.Int64Range(100, 105).Draw(t, "expires"),
			idleMs:    rapid.SampledFrom([]int64{0, 10}).Draw(t, "idle"),
			idleUntil: rapid.Int64Range(0, 50).Draw(t, "idleUntil"),
			destroyed: rapid.IntRange(0, 9).Draw(t, "destroyed") == 0,
		}
		if r.destroyed {
			r.renamed = rapid.SampledFrom([]int64{0, 0, 40, 60}).Draw(t, "renamed")
			return r
		}
		names := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"a", "b", "c", "d"}), 0, 4, rapid.ID[string]).Draw(t, "names")
		for _, n := range names {
			a := attr{
				name: n,
				version: version{
					time: hlc.Timestamp(rapid.Uint64Range(1, 4).Draw(t, "time")),
					node: rapid.Uint64Range(1, 3).Draw(t, "node"),
				},
				deleted: rapid.IntRange(0, 4).Draw(t, "deleted") == 0,
			}
			if !a.deleted {
				// Content follows from the version, as it does for real writes.
				a.value = []byte(fmt.Sprintf("%s@%d.%d", n, a.version.time, a.version.node))
				if rapid.IntRange(0, 9).Draw(t, "conflicting") == 0 {
					// Same version, other content: only a bug or a hostile peer does this.
					a.value = []byte("conflicting")
				}
			}
			r.attrs = append(r.attrs, a)
		}
		r.attrs = normalizeAttrs(r.attrs)
		return r
	})
}

func requireSame(t require.TestingT, want, got *record) {
	require.True(t, sameRecord(want, got), "records differ:\n want %+v\n  got %+v", want, got)
}

func TestMerge_Commutative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genRecord().Draw(t, "a"), genRecord().Draw(t, "b")
		requireSame(t, merge(a, b), merge(b, a))
	})
}

func TestMerge_Associative(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := genRecord().Draw(t, "a"), genRecord().Draw(t, "b"), genRecord().Draw(t, "c")
		requireSame(t, merge(merge(a, b), c), merge(a, merge(b, c)))
	})
}

func TestMerge_Idempotent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := genRecord().Draw(t, "a"), genRecord().Draw(t, "b")
		ab := merge(a, b)
		requireSame(t, ab, merge(ab, b))
		requireSame(t, ab, merge(ab, a))
		require.Same(t, ab, merge(ab, ab), "merging what is already there returns the record itself")
	})
}

// TestMerge_AnyDeliveryOrderConverges delivers the same deltas to two
// replicas in different orders, with duplicates, and checks they end equal.
func TestMerge_AnyDeliveryOrderConverges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		deltas := rapid.SliceOfN(genRecord(), 1, 8).Draw(t, "deltas")
		order := rapid.Permutation(deltas).Draw(t, "order")
		dups := rapid.SliceOfN(rapid.SampledFrom(deltas), 0, 4).Draw(t, "duplicates")
		var x, y *record
		for _, d := range deltas {
			x = merge(x, d)
		}
		for _, d := range append(order, dups...) {
			y = merge(y, d)
		}
		requireSame(t, x, y)
	})
}

func TestMerge_ConcurrentWritesToDifferentAttributesBothSurvive(t *testing.T) {
	base := &record{id: "s", created: 1, expires: 100}
	w1 := &record{id: "s", created: 1, expires: 100, attrs: []attr{{name: "cart", value: []byte("1"), version: version{10, 1}}}}
	w2 := &record{id: "s", created: 1, expires: 100, attrs: []attr{{name: "theme", value: []byte("dark"), version: version{10, 2}}}}
	got := merge(merge(base, w2), w1)
	assert.Len(t, got.attrs, 2)
	assert.Equal(t, "cart", got.attrs[0].name)
	assert.Equal(t, "theme", got.attrs[1].name)
}

func TestMerge_DeleteIsNotUndoneByOlderWrite(t *testing.T) {
	put := &record{id: "s", attrs: []attr{{name: "a", value: []byte("x"), version: version{5, 1}}}}
	del := &record{id: "s", attrs: []attr{{name: "a", version: version{6, 2}, deleted: true}}}
	got := merge(del, put)
	require.Len(t, got.attrs, 1)
	assert.True(t, got.attrs[0].deleted)
	again := merge(got, &record{id: "s", attrs: []attr{{name: "a", value: []byte("y"), version: version{7, 1}}}})
	assert.False(t, again.attrs[0].deleted, "a newer put after the delete sets the attribute again")
}

func TestMerge_DestroyIsFinal(t *testing.T) {
	live := &record{id: "s", expires: 100, attrs: []attr{{name: "user", value: []byte("ann"), version: version{5, 1}}}}
	dead := &record{id: "s", expires: 100, destroyed: true}
	later := &record{id: "s", expires: 100, attrs: []attr{{name: "user", value: []byte("bob"), version: version{9, 1}}}}
	got := merge(merge(live, dead), later)
	assert.True(t, got.destroyed)
	assert.Empty(t, got.attrs)
	assert.False(t, got.live(1))
}

func TestRecord_Deadline(t *testing.T) {
	r := &record{id: "s", expires: 1000, idleMs: 100, idleUntil: 300}
	assert.Equal(t, int64(300), r.deadline())
	assert.True(t, r.live(299))
	assert.False(t, r.live(300))
	r.touched.Store(500)
	assert.Equal(t, int64(500), r.deadline(), "a local touch extends the idle deadline")
	r.touched.Store(5000)
	assert.Equal(t, int64(1000), r.deadline(), "the absolute deadline caps the idle one")
	noIdle := &record{id: "s", expires: 1000}
	assert.Equal(t, int64(1000), noIdle.deadline())
	forever := &record{id: "s"}
	assert.True(t, forever.live(1<<60))
}

func TestRecord_DigestIgnoresIdleDeadline(t *testing.T) {
	a := &record{id: "s", idleMs: 10, idleUntil: 5, attrs: []attr{{name: "a", value: []byte("1"), version: version{1, 1}}}}
	b := &record{id: "s", idleMs: 10, idleUntil: 99, attrs: []attr{{name: "a", value: []byte("1"), version: version{1, 1}}}}
	assert.Equal(t, a.digest(), b.digest())
	c := &record{id: "s", idleMs: 10, idleUntil: 5, attrs: []attr{{name: "a", value: []byte("1"), version: version{2, 1}}}}
	assert.NotEqual(t, a.digest(), c.digest())
}

// Taking back an update puts the attribute in its earlier state (set,
// deleted or absent), keeps the rest of the record, and does nothing once
// a later write has replaced the update.
func TestRecord_WithAttrUndone(t *testing.T) {
	applied := attr{name: "n", value: []byte("8"), version: version{20, 2}}
	other := attr{name: "user", value: []byte("ann"), version: version{5, 1}}
	held := &record{id: "s", created: 1, expires: 100, idleMs: 10, idleUntil: 30, attrs: []attr{applied, other}}
	held.touched.Store(40)
	for _, tc := range []struct {
		name   string
		before attrState
		want   []attr
	}{
		{"set before", attrState{value: []byte("7"), exists: true, version: version{10, 1}},
			[]attr{{name: "n", value: []byte("7"), version: version{10, 1}}, other}},
		{"deleted before", attrState{version: version{10, 1}},
			[]attr{{name: "n", version: version{10, 1}, deleted: true}, other}},
		{"absent before", attrState{}, []attr{other}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withAttrUndone(held, applied, tc.before)
			require.NotNil(t, got)
			requireSame(t, &record{id: "s", created: 1, expires: 100, idleMs: 10, idleUntil: 30, attrs: tc.want}, got)
			assert.Equal(t, int64(40), got.touched.Load(), "a local touch stays")
			assert.Len(t, held.attrs, 2, "the held record is not modified")
		})
	}
	later := merge(held, &record{id: "s", attrs: []attr{{name: "n", value: []byte("9"), version: version{30, 3}}}})
	assert.Nil(t, withAttrUndone(later, applied, attrState{value: []byte("7"), exists: true, version: version{10, 1}}),
		"an update replaced since stays")
}
