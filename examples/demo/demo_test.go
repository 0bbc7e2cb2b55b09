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

	c, err = parseFlags([]string{"-scenario", "backups"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, 5, c.nodes, "5 nodes by default in the backups scenario")
	assert.GreaterOrEqual(t, c.users, 200)
	assert.Equal(t, "n2", c.kill)
	assert.Equal(t, "n3", nextNode(c), "the second node killed")
	assert.Equal(t, []string{"-backups", "1"}, c.nodeArgs)

	c, err = parseFlags([]string{"-scenario", "backups", "-nodes", "4", "-kill", "n4", "-node-args", "-backups 2"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, 4, c.nodes)
	assert.Equal(t, "n1", nextNode(c), "the node after the last is the first")
	assert.Equal(t, []string{"-backups", "1", "-backups", "2"}, c.nodeArgs, "-node-args comes last, so it wins")

	c, err = parseFlags([]string{"-scenario", "rolling"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, 5, c.nodes)
	assert.GreaterOrEqual(t, c.users, 200)
	assert.Equal(t, []string{"-backups", "0"}, c.nodeArgs)

	for _, args := range [][]string{
		{"-scenario", "nope"},
		{"-scenario", "backups", "-nodes", "2"},
		{"-scenario", "rolling", "-kill", "n1"},
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
	assert.Contains(t, out.String(), "cluster secret: a random one for this run")
	for _, n := range []string{"n1", "n2", "n3"} {
		b, err := os.ReadFile(filepath.Join(logs, n+".log"))
		require.NoError(t, err)
		assert.Contains(t, string(b), "--- procs: "+n+" start #1")
		assert.NotContains(t, string(b), "no cluster secret", "%s ran without the secret", n)
		assert.NotContains(t, string(b), "-secret", "%s: the secret is on the command line", n)
	}
	b, _ := os.ReadFile(filepath.Join(logs, "n2.log"))
	assert.Equal(t, 2, strings.Count(string(b), "--- procs: n2 start #"), "n2 was restarted")
}

// TestDemoBackups runs the backups scenario: five
// processes with -backups 1, a SIGKILL, re-replication, another SIGKILL.
func TestDemoBackups(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/login and runs 5 processes")
	}
	logs := filepath.Join(t.TempDir(), "logs")
	logNodeLogsOnFailure(t, logs)
	var out bytes.Buffer
	code := mainExit([]string{"-scenario", "backups", "-users", "200", "-visits", "3", "-concurrency", "8", "-logs", logs}, &out, &out)
	t.Log("\n" + out.String())
	require.Equal(t, exitOK, code)
	assert.Contains(t, out.String(), "PASS: 200 users stayed logged in through the SIGKILL of n2, the re-replication and the SIGKILL of n3")
	assert.Contains(t, out.String(), "failures      0")
	assert.Contains(t, out.String(), "mode          backups(1)")
	assert.Regexp(t, `fully replicated again \S+ after the SIGKILL of n2`, out.String())
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
		b, err := os.ReadFile(filepath.Join(logs, n+".log"))
		require.NoError(t, err)
		log := string(b)
		assert.Equal(t, 1, strings.Count(log, "--- procs: "+n+" start #"), n)
		assert.Contains(t, log, "mode=backups(1)", n)
		if n == "n2" || n == "n3" {
			assert.Contains(t, log, "signal: killed", n)
		}
	}
}

// TestDemoRolling runs the rolling scenario: five
// processes with -backups 0, each restarted gracefully in turn under load.
func TestDemoRolling(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/login and runs 5 processes")
	}
	logs := filepath.Join(t.TempDir(), "logs")
	logNodeLogsOnFailure(t, logs)
	var out bytes.Buffer
	code := mainExit([]string{"-scenario", "rolling", "-users", "200", "-visits", "2", "-concurrency", "8", "-logs", logs}, &out, &out)
	t.Log("\n" + out.String())
	require.Equal(t, exitOK, code)
	assert.Contains(t, out.String(), "PASS: 200 users stayed logged in through a graceful rolling restart of all 5 nodes")
	assert.Contains(t, out.String(), "failures      0")
	assert.Contains(t, out.String(), "mode          backups(0)")
	assert.Regexp(t, `load          [1-9]\d* visits acknowledged during the roll`, out.String())
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
		b, err := os.ReadFile(filepath.Join(logs, n+".log"))
		require.NoError(t, err)
		log := string(b)
		assert.Equal(t, 2, strings.Count(log, "--- procs: "+n+" start #"), "%s was restarted once", n)
		assert.Contains(t, log, "mode=backups(0)", n)
		assert.Contains(t, out.String(), n+": SIGTERM, handed over and exited in ")
	}
}

// TestDemoUpgrade runs the upgrade scenario: three processes of the
// previous release, rolled to this build and back under load, with no
// logout, no lost visit and no failed request.
func TestDemoUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two releases of examples/login and runs 3 processes")
	}
	logs := filepath.Join(t.TempDir(), "logs")
	logNodeLogsOnFailure(t, logs)
	var out bytes.Buffer
	code := mainExit([]string{"-scenario", "upgrade", "-users", "200", "-visits", "2", "-concurrency", "8", "-logs", logs}, &out, &out)
	t.Log("\n" + out.String())
	require.Equal(t, exitOK, code)
	assert.Contains(t, out.String(), "PASS: 200 users stayed logged in through the rolling upgrade of all 3 nodes")
	assert.Contains(t, out.String(), "failures      0")
	assert.Regexp(t, `[1-9]\d* visits acknowledged, 0 failed and were not resent \(0.0%\), 0 answered 401`, out.String())
	for _, n := range []string{"n1", "n2", "n3"} {
		b, err := os.ReadFile(filepath.Join(logs, n+".log"))
		require.NoError(t, err)
		log := string(b)
		assert.Equal(t, 2, strings.Count(log, "login-previous -name "+n), "%s ran the previous release twice: first and last", n)
		assert.Equal(t, 3, strings.Count(log, "--- procs: "+n+" start #"), "%s was upgraded and rolled back", n)
	}
}

// logNodeLogsOnFailure logs the end of every node log in dir if the test
// fails, before the temporary directory is removed: the evidence for a
// failure the demo reports.
func logNodeLogsOnFailure(t *testing.T, dir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			lines = lines[max(0, len(lines)-80):]
			t.Logf("%s (last %d lines):\n%s", f, len(lines), strings.Join(lines, "\n"))
		}
	})
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
