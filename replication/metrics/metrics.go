package metrics

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionmesh/sessionmesh/cluster"
	"github.com/sessionmesh/sessionmesh/replication"
	"github.com/sessionmesh/sessionmesh/transport/tcp"
)

// Store is what the collector reads of a replication store.
// *replication.Store implements it. Every method must be cheap and must not
// block on the network: they run on every scrape.
type Store interface {
	Stats() replication.Stats
	Partitions() []replication.PartitionInfo
	Peers() []replication.PeerInfo
	FullyReplicated() bool
	Mode() replication.Mode
	WriteConcern() replication.WriteConcern
	Health() error
}

// Cluster is what the collector reads of the membership. *cluster.Cluster
// implements it.
type Cluster interface {
	LocalMember() cluster.Member
	Members() []cluster.Member
	Stats() cluster.Stats
}

// Transport is what the collector reads of the replication transport.
// *tcp.Transport implements it.
type Transport interface {
	Stats() tcp.Stats
}

var (
	_ Store     = (*replication.Store)(nil)
	_ Cluster   = (*cluster.Cluster)(nil)
	_ Transport = (*tcp.Transport)(nil)
)

// DefaultPeerTimeout is the default Config.PeerTimeout: three anti-entropy
// rounds of replication.DefaultConfig.
const DefaultPeerTimeout = 15 * time.Second

// Config configures a Collector.
type Config struct {
	// Store is the node's store. Required.
	Store Store
	// Cluster is the node's membership; without it the cluster_ metrics
	// are not exported, and the primary and backup roles are told apart
	// by the peers' names instead. Optional.
	Cluster Cluster
	// Transport is the store's transport; without it the transport_
	// metrics are not exported. Optional.
	Transport Transport
	// PeerTimeout is how long a peer may go without answering the store's
	// status polls (one per anti-entropy round) before it counts as
	// unresponsive in sessionmesh_peers. Set it to a few
	// AntiEntropyIntervals of the store. Default DefaultPeerTimeout (15s,
	// right for replication.DefaultConfig; 1.5s suits DefaultLocalConfig).
	PeerTimeout time.Duration
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// ErrNoStore is returned by New and Register for a Config without a Store.
var ErrNoStore = errors.New("metrics: Config.Store is nil")

// Collector is a prometheus.Collector that reads a node's counters at
// every scrape. It starts no goroutine and holds nothing but the last time
// it saw each peer. It is safe for concurrent use: scrapes may overlap.
type Collector struct {
	cfg   Config
	descs descs

	mu        sync.Mutex            // guards firstSeen
	firstSeen map[peerKey]time.Time // when a peer life was first scraped, for PeerTimeout
}

type peerKey struct {
	name        string
	incarnation uint64
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector for cfg. Register it on a registry of your own
// (prometheus.NewRegistry), or use Register.
func New(cfg Config) (*Collector, error) {
	if isNil(cfg.Store) {
		return nil, ErrNoStore
	}
	if isNil(cfg.Cluster) {
		cfg.Cluster = nil
	}
	if isNil(cfg.Transport) {
		cfg.Transport = nil
	}
	if cfg.PeerTimeout <= 0 {
		cfg.PeerTimeout = DefaultPeerTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Collector{cfg: cfg, descs: newDescs(), firstSeen: map[peerKey]time.Time{}}, nil
}

// Register creates a Collector for cfg and registers it on reg. It never
// touches prometheus.DefaultRegisterer unless reg is it.
func Register(reg prometheus.Registerer, cfg Config) (*Collector, error) {
	c, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if reg == nil {
		return nil, errors.New("metrics: Register: nil Registerer")
	}
	if err := reg.Register(c); err != nil {
		return nil, fmt.Errorf("metrics: register collector: %w", err)
	}
	return c, nil
}

// isNil reports whether v is nil or a nil pointer of the types this
// package knows, so that a nil *cluster.Cluster passed as a Cluster counts
// as absent.
func isNil(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case *replication.Store:
		return x == nil
	case *cluster.Cluster:
		return x == nil
	case *tcp.Transport:
		return x == nil
	}
	return false
}

// Describe sends the descriptors of every metric the Collector may export.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs.all() {
		ch <- d
	}
}

// Collect reads the store, the cluster and the transport and sends their
// metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	d := &c.descs
	s := c.cfg.Store
	st := s.Stats()
	send := func(desc *prometheus.Desc, typ prometheus.ValueType, v float64, labels ...string) {
		m, err := prometheus.NewConstMetric(desc, typ, v, labels...)
		if err != nil {
			m = prometheus.NewInvalidMetric(desc, err)
		}
		ch <- m
	}
	gauge := func(desc *prometheus.Desc, v float64, labels ...string) {
		send(desc, prometheus.GaugeValue, v, labels...)
	}
	counter := func(desc *prometheus.Desc, v uint64) { send(desc, prometheus.CounterValue, float64(v)) }

	gauge(d.info, 1, s.Mode().String(), s.WriteConcern().String())
	gauge(d.ready, b2f(st.Ready))
	gauge(d.fullyReplicated, b2f(s.FullyReplicated()))
	gauge(d.underReplicated, float64(st.UnderReplicated))

	self := ""
	if c.cfg.Cluster != nil {
		self = c.cfg.Cluster.LocalMember().Name
	}
	peers := s.Peers()
	roles := partitionRoles(s.Partitions(), self, peers)
	for _, r := range roleNames {
		gauge(d.partitions, float64(roles[r].partitions), r)
		gauge(d.sessions, float64(roles[r].sessions), r)
	}

	for _, p := range peers {
		gauge(d.peerClockOffset, p.ClockOffset.Seconds(), p.Name)
		gauge(d.peerRefuses, b2f(p.Refusal != ""), p.Name)
	}
	gauge(d.healthy, b2f(s.Health() == nil))
	gauge(d.zones, float64(st.Zones))
	gauge(d.singleZone, float64(st.SingleZone))
	gauge(d.sessionBytes, float64(st.Bytes))
	gauge(d.budgetSessions, float64(st.MaxSessions))
	gauge(d.budgetBytes, float64(st.MaxBytes))
	gauge(d.budgetUsed, budgetUsed(st))
	counter(d.refusedSessions, st.Overloaded)

	ok, degraded, unresponsive := c.peerStates(peers)
	gauge(d.peers, float64(ok), "ok")
	gauge(d.peers, float64(degraded), "degraded")
	gauge(d.peers, float64(unresponsive), "unresponsive")

	counter(d.writes, st.Writes)
	counter(d.writeErrors, st.WriteErrors)
	counter(d.degradedWrites, st.DegradedWrites)
	counter(d.rewrittenWrites, st.RewrittenWrites)
	counter(d.ownerLosses, st.OwnerLosses)
	counter(d.skippedSends, st.SkippedSends)
	counter(d.remoteReads, st.RemoteReads)
	counter(d.behindReads, st.BehindReads)
	counter(d.staleReads, st.StaleReads)
	counter(d.transferred, st.Transferred)
	counter(d.handedOff, st.HandedOff)
	counter(d.repairs, st.Repairs)
	counter(d.repairedRecords, st.RepairedRecords)
	counter(d.rejected, st.Rejected)
	counter(d.expired, st.Expired)
	counter(d.droppedEvents, st.DroppedEvents)
	counter(d.snapshots, st.Snapshots)
	counter(d.snapshotFailures, st.SnapshotFailures)
	gauge(d.snapshotBytes, float64(st.SnapshotBytes))
	gauge(d.snapshotSeconds, st.SnapshotTook.Seconds())
	if h := st.WriteLatency; len(h.Bounds) == len(h.Counts) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, b := range h.Bounds {
			buckets[b] = h.Counts[i]
		}
		m, err := prometheus.NewConstHistogram(d.writeDuration, h.Count, h.Sum, buckets)
		if err != nil {
			m = prometheus.NewInvalidMetric(d.writeDuration, err)
		}
		ch <- m
	}

	if cl := c.cfg.Cluster; cl != nil {
		states := map[cluster.State]int{cluster.StateAlive: 0, cluster.StateSuspect: 0}
		for _, m := range cl.Members() {
			states[m.State]++
		}
		for state, n := range states {
			gauge(d.members, float64(n), state.String())
		}
		cs := cl.Stats()
		counter(d.joinAttempts, cs.JoinAttempts)
		counter(d.joinFailures, cs.JoinFailures)
		counter(d.stateSyncs, cs.StateSyncs)
		counter(d.clusterDroppedEvents, cs.DroppedEvents)
	}

	if tr := c.cfg.Transport; tr != nil {
		ts := tr.Stats()
		gauge(d.openConns, float64(ts.OpenConns))
		gauge(d.queuedFrames, float64(ts.QueuedFrames))
		counter(d.dials, ts.Dials)
		counter(d.dialFailures, ts.DialFailures)
		counter(d.accepted, ts.Accepted)
		counter(d.rejectedConns, ts.RejectedConns)
		counter(d.handshakeFailures, ts.HandshakeFailures)
		counter(d.retiredConns, ts.RetiredConns)
		counter(d.connFailures, ts.ConnFailures)
		counter(d.framesSent, ts.FramesSent)
		counter(d.bytesSent, ts.BytesSent)
		counter(d.flushes, ts.Flushes)
		counter(d.framesReceived, ts.FramesReceived)
		counter(d.bytesReceived, ts.BytesReceived)
		counter(d.rejectedFrames, ts.RejectedFrames)
		counter(d.handlerPanics, ts.HandlerPanics)
	}
}

// The roles of the sessionmesh_partitions and sessionmesh_sessions labels.
const (
	rolePrimary = "primary" // owned as primary, held completely
	roleBackup  = "backup"  // owned as a backup, held completely
	roleCopying = "copying" // owned, still being copied in by state transfer
	roleHandoff = "handoff" // held without being owned: being handed over
)

var roleNames = []string{rolePrimary, roleBackup, roleCopying, roleHandoff}

type roleCount struct{ partitions, sessions int }

// partitionRoles counts partitions and the records in them by the role
// this node plays for them. Without the local name, the primary is told
// apart as the one owner that is not a peer.
func partitionRoles(parts []replication.PartitionInfo, self string, peers []replication.PeerInfo) map[string]roleCount {
	isPeer := make(map[string]bool, len(peers))
	for _, p := range peers {
		isPeer[p.Name] = true
	}
	out := make(map[string]roleCount, len(roleNames))
	for _, p := range parts {
		var role string
		switch {
		case !p.Owned && p.Sessions == 0:
			continue
		case !p.Owned:
			role = roleHandoff
		case !p.Complete:
			role = roleCopying
		case len(p.Owners) > 0 && (p.Owners[0] == self || self == "" && !isPeer[p.Owners[0]]):
			role = rolePrimary
		default:
			role = roleBackup
		}
		rc := out[role]
		rc.partitions++
		rc.sessions += p.Sessions
		out[role] = rc
	}
	return out
}

// peerStates sorts the store's peers into ok, degraded (not waited for by
// writes) and unresponsive (no status answer for PeerTimeout; takes
// precedence). It remembers when it first saw each peer life, so that a
// peer that joined moments ago is not unresponsive before its first poll.
func (c *Collector) peerStates(peers []replication.PeerInfo) (ok, degraded, unresponsive int) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[peerKey]time.Time, len(peers))
	for _, p := range peers {
		k := peerKey{p.Name, p.Incarnation}
		first, known := c.firstSeen[k]
		if !known {
			first = now
		}
		seen[k] = first
		last := p.LastStatus
		if last.Before(first) {
			last = first
		}
		switch {
		case now.Sub(last) > c.cfg.PeerTimeout:
			unresponsive++
		case p.Degraded:
			degraded++
		default:
			ok++
		}
	}
	c.firstSeen = seen // forget peers that left the view
	return ok, degraded, unresponsive
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// budgetUsed returns the fill level of the store's budget: the higher of
// sessions over MaxSessions and bytes over MaxBytes, 0 without a budget.
func budgetUsed(st replication.Stats) float64 {
	used := 0.0
	if st.MaxSessions > 0 {
		used = float64(st.Sessions) / float64(st.MaxSessions)
	}
	if st.MaxBytes > 0 {
		used = max(used, float64(st.Bytes)/float64(st.MaxBytes))
	}
	return used
}
