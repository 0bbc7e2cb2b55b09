package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// DefaultPort is the gossip port of DefaultConfig. A seed given without a
// port ("node1" instead of "node1:7946") is dialled on DefaultPort.
const DefaultPort = 7946

// maxNodeNameLen bounds Config.NodeName: the name travels in every gossip
// message, which must fit one UDP packet.
const maxNodeNameLen = 128

// maxLabelLen is memberlist's LabelMaxSize.
const maxLabelLen = 255

// Config configures a Cluster. Build one from DefaultConfig or
// DefaultLocalConfig and change what you need. A zero field takes the value
// DefaultConfig gives it, so Config{NodeName: "web-1", Seeds: seeds} is a
// valid LAN configuration. New copies the Config; changing it afterwards has
// no effect.
type Config struct {
	// NodeName is this node's name, unique in the cluster. It is the identity
	// of the node: a process restarted with the same name is recognised as
	// the same member (with a new Incarnation). Default: os.Hostname().
	NodeName string

	// BindAddr is the "host:port" the gossip protocol listens on, for both
	// TCP and UDP. The host must be an IP address; an empty host or 0.0.0.0
	// listens on every IPv4 interface. Port 0 picks a free port: read it back
	// from LocalMember().Addr. Default: "0.0.0.0:7946" (DefaultPort).
	BindAddr string

	// AdvertiseAddr is the "host:port" other members use to reach this node.
	// The host must be an IP address. Leave it empty to advertise the bound
	// address (for a 0.0.0.0 bind: the first private IPv4 address of the
	// host; New fails if it has none) and the bound port. A port of 0 advertises the bound port; when
	// BindAddr's port is 0 the bound port is always advertised (memberlist
	// overrides it). Set it behind NAT or in containers. Default: empty.
	AdvertiseAddr string

	// Seeds are gossip addresses ("host:port", or "host" for DefaultPort) of
	// members to join. Every node may be given the same list, itself
	// included: addresses of this node are skipped. Any seed may be down or
	// may start later; see JoinRetryInterval and RejoinInterval. Host names
	// are resolved again on every attempt. Default: none (the node starts
	// alone and waits for others to join it).
	Seeds []string

	// Discover, when set, finds more seeds while the node runs, for
	// clusters whose members come and go (Kubernetes, autoscaling groups):
	// it is called before every join attempt (at start, every
	// JoinRetryInterval while the node is alone, every RejoinInterval
	// otherwise), and the addresses it returns ("host:port" or "host") are
	// tried like Seeds, after them. DNSSeeds makes one that reads A, AAAA
	// or SRV records, such as those of a Kubernetes headless Service. It is
	// called from one goroutine, never concurrently, with a context that
	// ends after TCPTimeout or at Close. Addresses returned together with
	// an error are still tried; the error is logged (at warning level when
	// discovery starts failing). Default: none.
	Discover func(ctx context.Context) ([]string, error)

	// Tags are published to the other members in this node's metadata, for
	// example the address of the replication transport. The encoded metadata
	// (tags plus about a dozen bytes) must fit in 512 bytes (memberlist's
	// limit); New returns an error otherwise. Tags cannot change while the
	// node runs. Default: none.
	Tags map[string]string

	// SecretKey, when set, encrypts and authenticates all gossip with
	// AES-GCM. It must be 16, 24 or 32 bytes (AES-128/192/256) and the same
	// on every member; a node with another key cannot join. It is the
	// primary key of the node's keyring; rotate it with InstallKey, UseKey
	// and RemoveKey. Default: none (gossip in clear text: use only on a
	// trusted network).
	SecretKey []byte

	// SecondaryKeys are further gossip keys that are accepted but not used
	// to seal messages, like keys installed with InstallKey: give them to a
	// node that restarts in the middle of a key rotation. Each must be 16,
	// 24 or 32 bytes. Requires SecretKey. Default: none.
	SecondaryKeys [][]byte

	// Label, when set, is prepended to every gossip packet and stream (and is
	// authenticated data when SecretKey is set); members with different
	// labels ignore each other. Use it to keep two clusters on one network
	// apart. At most 255 bytes. Default: empty.
	Label string

	// JoinRetryInterval is the pause between join attempts while the node
	// has no other member: it was started before its seeds, or all seeds are
	// down. Each attempt dials every seed once. It is also the pause between
	// re-joins of a seed that still knows a previous life of this node at
	// another address (see DeadNodeReclaimTime), and between the full
	// state exchanges with a random member that a node makes while the
	// membership changes (for 5 intervals after the last join, leave or
	// failure it sees), so that a node that missed the gossip of a change
	// learns of it within seconds. Default: 2s; local: 200ms.
	JoinRetryInterval time.Duration

	// RejoinInterval is how often a node that has other members re-joins the
	// seeds that are not among its members (one attempt per seed; failures
	// are logged at debug level). This heals a partition between two groups
	// that both survived, and merges nodes that each started alone.
	// Default: 30s; local: 1s.
	RejoinInterval time.Duration

	// ProbeInterval is the failure detector's period: every interval one
	// member, chosen round robin, is probed by UDP ping (and indirectly
	// through others, plus a TCP ping, if the direct ping fails). Lower is
	// faster detection for more traffic. Default: 1s; local: 200ms.
	ProbeInterval time.Duration

	// ProbeTimeout is how long a probe waits for an ack before asking other
	// members to probe indirectly. Set it to the 99th percentile round trip
	// time of your network; it must not exceed ProbeInterval.
	// Default: 500ms; local: 100ms.
	ProbeTimeout time.Duration

	// SuspicionMult sets how long a member that failed a probe stays suspect
	// before it is declared failed: SuspicionMult * max(1, log10(N)) *
	// ProbeInterval for N members, shortened by confirmations from other
	// members. A suspect member can refute in that time. Crash detection
	// therefore takes about one to two ProbeIntervals plus that timeout.
	// Default: 4; local: 2.
	SuspicionMult int

	// PushPullInterval is the period of full state exchanges with one random
	// member over TCP. They repair views that gossip left inconsistent (for
	// example right after several joins). Default: 30s; local: 1s.
	PushPullInterval time.Duration

	// GossipInterval is the period at which queued membership messages
	// (joins, leaves, suspicions) are gossiped to a few random members in
	// addition to riding on probes. Lower spreads news faster; a graceful
	// Leave takes a few GossipIntervals. Default: 200ms; local: 50ms.
	GossipInterval time.Duration

	// TCPTimeout bounds dialling a member and each read or write of a gossip
	// stream (join, push/pull, TCP fallback ping). A join attempt to a seed
	// whose host drops packets takes this long. Default: 10s; local: 1s.
	TCPTimeout time.Duration

	// DeadNodeReclaimTime is how long after a member was declared failed its
	// name may be taken by a node at another address (a process restarted
	// on a new IP). Until then the newcomer is rejected as a name conflict;
	// a member that left gracefully can be replaced at once, and a process
	// restarted at the same address is never subject to it. A negative value
	// never allows it. Default: 10s; local: 1s.
	DeadNodeReclaimTime time.Duration

	// Logger receives the cluster's logs, and memberlist's own log lines at
	// their levels ([DEBUG], [INFO], [WARN], [ERR]) with the attribute
	// component=memberlist. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the configuration for a LAN: memberlist's
// DefaultLANConfig timers, a 0.0.0.0:7946 bind and the host name as node
// name. Crash detection takes about 6-7 s; a graceful Leave propagates in
// under a second.
func DefaultConfig() Config {
	hostname, _ := os.Hostname()
	return Config{
		NodeName:            hostname,
		BindAddr:            net.JoinHostPort("0.0.0.0", strconv.Itoa(DefaultPort)),
		JoinRetryInterval:   2 * time.Second,
		RejoinInterval:      30 * time.Second,
		ProbeInterval:       time.Second,
		ProbeTimeout:        500 * time.Millisecond,
		SuspicionMult:       4,
		PushPullInterval:    30 * time.Second,
		GossipInterval:      200 * time.Millisecond,
		TCPTimeout:          10 * time.Second,
		DeadNodeReclaimTime: 10 * time.Second,
	}
}

// DefaultLocalConfig returns a configuration for nodes on one host: tests,
// demos, development. It binds 127.0.0.1 on a free port and uses fast timers
// that detect a crash in about a second. These timers cost traffic and
// produce false suspicions on a loaded network; do not use them across
// machines.
func DefaultLocalConfig() Config {
	hostname, _ := os.Hostname()
	return Config{
		NodeName:            hostname,
		BindAddr:            "127.0.0.1:0",
		JoinRetryInterval:   200 * time.Millisecond,
		RejoinInterval:      time.Second,
		ProbeInterval:       200 * time.Millisecond,
		ProbeTimeout:        100 * time.Millisecond,
		SuspicionMult:       2,
		PushPullInterval:    time.Second,
		GossipInterval:      50 * time.Millisecond,
		TCPTimeout:          time.Second,
		DeadNodeReclaimTime: time.Second,
	}
}

// withDefaults returns c with every zero field set from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.NodeName == "" {
		c.NodeName = d.NodeName
	}
	if c.BindAddr == "" {
		c.BindAddr = d.BindAddr
	}
	if c.JoinRetryInterval == 0 {
		c.JoinRetryInterval = d.JoinRetryInterval
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = d.RejoinInterval
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.SuspicionMult == 0 {
		c.SuspicionMult = d.SuspicionMult
	}
	if c.PushPullInterval == 0 {
		c.PushPullInterval = d.PushPullInterval
	}
	if c.GossipInterval == 0 {
		c.GossipInterval = d.GossipInterval
	}
	if c.TCPTimeout == 0 {
		c.TCPTimeout = d.TCPTimeout
	}
	if c.DeadNodeReclaimTime == 0 {
		c.DeadNodeReclaimTime = d.DeadNodeReclaimTime
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate reports the first problem of a Config whose defaults have been
// applied (New applies them before it calls validate).
func (c Config) validate() error {
	if c.NodeName == "" {
		return fmt.Errorf("cluster: NodeName is empty and the host name is unknown")
	}
	if len(c.NodeName) > maxNodeNameLen {
		return fmt.Errorf("cluster: NodeName is %d bytes, more than %d", len(c.NodeName), maxNodeNameLen)
	}
	ip, _, err := parseIPPort(c.BindAddr)
	if err != nil {
		return fmt.Errorf("cluster: BindAddr: %w", err)
	}
	if ip != nil && ip.To4() == nil && ip.IsUnspecified() && c.AdvertiseAddr == "" {
		return fmt.Errorf("cluster: BindAddr %q needs an AdvertiseAddr", c.BindAddr)
	}
	if c.AdvertiseAddr != "" {
		ip, _, err := parseIPPort(c.AdvertiseAddr)
		if err != nil {
			return fmt.Errorf("cluster: AdvertiseAddr: %w", err)
		}
		if ip == nil || ip.IsUnspecified() {
			return fmt.Errorf("cluster: AdvertiseAddr %q: need a reachable IP address", c.AdvertiseAddr)
		}
	}
	for _, s := range c.Seeds {
		if _, _, err := splitSeed(s); err != nil {
			return fmt.Errorf("cluster: Seeds: %w", err)
		}
	}
	switch len(c.SecretKey) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("cluster: SecretKey is %d bytes, want 16, 24 or 32", len(c.SecretKey))
	}
	if len(c.SecondaryKeys) > 0 && len(c.SecretKey) == 0 {
		return fmt.Errorf("cluster: SecondaryKeys require a SecretKey")
	}
	for i, k := range c.SecondaryKeys {
		switch len(k) {
		case 16, 24, 32:
		default:
			return fmt.Errorf("cluster: SecondaryKeys[%d] is %d bytes, want 16, 24 or 32", i, len(k))
		}
	}
	if len(c.Label) > maxLabelLen {
		return fmt.Errorf("cluster: Label is %d bytes, more than %d", len(c.Label), maxLabelLen)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"JoinRetryInterval", c.JoinRetryInterval},
		{"RejoinInterval", c.RejoinInterval},
		{"ProbeInterval", c.ProbeInterval},
		{"ProbeTimeout", c.ProbeTimeout},
		{"PushPullInterval", c.PushPullInterval},
		{"GossipInterval", c.GossipInterval},
		{"TCPTimeout", c.TCPTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("cluster: %s must be positive, not %v", d.name, d.v)
		}
	}
	if c.ProbeTimeout > c.ProbeInterval {
		return fmt.Errorf("cluster: ProbeTimeout %v exceeds ProbeInterval %v", c.ProbeTimeout, c.ProbeInterval)
	}
	if c.SuspicionMult < 1 {
		return fmt.Errorf("cluster: SuspicionMult must be at least 1, not %d", c.SuspicionMult)
	}
	if _, err := (nodeMeta{tags: c.Tags}).encode(); err != nil {
		return fmt.Errorf("cluster: Tags: %w", err)
	}
	return nil
}

// parseIPPort splits "ip:port". An empty host gives a nil IP (BindAddr
// treats it as 0.0.0.0).
func parseIPPort(addr string) (net.IP, int, error) {
	host, sport, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	port, err := strconv.ParseUint(sport, 10, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("%q: bad port", addr)
	}
	if host == "" {
		return nil, int(port), nil
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("%q: host must be an IP address", addr)
	}
	return ip, int(port), nil
}

// splitSeed splits a seed into host and port, defaulting the port to
// DefaultPort.
func splitSeed(seed string) (string, int, error) {
	if seed == "" {
		return "", 0, fmt.Errorf("empty seed")
	}
	host, sport, err := net.SplitHostPort(seed)
	if err != nil {
		// No port: a bare host name or IP (IPv6 possibly in brackets).
		host = seed
		if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
		}
		if host == "" || net.ParseIP(host) == nil && !validHostname(host) {
			return "", 0, fmt.Errorf("%q: want host:port", seed)
		}
		return host, DefaultPort, nil
	}
	port, err := strconv.ParseUint(sport, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("%q: bad port", seed)
	}
	if host == "" {
		return "", 0, fmt.Errorf("%q: missing host", seed)
	}
	return host, int(port), nil
}

// validHostname reports whether s looks like a DNS name (letters, digits,
// '-', '.', '_').
func validHostname(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '.', b == '_':
		default:
			return false
		}
	}
	return true
}
