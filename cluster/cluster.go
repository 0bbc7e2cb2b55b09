package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Cluster is this process's membership in a cluster: a running memberlist
// node, a background joiner, and the member table. Create it with New and
// stop it with Close. All methods are safe for concurrent use.
type Cluster struct {
	cfg      Config
	logger   *slog.Logger
	ml       *memberlist.Memberlist
	delegate *delegate
	events   *eventDelegate
	merge    *mergeDelegate
	self     selfAddrs
	local    Member              // immutable after New; Tags copied on the way out
	keyring  *memberlist.Keyring // the gossip keys; nil without a SecretKey

	// leaveTimeout bounds each of Leave's two broadcasts.
	leaveTimeout time.Duration

	// stopCtx is done when Close starts: it stops the joiner and its DNS
	// lookups. Created in New, cancelled by stop.
	stopCtx context.Context
	stop    context.CancelFunc

	settled    chan struct{} // closed after the first join attempt (settleOnce)
	settleOnce sync.Once

	leaving   chan struct{} // closed by the first Leave: stops re-joins
	leaveOnce sync.Once
	leaveDone chan struct{} // closed when the leave broadcasts finished
	leaveErr  error         // result of the leave; written before leaveDone is closed

	// lifeMu is held shared by the leave goroutine and by each join attempt
	// while they call memberlist, and exclusively by Close around
	// memberlist's Shutdown: memberlist's Leave panics after Shutdown, and a
	// join after it would announce a node that no longer runs.
	lifeMu    sync.RWMutex
	closed    atomic.Bool
	closeOnce sync.Once
	wg        sync.WaitGroup // the joiner and the leave goroutine

	joinAttempts atomic.Uint64
	joinFailures atomic.Uint64
	syncs        atomic.Uint64
}

// Stats are counters of a Cluster, for metrics and tests.
type Stats struct {
	// Members is the number of live (alive or suspect) members, this node
	// included; 0 after Close.
	Members int
	// JoinAttempts counts join attempts, one per seed address tried.
	JoinAttempts uint64
	// JoinFailures counts the join attempts that failed.
	JoinFailures uint64
	// StateSyncs counts the full state exchanges with a random member made
	// while the membership changes (see Config.JoinRetryInterval).
	StateSyncs uint64
	// DeliveredEvents counts events sent to subscribed channels.
	DeliveredEvents uint64
	// DroppedEvents counts events not sent because the channel was full.
	DroppedEvents uint64
}

// New starts a cluster node: it binds the gossip port (TCP and UDP), starts
// memberlist, and starts joining Config.Seeds in the background. It returns
// at once without waiting for any seed; wait on Settled to know when the
// first join attempt is over. Zero fields of cfg take DefaultConfig's
// values. New returns an error for an invalid Config (including Tags too
// large for the metadata) or when the port cannot be bound.
func New(cfg Config) (*Cluster, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Seeds = slices.Clone(cfg.Seeds)
	cfg.Tags = maps.Clone(cfg.Tags)
	cfg.SecretKey = slices.Clone(cfg.SecretKey)
	secondary := make([][]byte, len(cfg.SecondaryKeys))
	for i, k := range cfg.SecondaryKeys {
		secondary[i] = slices.Clone(k)
	}
	cfg.SecondaryKeys = secondary

	logger := cfg.Logger.With("node", cfg.NodeName)
	incarnation := uint64(time.Now().UnixNano())
	meta, err := nodeMeta{incarnation: incarnation, tags: cfg.Tags}.encode()
	if err != nil { // validate encoded the same tags
		return nil, fmt.Errorf("cluster: Tags: %w", err)
	}

	c := &Cluster{
		cfg:          cfg,
		logger:       logger,
		delegate:     &delegate{},
		events:       newEventDelegate(cfg.NodeName, logger),
		merge:        &mergeDelegate{name: cfg.NodeName, incarnation: incarnation},
		leaveTimeout: min(max(25*cfg.GossipInterval, time.Second), 5*time.Second),
		settled:      make(chan struct{}),
		leaving:      make(chan struct{}),
		leaveDone:    make(chan struct{}),
	}
	c.delegate.setMeta(meta)
	c.stopCtx, c.stop = context.WithCancel(context.Background())

	mlc, err := c.memberlistConfig()
	if err != nil {
		c.stop()
		return nil, err
	}
	ml, err := memberlist.Create(mlc)
	if err != nil {
		c.stop()
		return nil, fmt.Errorf("cluster: start memberlist on %s: %w", cfg.BindAddr, err)
	}
	c.ml = ml

	// memberlist wrote the bound port back into mlc.
	ln := ml.LocalNode()
	c.local = Member{
		Name:        cfg.NodeName,
		Addr:        net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port))),
		Incarnation: incarnation,
		Tags:        cfg.Tags,
		State:       StateAlive,
	}
	c.merge.addr.Store(&c.local.Addr)
	c.self = newSelfAddrs(net.ParseIP(mlc.BindAddr), mlc.BindPort, ln.Addr, int(ln.Port))
	logger.Info("cluster: started", "addr", c.local.Addr, "incarnation", incarnation, "seeds", len(cfg.Seeds))

	joins := len(cfg.Seeds) > 0 || cfg.Discover != nil
	if !joins {
		c.settle()
	}
	c.wg.Add(1)
	go c.runJoiner(joins)
	return c, nil
}

// memberlistConfig translates the Config.
func (c *Cluster) memberlistConfig() (*memberlist.Config, error) {
	cfg := c.cfg
	mlc := memberlist.DefaultLANConfig()
	mlc.Name = cfg.NodeName

	bindIP, bindPort, _ := parseIPPort(cfg.BindAddr) // validated
	if bindIP == nil {
		bindIP = net.IPv4zero
	}
	mlc.BindAddr = bindIP.String()
	mlc.BindPort = bindPort
	mlc.AdvertiseAddr = ""
	mlc.AdvertisePort = bindPort
	if cfg.AdvertiseAddr != "" {
		ip, port, _ := parseIPPort(cfg.AdvertiseAddr) // validated
		if port == 0 {
			port = bindPort
		}
		mlc.AdvertiseAddr = ip.String()
		mlc.AdvertisePort = port
	}

	mlc.ProbeInterval = cfg.ProbeInterval
	mlc.ProbeTimeout = cfg.ProbeTimeout
	mlc.SuspicionMult = cfg.SuspicionMult
	mlc.PushPullInterval = cfg.PushPullInterval
	mlc.GossipInterval = cfg.GossipInterval
	// memberlist's presets keep gossiping to a dead node (giving it a chance
	// to refute) for one push/pull interval.
	mlc.GossipToTheDeadTime = cfg.PushPullInterval
	// memberlist compresses every packet it sends, pings and acks
	// included, with a new LZW writer each time (16 KiB of tables to
	// clear): in a profile of 64 starting nodes, an eighth of their CPU.
	// The packets are small and the push/pull states a few KiB, so the
	// bytes saved are not worth it. Receivers decompress either way, so
	// this mixes with nodes that still compress.
	mlc.EnableCompression = false
	mlc.TCPTimeout = cfg.TCPTimeout
	mlc.DeadNodeReclaimTime = max(cfg.DeadNodeReclaimTime, 0)

	if len(cfg.SecretKey) > 0 {
		kr, err := memberlist.NewKeyring(cfg.SecondaryKeys, cfg.SecretKey)
		if err != nil {
			return nil, fmt.Errorf("cluster: SecretKey: %w", err)
		}
		mlc.Keyring = kr
		c.keyring = kr
	}
	mlc.Label = cfg.Label

	mlc.Delegate = c.delegate
	mlc.Events = c.events
	mlc.Merge = c.merge
	mlc.Logger = newMemberlistLogger(c.logger, &c.closed)
	mlc.LogOutput = nil
	return mlc, nil
}

// LocalMember returns this node as the others see it. Its State is
// StateLeft once Leave has been called and StateDead after Close.
func (c *Cluster) LocalMember() Member {
	m := c.local.clone()
	switch {
	case c.closed.Load():
		m.State = StateDead
	case isClosed(c.leaving):
		m.State = StateLeft
	}
	return m
}

// Members returns the live (alive or suspect) members, this node included,
// sorted by Name. It reads a table that memberlist's callbacks maintain, so
// it never blocks on the network. After Leave this node is no longer
// included; after Close Members returns nil. The result is the caller's to
// keep and modify.
func (c *Cluster) Members() []Member {
	if c.closed.Load() {
		return nil
	}
	ms := c.events.snapshot()
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return ms
}

// Settled returns a channel that is closed once the first join attempt has
// finished: the node joined at least one seed, or no seed other than itself
// answered and it runs alone (it keeps retrying in the background). It is
// closed at once when there are no seeds and no Discover function, and at
// the latest by Close.
func (c *Cluster) Settled() <-chan struct{} {
	return c.settled
}

// Notify subscribes ch to membership events of other members, like
// signal.Notify: events are sent without blocking, and when ch is full the
// event is dropped and counted in Stats.DroppedEvents. Give ch a buffer, and
// treat events as hints: on any event re-read Members, which is always
// current. Notify panics if ch is nil. Subscribing the same channel twice
// has no further effect. After Close no events are sent.
func (c *Cluster) Notify(ch chan<- Event) {
	if ch == nil {
		panic("cluster: Notify using nil channel")
	}
	c.events.subscribe(ch)
}

// StopNotify unsubscribes ch. When it returns, no more events are sent on
// ch, so ch may be closed.
func (c *Cluster) StopNotify(ch chan<- Event) {
	c.events.unsubscribe(ch)
}

// Leave announces that this node leaves the cluster and waits until the
// announcement has been gossiped or ctx ends. Peers then report the node
// with EventLeave and drop it at once instead of after failure detection.
// Leave stops the background re-joins; the node cannot join again, so call
// Close next. When ctx ends first the broadcasts go on in the background,
// each bounded by 25 GossipIntervals (at least 1 s, at most 5 s), and Close
// waits for them. Leave may be called more than once: later calls wait for
// the same announcement and return its result. Leave returns ErrClosed after
// Close, ctx.Err() when ctx ends first, and an error when memberlist's leave
// broadcast timed out. On a node without other members it returns at once.
func (c *Cluster) Leave(ctx context.Context) error {
	if c.closed.Load() {
		return ErrClosed
	}
	c.leaveOnce.Do(func() {
		c.lifeMu.RLock()
		if c.closed.Load() {
			c.lifeMu.RUnlock()
			c.leaveErr = ErrClosed
			close(c.leaveDone)
			return
		}
		close(c.leaving)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer close(c.leaveDone)
			defer c.lifeMu.RUnlock()
			c.leaveErr = c.leave()
		}()
	})
	select {
	case <-c.leaveDone:
		return c.leaveErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leave runs the two broadcasts of a graceful leave. It runs with lifeMu
// held shared, so memberlist is not shut down under it.
func (c *Cluster) leave() error {
	// First publish the leaving flag in the metadata, and wait until that
	// broadcast is done: the leave message would otherwise invalidate it in
	// memberlist's queue. Peers look at the flag when the node goes away to
	// report EventLeave instead of EventFail.
	md := nodeMeta{flags: metaFlagLeaving, incarnation: c.local.Incarnation, tags: c.cfg.Tags}
	if b, err := md.encode(); err == nil {
		c.delegate.setMeta(b)
		if err := c.ml.UpdateNode(c.leaveTimeout); err != nil {
			c.logger.Debug("cluster: leave announcement", "err", err)
		}
	}
	timeout := c.leaveTimeout
	if c.events.everyPeerLeaving() {
		// A stop of every node at once: the peers go away while the leave
		// broadcast waits to reach them, and memberlist would wait its full
		// timeout for a broadcast that nobody is left to hear. A few gossip
		// rounds are enough for the peers still there.
		timeout = min(timeout, 5*c.cfg.GossipInterval)
	}
	if err := c.ml.Leave(timeout); err != nil {
		if timeout < c.leaveTimeout {
			c.logger.Info("cluster: left; every peer was leaving too", "err", err)
			return nil
		}
		c.logger.Warn("cluster: leave", "err", err)
		return fmt.Errorf("cluster: leave: %w", err)
	}
	c.logger.Info("cluster: left")
	return nil
}

// Close stops the node without leaving: to the other members it looks like
// a crash, and they report EventFail once they detect it (call Leave first
// for a graceful exit). Close stops the joiner, waits for a Leave in
// progress to finish its broadcasts, shuts memberlist down (which releases
// both ports before Close returns), and waits for the package's goroutines.
// memberlist's Shutdown does not wait for all of its goroutines: a probe in
// flight ends when its ack timer fires (at most 8 ProbeIntervals, usually
// one), a connection handler at the latest after TCPTimeout. No event is
// sent after Close returns. Close is idempotent: later calls do nothing
// and return nil. After Close, Leave returns ErrClosed, Members returns nil
// and no events are sent.
func (c *Cluster) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.stop()
		c.lifeMu.Lock()
		if e := c.ml.Shutdown(); e != nil {
			err = fmt.Errorf("cluster: shutdown: %w", e)
		}
		c.lifeMu.Unlock()
		c.wg.Wait()
		c.events.closeSubs()
		c.settle()
		c.logger.Info("cluster: closed")
	})
	return err
}

// Stats returns the cluster's counters.
func (c *Cluster) Stats() Stats {
	s := Stats{
		JoinAttempts:    c.joinAttempts.Load(),
		JoinFailures:    c.joinFailures.Load(),
		StateSyncs:      c.syncs.Load(),
		DeliveredEvents: c.events.delivered.Load(),
		DroppedEvents:   c.events.dropped.Load(),
	}
	if !c.closed.Load() {
		s.Members = c.events.count()
	}
	return s
}

func (c *Cluster) settle() {
	c.settleOnce.Do(func() { close(c.settled) })
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
