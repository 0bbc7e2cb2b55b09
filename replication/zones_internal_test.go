package replication

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// zoned returns n members per zone, named z<zone>-<i>.
func zoned(zones, n int) []*peer {
	var out []*peer
	for z := range zones {
		for i := range n {
			name := fmt.Sprintf("z%d-%d", z, i)
			out = append(out, newPeer(name, 1, name, fmt.Sprintf("zone-%d", z)))
		}
	}
	return out
}

func TestOwnersOf_SpreadsBackupsOverZones(t *testing.T) {
	tests := []struct {
		zones, perZone, backups int
		wantZones               int // distinct zones among each partition's owners
	}{
		{3, 2, 1, 2},
		{3, 2, 2, 3},
		{2, 3, 2, 2}, // three copies, two zones: both zones, one twice
		{1, 6, 1, 1},
		{3, 1, 1, 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d zones x %d, backups %d", tt.zones, tt.perZone, tt.backups), func(t *testing.T) {
			members := zoned(tt.zones, tt.perZone)
			primaries := map[string]int{}
			for p := range numPartitions {
				owners := ownersOf(p, members, Backups(tt.backups))
				require.Len(t, owners, tt.backups+1)
				assert.Equal(t, tt.wantZones, countZones(owners), "partition %d: %v", p, names(owners))
				plain := ownersOf(p, members, AllToAll)
				assert.Same(t, plain[0], owners[0], "the primary is the heaviest member, zones or not")
				primaries[owners[0].name]++
			}
			assert.Len(t, primaries, len(members), "every member is the primary of some partitions")
		})
	}
}

func TestOwnersOf_ZoneJoinMovesOnlyBackups(t *testing.T) {
	before := zoned(2, 3)
	after := append(zoned(2, 3), newPeer("z9-0", 1, "z9-0", "zone-9"))
	moved := 0
	for p := range numPartitions {
		a, b := ownersOf(p, before, Backups(1)), ownersOf(p, after, Backups(1))
		if a[0].name != b[0].name {
			assert.Equal(t, "z9-0", b[0].name, "partition %d: a primary moves only to the new member", p)
		}
		if a[1].name != b[1].name {
			moved++
		}
	}
	assert.Less(t, moved, numPartitions*2/3, "a third zone takes over some backups, not all")
}

func TestBuildView_CountsSingleZonePartitions(t *testing.T) {
	self := &peer{name: "a", zone: "z1", self: true}
	ms := []Member{{Name: "b", Addr: "b", Incarnation: 1, Zone: "z1"}, {Name: "c", Addr: "c", Incarnation: 1, Zone: "z2"}}
	v := buildView(Backups(1), self, ms, nil, nil, false)
	assert.Equal(t, 2, v.zones)
	assert.Zero(t, v.singleZone, "every partition has a copy in each zone")

	ms[1].Zone = "z1"
	v = buildView(Backups(1), self, ms, v, nil, false)
	assert.Equal(t, 1, v.zones)
	assert.Zero(t, v.singleZone, "one zone: nothing to spread over")

	v = buildView(Backups(0), self, []Member{{Name: "b", Addr: "b", Incarnation: 1, Zone: "z2"}}, nil, nil, false)
	assert.Zero(t, v.singleZone, "a single copy cannot span zones; not counted")
}

func names(qs []*peer) []string {
	out := make([]string, len(qs))
	for i, q := range qs {
		out[i] = q.name + "@" + q.zone
	}
	return out
}

// TestOwnersOf_SameAsSortingEveryMember checks that picking owners from
// each zone's heaviest members gives what ordering every member by weight
// and spreading that over the zones gives.
func TestOwnersOf_SameAsSortingEveryMember(t *testing.T) {
	reference := func(p int, members []*peer, n int) []*peer {
		ws := make([]weighted, len(members))
		for i, q := range members {
			ws[i] = weighted{q, rendezvousWeight(p, q.name)}
		}
		slices.SortFunc(ws, byWeight)
		ordered := make([]*peer, len(ws))
		for i := range ws {
			ordered[i] = ws[i].q
		}
		return spreadZones(ordered, n)
	}
	for _, shape := range [][2]int{{1, 64}, {3, 5}, {2, 1}, {5, 2}, {4, 16}} {
		members := zoned(shape[0], shape[1])
		members = append(members, newPeer("odd", 1, "odd", "zone-0")) // zones of different sizes
		for _, backups := range []int{0, 1, 2, 3} {
			for p := range numPartitions {
				want := reference(p, members, backups+1)
				assert.Equal(t, names(want), names(ownersOf(p, members, Backups(backups))),
					"%d zones x %d, backups %d, partition %d", shape[0], shape[1], backups, p)
			}
		}
	}
}

func BenchmarkOwnersOf(b *testing.B) {
	members := zoned(1, 64)
	for b.Loop() {
		for p := range numPartitions {
			ownersOf(p, members, Backups(1))
		}
	}
}
