package cluster

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func itoa(i int) string { return strconv.Itoa(i) }

func TestMeta_RoundTrip(t *testing.T) {
	for _, m := range []nodeMeta{
		{},
		{incarnation: 1<<63 + 5, tags: map[string]string{"repl": "10.0.0.1:9000", "zone": "a", "": ""}},
		{flags: metaFlagLeaving, incarnation: 42},
	} {
		b, err := m.encode()
		require.NoError(t, err)
		got, err := decodeMeta(b)
		require.NoError(t, err)
		assert.Equal(t, uint8(metaVersion), got.version)
		assert.Equal(t, m.flags, got.flags)
		assert.Equal(t, m.incarnation, got.incarnation)
		if len(m.tags) == 0 {
			assert.Nil(t, got.tags)
		} else {
			assert.Equal(t, m.tags, got.tags)
		}
	}
}

func TestMeta_Deterministic(t *testing.T) {
	tags := map[string]string{}
	for i := range 20 {
		tags["k"+itoa(i)] = "v"
	}
	first, err := nodeMeta{incarnation: 7, tags: tags}.encode()
	require.NoError(t, err)
	for range 20 {
		b, err := nodeMeta{incarnation: 7, tags: maps.Clone(tags)}.encode()
		require.NoError(t, err)
		require.Equal(t, first, b)
	}
}

func TestMeta_Size(t *testing.T) {
	require.Equal(t, memberlist.MetaMaxSize, maxMetaSize)
	// The largest single tag that fits: 2 header bytes, incarnation (9 bytes
	// for a UnixNano), count, key and value lengths.
	inc := uint64(time.Now().UnixNano())
	fits := nodeMeta{incarnation: inc, tags: map[string]string{"k": strings.Repeat("v", 512-2-9-1-1-1-2)}}
	b, err := fits.encode()
	require.NoError(t, err)
	assert.Len(t, b, 512)
	fits.tags["k"] += "v"
	_, err = fits.encode()
	require.ErrorIs(t, err, errMetaTooLarge)
}

func TestMeta_DecodeGarbage(t *testing.T) {
	valid, err := nodeMeta{incarnation: 3, tags: map[string]string{"a": "b"}}.encode()
	require.NoError(t, err)
	for name, b := range map[string][]byte{
		"nil":           nil,
		"one byte":      {1},
		"version 0":     {0, 0, 0, 0},
		"bad varint":    {1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"huge count":    {1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"long key":      {1, 0, 1, 1, 50, 'a'},
		"trailing":      append(append([]byte{}, valid...), 0),
		"truncated":     valid[:len(valid)-1],
		"duplicate":     {1, 0, 1, 2, 1, 'a', 0, 1, 'a', 0},
		"too large":     make([]byte, 513),
		"unsorted":      {1, 0, 1, 2, 1, 'b', 0, 1, 'a', 0},
		"long varint":   {1, 0, 0x81, 0x00, 0},
		"missing value": {1, 0, 1, 1, 1, 'a'},
	} {
		_, err := decodeMeta(b)
		assert.Error(t, err, name)
	}
	// A later version may append fields.
	next := append([]byte{2}, valid[1:]...)
	next = append(next, 9, 9, 9)
	m, err := decodeMeta(next)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), m.incarnation)
	assert.Equal(t, map[string]string{"a": "b"}, m.tags)
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []nodeMeta{
		{},
		{incarnation: uint64(time.Now().UnixNano()), tags: map[string]string{"repl": "127.0.0.1:7000"}},
		{flags: metaFlagLeaving, incarnation: 1, tags: map[string]string{"a": "", "b": "c"}},
	} {
		b, err := m.encode()
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if m.version != metaVersion {
			return
		}
		// What decodes re-encodes to the same bytes.
		again, err := m.encode()
		require.NoError(t, err)
		require.Equal(t, b, again)
	})
}

func TestConfig_Validate(t *testing.T) {
	ok := DefaultLocalConfig()
	ok.NodeName = "a"
	require.NoError(t, ok.withDefaults().validate())
	require.NoError(t, Config{NodeName: "a"}.withDefaults().validate(), "zero fields take defaults")

	for name, mutate := range map[string]func(*Config){
		"empty name":        func(c *Config) { c.NodeName = "" },
		"long name":         func(c *Config) { c.NodeName = strings.Repeat("n", 200) },
		"bind no port":      func(c *Config) { c.BindAddr = "127.0.0.1" },
		"bind hostname":     func(c *Config) { c.BindAddr = "localhost:7946" },
		"bind bad port":     func(c *Config) { c.BindAddr = "127.0.0.1:70000" },
		"bind :: no adv":    func(c *Config) { c.BindAddr = "[::]:7946" },
		"advertise name":    func(c *Config) { c.AdvertiseAddr = "example.com:7946" },
		"advertise 0.0.0.0": func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7946" },
		"seed empty":        func(c *Config) { c.Seeds = []string{""} },
		"seed port 0":       func(c *Config) { c.Seeds = []string{"10.0.0.1:0"} },
		"seed bad":          func(c *Config) { c.Seeds = []string{"a b"} },
		"seed no host":      func(c *Config) { c.Seeds = []string{":7946"} },
		"key size":          func(c *Config) { c.SecretKey = []byte("short") },
		"label":             func(c *Config) { c.Label = strings.Repeat("l", 256) },
		"negative retry":    func(c *Config) { c.JoinRetryInterval = -1 },
		"negative probe":    func(c *Config) { c.ProbeInterval = -time.Second },
		"probe timeout":     func(c *Config) { c.ProbeTimeout = 2 * c.ProbeInterval },
		"suspicion":         func(c *Config) { c.SuspicionMult = -1 },
		"tags":              func(c *Config) { c.Tags = map[string]string{"x": strings.Repeat("x", 600)} },
	} {
		cfg := ok
		mutate(&cfg)
		assert.Error(t, cfg.validate(), name)
	}

	for _, seed := range []string{"10.0.0.1:7946", "node-1", "node-1.example.com:8000", "[::1]:7946", "::1", "[fe80::1]"} {
		cfg := ok
		cfg.Seeds = []string{seed}
		assert.NoError(t, cfg.withDefaults().validate(), seed)
	}
	host, port, err := splitSeed("node-1")
	require.NoError(t, err)
	assert.Equal(t, "node-1", host)
	assert.Equal(t, DefaultPort, port)

	cfg := ok
	cfg.BindAddr = "[::]:7946"
	cfg.AdvertiseAddr = "[fd00::1]:7946"
	assert.NoError(t, cfg.withDefaults().validate())
}

func TestConfig_Defaults(t *testing.T) {
	lan := memberlist.DefaultLANConfig()
	d := DefaultConfig()
	assert.Equal(t, lan.ProbeInterval, d.ProbeInterval)
	assert.Equal(t, lan.ProbeTimeout, d.ProbeTimeout)
	assert.Equal(t, lan.SuspicionMult, d.SuspicionMult)
	assert.Equal(t, lan.PushPullInterval, d.PushPullInterval)
	assert.Equal(t, lan.GossipInterval, d.GossipInterval)
	assert.Equal(t, lan.TCPTimeout, d.TCPTimeout)
	assert.Equal(t, "0.0.0.0:7946", d.BindAddr)
	assert.Equal(t, "127.0.0.1:0", DefaultLocalConfig().BindAddr)
	assert.Same(t, slog.Default(), Config{}.withDefaults().Logger)
}

func TestSelfAddrs(t *testing.T) {
	ip := net.ParseIP
	specific := newSelfAddrs(ip("127.0.0.1"), 7000, ip("127.0.0.1"), 7000)
	assert.True(t, specific.is(ip("127.0.0.1"), 7000))
	assert.True(t, specific.is(ip("0.0.0.0"), 7000))
	assert.False(t, specific.is(ip("127.0.0.2"), 7000))
	assert.False(t, specific.is(ip("127.0.0.1"), 7001))

	natted := newSelfAddrs(ip("10.0.0.5"), 7000, ip("203.0.113.9"), 17000)
	assert.True(t, natted.is(ip("203.0.113.9"), 17000))
	assert.True(t, natted.is(ip("10.0.0.5"), 7000))
	assert.False(t, natted.is(ip("203.0.113.9"), 7000))

	wild := newSelfAddrs(net.IPv4zero, 7946, ip("10.1.2.3"), 7946)
	assert.True(t, wild.is(ip("127.0.0.1"), 7946))
	assert.True(t, wild.is(ip("10.1.2.3"), 7946))
	assert.False(t, wild.is(ip("10.9.9.9"), 7946))
	assert.False(t, wild.is(ip("127.0.0.1"), 7947))
	if len(wild.local) > 0 {
		assert.True(t, wild.is(wild.local[len(wild.local)-1], 7946))
	}
}

func TestStrings(t *testing.T) {
	assert.Equal(t, "alive", StateAlive.String())
	assert.Equal(t, "suspect", StateSuspect.String())
	assert.Equal(t, "dead", StateDead.String())
	assert.Equal(t, "left", StateLeft.String())
	assert.Equal(t, "State(9)", State(9).String())
	assert.Equal(t, "join", EventJoin.String())
	assert.Equal(t, "leave", EventLeave.String())
	assert.Equal(t, "fail", EventFail.String())
	assert.Equal(t, "update", EventUpdate.String())
	assert.Equal(t, "EventType(9)", EventType(9).String())
	assert.Equal(t, "fail b (127.0.0.1:1)", Event{Type: EventFail, Member: Member{Name: "b", Addr: "127.0.0.1:1"}}.String())
}

// recorder is a slog.Handler that keeps records.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func TestLogBridge(t *testing.T) {
	rec := &recorder{}
	var closed atomic.Bool
	l := newMemberlistLogger(slog.New(rec), &closed)
	l.Printf("[DEBUG] memberlist: Stream connection from=%s", "127.0.0.1:1")
	l.Printf("[INFO] memberlist: Marking b as failed")
	l.Printf("[WARN] memberlist: Refuting a suspect message (from: b)")
	l.Printf("[ERR] memberlist: Failed to send ping: %v", "boom")
	l.Printf("[ERROR] memberlist: x")
	l.Printf("Err: Could not set the deadline")
	l.Printf("[ODD] thing")

	want := []struct {
		level slog.Level
		msg   string
	}{
		{slog.LevelDebug, "Stream connection from=127.0.0.1:1"},
		{slog.LevelInfo, "Marking b as failed"},
		{slog.LevelWarn, "Refuting a suspect message (from: b)"},
		{slog.LevelError, "Failed to send ping: boom"},
		{slog.LevelError, "x"},
		{slog.LevelInfo, "Err: Could not set the deadline"},
		{slog.LevelInfo, "[ODD] thing"},
	}
	require.Len(t, rec.records, len(want))
	for i, w := range want {
		assert.Equal(t, w.level, rec.records[i].Level, w.msg)
		assert.Equal(t, w.msg, rec.records[i].Message)
	}

	// After Close, memberlist's leftovers are debug noise.
	closed.Store(true)
	l.Printf("[ERR] memberlist: Failed to send indirect UDP ping: use of closed network connection")
	require.Len(t, rec.records, len(want)+1)
	assert.Equal(t, slog.LevelDebug, rec.records[len(want)].Level)
}

func TestDelegate_NodeMetaNeverTooLong(t *testing.T) {
	d := &delegate{}
	assert.Nil(t, d.NodeMeta(512))
	d.setMeta(make([]byte, 100))
	assert.Len(t, d.NodeMeta(512), 100)
	assert.Nil(t, d.NodeMeta(50))
}
