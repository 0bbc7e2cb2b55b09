package replication

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sessionmesh/sessionmesh/transport"
)

// Config configures a Store. Start from DefaultConfig (or DefaultLocalConfig
// for loopback tests and demos) and set Membership and Transport.
type Config struct {
	// Membership tells the store who its peers are. Required;
	// sessionmesh.Membership adapts a *cluster.Cluster.
	Membership Membership

	// Transport carries the store's messages to its peers. Required. The
	// store owns it from New on: Store.Close closes it.
	Transport transport.Transport

	// Mode says which members own each session: AllToAll (the default,
	// the zero Mode) or Backups(n).
	Mode Mode

	// WriteConcern says when a write returns: Sync (the default) once
	// every live owner has it, Async once this node has it.
	WriteConcern WriteConcern

	// MaxReadWait bounds how long GetAtLeast waits for a session to catch
	// up with the version the caller asks for, before it answers with what
	// it has (counted as a stale read). Default 1s (500ms local).
	MaxReadWait time.Duration

	// WriteTimeout bounds how long a write waits for a peer's
	// acknowledgement. A peer that does not answer in time is marked
	// degraded: later writes are still sent to it but not waited for, until
	// anti-entropy has repaired it. A peer whose connection fails (a
	// crashed process) is skipped at once. Default 2s (1s local).
	WriteTimeout time.Duration

	// ReadLease is how long a node may answer reads from its own copies
	// after its peers last confirmed that it has missed none of their
	// writes; it asks them every ReadLease/4 while requests use its leases
	// and every 16 ReadLeases once none has for 2 ReadLeases (the first
	// request after that reads through the owners and renews them). A
	// write that a peer failed to acknowledge is acknowledged only once
	// that peer's lease has expired (usually already the case after
	// WriteTimeout). Shorter means
	// a frozen or cut-off node stops answering from its copies sooner and
	// more lease traffic, and leases that a busy machine fails to renew in
	// time. Default and at most WriteTimeout.
	ReadLease time.Duration

	// AntiEntropyInterval is how often the store compares partition digests
	// with a random peer and repairs the partitions that differ. It also
	// paces the probing of degraded peers. Default 5s (500ms local).
	AntiEntropyInterval time.Duration

	// MaxClockOffset is how far ahead of the local clock a peer's version
	// timestamp may be. Messages with timestamps further ahead are refused
	// rather than adopted, so one node with a wild clock cannot drag the
	// cluster's clocks forward. Default 1 minute.
	MaxClockOffset time.Duration

	// MinorityHold is how long a node remembers the members that vanished
	// from its view without announcing their departure (crashed, cut off,
	// wrongly declared dead; not those that left gracefully). While its
	// view holds fewer members than that, it is in a minority: it refuses
	// reads, writes and updates with ErrMinority instead of answering from
	// copies that lack what the other side wrote, and grants no lease
	// (minority.go). Members whose address refuses connections (a crashed
	// process) do not count. Shorter means the survivors of the loss of
	// most hosts serve alone sooner, and a partition longer than
	// MinorityHold is a split brain again. Default 30s (memberlist's
	// LAN GossipToTheDeadTime and the cluster's RejoinInterval, by which
	// the two sides of a healed partition have met again). Negative: off.
	MinorityHold time.Duration

	// TombstoneTTL is how long the tombstone of a destroyed session lives
	// when the destroying node does not know the session's own absolute
	// deadline (otherwise the tombstone lives exactly as long as the
	// session could have). Default 24h.
	TombstoneTTL time.Duration

	// TransferChunkBytes is the size of one chunk of state transfer.
	// Default 256 KiB.
	TransferChunkBytes int

	// Limits bound the attributes and bytes of one session, for local
	// writes (which fail with ErrSessionTooLarge) and records from peers
	// (which are refused). Default: DefaultLimits().
	Limits Limits

	// MaxSessions bounds the sessions this node holds, tombstones of
	// ended sessions and reserved IDs included: a write that would create a
	// new session on a node that holds this many fails with ErrOverloaded
	// (see MaxBytes for what is never refused). Records with reserved IDs
	// (sessionmesh's own, such as a principal's index, which
	// httpsession writes after the session it indexes) are refused only
	// beyond a sixteenth more, so that a session admitted under the budget
	// is never left half written. Default 0: no bound by count (MaxBytes
	// bounds them); negative: no bound.
	MaxSessions int

	// MaxBytes bounds the estimated memory of the sessions this node
	// holds (IDs, attributes and a fixed overhead per session and per
	// attribute; Stats.Bytes): a write that would create a new session
	// beyond it fails with ErrOverloaded. Writes to sessions that exist,
	// and whatever peers send (writes, repairs, state transfer), are never
	// refused for the budget: the budget is checked only where a session is
	// created. Every node should have the same budget; in AllToAll mode
	// every node then holds what the node that creates a session counts,
	// and the whole cluster stays within it. Default: half of the Go
	// memory limit (GOMEMLIMIT, see runtime/debug.SetMemoryLimit) when one
	// is set, else half of the cgroup's memory limit (memory.max, a
	// container's limit), else 1 GiB (about a million small sessions);
	// the other half is for everything else the process holds. Negative:
	// no bound.
	MaxBytes int64

	// OnSessionEvent, when set, is called for every session created,
	// destroyed or expired, once per event in the cluster: by the
	// session's primary owner, not by every replica. It runs on one
	// goroutine of the store, one event at a time, and must not block for
	// long: when 1024 events are waiting, further ones are dropped and
	// counted (Stats.DroppedEvents). Events of writes made while the
	// primary was down, or moving between owners, are not reported.
	OnSessionEvent func(SessionEvent)

	// Logger receives the store's logs. Default slog.Default().
	Logger *slog.Logger

	// SnapshotDir, when set, makes the store keep its sessions and
	// tombstones in a file in this local directory (created if missing),
	// so that a restart of the whole fleet keeps them: written every
	// SnapshotInterval in the background and once more by Leave and by
	// Close after Leave, loaded by New before the store serves. Give each
	// node a directory of its own. Default "": no snapshots.
	SnapshotDir string

	// SnapshotInterval is how often the store writes a snapshot when
	// SnapshotDir is set (it skips a write when nothing changed): a crash
	// of every node loses at most the writes of the last interval and of
	// the time one snapshot takes to write. Default 5s.
	SnapshotInterval time.Duration

	// SnapshotKey is the cluster secret the snapshot is encrypted and
	// authenticated with (a key derived from it with HKDF, never the
	// secret itself). Without it the snapshot is only checked against
	// corruption: anyone who can read SnapshotDir can read the sessions.
	// sessionmesh.StartNode sets it to NodeConfig.SecretKey.
	SnapshotKey []byte

	// SnapshotOldKeys are further secrets a snapshot found at start may be
	// sealed with: those of a rotation in progress. Snapshots are written
	// with SnapshotKey (or the one Store.UseSnapshotKey gave later).
	// sessionmesh.StartNode sets them to NodeConfig.SecondaryKeys.
	SnapshotOldKeys [][]byte

	// SnapshotLabel is the cluster's label, which the snapshot's header
	// records: a snapshot written under another label or secret is
	// refused. sessionmesh.StartNode sets it to NodeConfig.Label.
	SnapshotLabel string

	// Clock is where the store reads the time: the wall clock for
	// versions and deadlines, the monotonic one for leases and timeouts.
	// Default SystemClock(); tests give each node its own, to skew or step
	// its wall clock (WallClock).
	Clock Clock
}

// DefaultConfig returns the defaults for a LAN cluster.
func DefaultConfig() Config {
	return Config{
		WriteTimeout:        2 * time.Second,
		AntiEntropyInterval: 5 * time.Second,
		MaxClockOffset:      time.Minute,
		MinorityHold:        30 * time.Second,
		TombstoneTTL:        24 * time.Hour,
		TransferChunkBytes:  256 << 10,
		MaxReadWait:         time.Second,
		SnapshotInterval:    5 * time.Second,
	}
}

// DefaultLocalConfig returns defaults for nodes on one machine (tests, the
// demo): shorter timeouts and faster repair.
func DefaultLocalConfig() Config {
	c := DefaultConfig()
	c.WriteTimeout = time.Second
	c.AntiEntropyInterval = 500 * time.Millisecond
	c.MaxReadWait = 500 * time.Millisecond
	return c
}

func (c *Config) validate() error {
	var errs []error
	if c.Membership == nil {
		errs = append(errs, errors.New("missing Membership"))
	}
	if c.Transport == nil {
		errs = append(errs, errors.New("missing Transport"))
	}
	d := DefaultConfig()
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.ReadLease <= 0 || c.ReadLease > c.WriteTimeout {
		c.ReadLease = c.WriteTimeout
	}
	if c.AntiEntropyInterval <= 0 {
		c.AntiEntropyInterval = d.AntiEntropyInterval
	}
	if c.MaxClockOffset <= 0 {
		c.MaxClockOffset = d.MaxClockOffset
	}
	if c.MaxReadWait <= 0 {
		c.MaxReadWait = d.MaxReadWait
	}
	if c.MinorityHold == 0 {
		c.MinorityHold = d.MinorityHold
	}
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = d.TombstoneTTL
	}
	if c.TransferChunkBytes <= 0 {
		c.TransferChunkBytes = d.TransferChunkBytes
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = d.SnapshotInterval
	}
	c.Limits = c.Limits.withDefaults()
	if c.MaxBytes == 0 {
		c.MaxBytes = defaultMaxBytes()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = SystemClock()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("replication: invalid config: %w", err)
	}
	return nil
}

// WriteConcern says when a write returns.
type WriteConcern int

const (
	// Sync writes return once every live owner of the session has
	// acknowledged them (a crashed owner is skipped at once, a frozen one
	// after WriteTimeout). A login survives the next request landing on
	// any node and the crash of the node that took it. The default.
	Sync WriteConcern = iota
	// Async writes return once this node has applied them; the other
	// owners get them in the background, batched. On a node that does not
	// own the session, which holds no copy to apply them to, they return
	// once the owners have acknowledged them, as Sync writes do (queued,
	// a failed send would leave them on no node). Faster, but a write is lost if its
	// node dies before sending it. Readers on other nodes see a session at
	// least as new as a Version they pass to GetAtLeast, waiting up to
	// MaxReadWait.
	Async
)

// String returns "sync" or "async".
func (w WriteConcern) String() string {
	if w == Async {
		return "async"
	}
	return "sync"
}
