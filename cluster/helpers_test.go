package cluster

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/testing/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }

// testLogger discards logs unless CLUSTER_TEST_LOG is set (then debug logs
// go to stderr). A t.Log-based logger would panic: memberlist goroutines log
// after Close, when the test may have ended.
func testLogger() *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig is DefaultLocalConfig with a name, seeds and a quiet logger.
func testConfig(name string, seeds ...string) Config {
	cfg := DefaultLocalConfig()
	cfg.NodeName = name
	cfg.Seeds = seeds
	cfg.Tags = map[string]string{"repl": "repl-of-" + name}
	cfg.Logger = testLogger()
	return cfg
}

// start creates a node and closes it when the test ends.
func start(t *testing.T, cfg Config) *Cluster {
	t.Helper()
	c, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

const waitTimeout = 10 * time.Second

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, waitTimeout, 10*time.Millisecond, "timed out waiting for %s", what)
}

// names returns the names of c's members, in Members order.
func names(c *Cluster) []string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.Name)
	}
	return out
}

// sees reports whether every node lists exactly the given names.
func sees(want []string, nodes ...*Cluster) func() bool {
	return func() bool {
		for _, c := range nodes {
			got := names(c)
			if len(got) != len(want) {
				return false
			}
			for i := range got {
				if got[i] != want[i] {
					return false
				}
			}
		}
		return true
	}
}

// member returns c's member called name.
func member(c *Cluster, name string) (Member, bool) {
	for _, m := range c.Members() {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

// reservePort finds a port free for both TCP and UDP on 127.0.0.1 and
// releases it, so that a node can be started on it later.
func reservePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		_ = ln.Close()
		if err != nil {
			continue
		}
		_ = pc.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

func addr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

func portOf(t *testing.T, c *Cluster) int {
	t.Helper()
	_, p, err := net.SplitHostPort(c.LocalMember().Addr)
	require.NoError(t, err)
	port, err := strconv.Atoi(p)
	require.NoError(t, err)
	return port
}

// nextEvent returns the first event on ch about member name whose type is
// not in skip, failing the test after the deadline.
func nextEvent(t *testing.T, ch <-chan Event, name string, skip ...EventType) Event {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case ev := <-ch:
			if ev.Member.Name != name || containsType(skip, ev.Type) {
				continue
			}
			return ev
		case <-deadline:
			t.Fatalf("no event about %s", name)
		}
	}
}

func containsType(ts []EventType, t EventType) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

func isSettled(c *Cluster) bool {
	select {
	case <-c.Settled():
		return true
	default:
		return false
	}
}

func nodeNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i)
	}
	return out
}
