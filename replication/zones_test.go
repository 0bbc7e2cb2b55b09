package replication_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// zonedCluster starts six nodes, two in each of three zones (a-1 and a-2
// in zone a, ...), in Backups(1) mode.
func zonedCluster(t *testing.T, seed int64) *testcluster.Cluster {
	c := testcluster.New(t, testcluster.Options{Seed: seed,
		Zone: func(name string) string { return "zone-" + name[:1] },
		Config: func(string) replication.Config {
			cfg := replication.DefaultLocalConfig()
			cfg.Mode = replication.Backups(1)
			cfg.AntiEntropyInterval = 60 * time.Millisecond
			return cfg
		}})
	for _, n := range []string{"a-1", "a-2", "b-1", "b-2", "c-1", "c-2"} {
		c.Start(n)
	}
	c.WaitConverged(t)
	return c
}

// With the primary and the backup of every session in different zones,
// the crash of a whole zone (both of its nodes at once) loses nothing;
// without zones, rendezvous hashing puts both copies of some partitions on
// the two nodes of one zone (see the next test).
func TestZones_LosingAWholeZoneLosesNoSession(t *testing.T) {
	for _, zone := range []string{"a", "b", "c"} {
		t.Run("zone "+zone, func(t *testing.T) {
			c := zonedCluster(t, 71)
			for _, n := range c.Nodes() {
				st := n.Store.Stats()
				assert.Equal(t, 3, st.Zones, n.Name)
				assert.Zero(t, st.SingleZone, "%s: every partition has copies in two zones", n.Name)
			}
			writeSessions(t, c, 300)
			c.Kill(zone+"-1", zone+"-2")
			requireAllReadable(t, c, 300)
			c.WaitConverged(t)
			assert.Equal(t, 600, totalSessions(c), "re-replicated to two copies on the survivors")
			for _, n := range c.Nodes() {
				assert.False(t, strings.HasPrefix(n.Name, zone))
				assert.Zero(t, n.Store.Stats().SingleZone, "%s: two zones left, still spread", n.Name)
			}
		})
	}
}

// The same crash without zones loses the sessions whose two copies sat in
// the crashed zone: what zones are for.
func TestZones_WithoutZonesAZoneCrashLosesSessions(t *testing.T) {
	c := testcluster.New(t, testcluster.Options{Seed: 72, Config: func(string) replication.Config {
		cfg := replication.DefaultLocalConfig()
		cfg.Mode = replication.Backups(1)
		cfg.AntiEntropyInterval = 60 * time.Millisecond
		return cfg
	}})
	for _, n := range []string{"a-1", "a-2", "b-1", "b-2", "c-1", "c-2"} {
		c.Start(n)
	}
	c.WaitConverged(t)
	writeSessions(t, c, 300)
	c.Kill("a-1", "a-2")
	c.WaitConverged(t)
	lost := 0
	for i := range 300 {
		if _, ok := value(t, c.Nodes()[0].Store, fmt.Sprint("s", i), "n"); !ok {
			lost++
		}
	}
	t.Logf("%d of 300 sessions lost with the zone", lost)
	assert.Positive(t, lost, "rendezvous hashing alone puts both copies of some partitions in one zone")
}
