package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestSplitArgs(t *testing.T) {
	for in, want := range map[string][]string{
		"":                            nil,
		"  ":                          nil,
		"-backups 1":                  {"-backups", "1"},
		`-secret "a b"  -x`:           {"-secret", "a b", "-x"},
		`-s 'it''s' -t a\ b`:          {"-s", "its", "-t", "a b"},
		`-q "say \"hi\"" ''`:          {"-q", `say "hi"`, ""},
		"-a\t-b\n-c":                  {"-a", "-b", "-c"},
		`-log-level=debug -seeds=x,y`: {"-log-level=debug", "-seeds=x,y"},
	} {
		got, err := splitArgs(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, bad := range []string{`"open`, `'open`, `trailing\`} {
		_, err := splitArgs(bad)
		assert.Error(t, err, bad)
	}
}

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseFlags(nil, &stderr)
	require.NoError(t, err)
	assert.Equal(t, 3, c.nodes)
	assert.Equal(t, 300, c.users)
	assert.Equal(t, 5, c.visits)
	assert.Equal(t, 32, c.concurrency)
	assert.Equal(t, "n2", c.kill, "the second node by default")

	c, err = parseFlags([]string{"-nodes", "5", "-kill", "n5", "-node-args", "-backups 1 -log-level debug"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, []string{"-backups", "1", "-log-level", "debug"}, c.nodeArgs)

	for _, args := range [][]string{
		{"-nodes", "1"},
		{"-kill", "n4"},
		{"-users", "0"},
		{"-visits", "0"},
		{"-concurrency", "0"},
		{"-timeout", "0s"},
		{"-node-args", `"unterminated`},
		{"extra"},
	} {
		_, err := parseFlags(args, &stderr)
		assert.Error(t, err, args)
	}
}

// TestDemo runs the whole scenario against the real examples/login: three
// processes, a SIGKILL and a restart. It is the end-to-end test of the
// project, so it is skipped only with -short.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/login and runs 3 processes")
	}
	logs := filepath.Join(t.TempDir(), "logs")
	var out bytes.Buffer
	code := mainExit([]string{"-users", "40", "-visits", "3", "-concurrency", "8", "-logs", logs}, &out, &out)
	t.Log("\n" + out.String())
	require.Equal(t, exitOK, code)
	assert.Contains(t, out.String(), "PASS: 40 users stayed logged in")
	assert.Contains(t, out.String(), "failures      0")
	for _, n := range []string{"n1", "n2", "n3"} {
		b, err := os.ReadFile(filepath.Join(logs, n+".log"))
		require.NoError(t, err)
		assert.Contains(t, string(b), "--- procs: "+n+" start #1")
	}
	b, _ := os.ReadFile(filepath.Join(logs, "n2.log"))
	assert.Equal(t, 2, strings.Count(string(b), "--- procs: n2 start #"), "n2 was restarted")
}

// TestDemo_FailsWhenANodeCannotStart checks that the demo can fail: with a
// node that cannot start, it exits non-zero and keeps the logs.
func TestDemo_FailsWhenANodeCannotStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/login")
	}
	var out bytes.Buffer
	code := mainExit([]string{"-users", "5", "-node-args", "-no-such-flag", "-ready-timeout", "20s"}, &out, &out)
	t.Log("\n" + out.String())
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, out.String(), "exited before healthy")
	assert.Contains(t, out.String(), "node logs kept in")
	// The kept logs are in a temporary directory the demo made: remove it.
	for _, line := range strings.Split(out.String(), "\n") {
		if _, dir, ok := strings.Cut(line, "node logs kept in "); ok {
			require.True(t, strings.HasPrefix(dir, os.TempDir()), dir)
			os.RemoveAll(dir)
		}
	}
}
