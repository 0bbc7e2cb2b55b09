package procs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// The test binary re-execs itself as the child process (groupcache style):
// with childEnv set, TestMain runs a child mode instead of the tests.
const (
	childEnv     = "PROCS_TEST_CHILD"       // mode: sleep, serve, exit, grandchild
	addrEnv      = "PROCS_TEST_ADDR"        // serve: listen address
	unhealthyEnv = "PROCS_TEST_UNHEALTHY"   // serve: answer 503 to this many polls first
	ignoreEnv    = "PROCS_TEST_IGNORE_TERM" // serve: ignore SIGTERM
	linesEnv     = "PROCS_TEST_LINES"       // exit: print this many lines first
	runEnv       = "PROCS_TEST_RUN"         // exit: a label printed on each line
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	goleak.VerifyTestMain(m)
}

func child(mode string) int {
	switch mode {
	case "sleep":
		fmt.Println("ready")
		time.Sleep(time.Hour)
		return 0
	case "exit":
		fmt.Fprintln(os.Stderr, "child: cannot start: broken config")
		n, _ := strconv.Atoi(os.Getenv(linesEnv))
		for i := range n {
			fmt.Printf("line %d of run %s\n", i+1, os.Getenv(runEnv))
		}
		return 3
	case "grandchild":
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), childEnv+"=sleep")
		if err := cmd.Start(); err != nil {
			fmt.Println("grandchild start:", err)
			return 1
		}
		fmt.Printf("grandchild pid %d\n", cmd.Process.Pid)
		time.Sleep(time.Hour)
		return 0
	case "serve":
		return serve()
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", mode)
	return 2
}

func serve() int {
	term := make(chan os.Signal, 1)
	if os.Getenv(ignoreEnv) != "" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	unhealthy, _ := strconv.Atoi(os.Getenv(unhealthyEnv))
	var polls atomic.Int64
	ln, err := net.Listen("tcp", os.Getenv(addrEnv))
	if err != nil {
		fmt.Println("listen:", err)
		return 1
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if polls.Add(1) <= int64(unhealthy) {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})}
	go srv.Serve(ln)
	fmt.Println("serving on", ln.Addr())
	<-term
	fmt.Println("graceful exit")
	srv.Close()
	return 0
}

// childSpec returns a Spec that re-runs this test binary in mode.
func childSpec(t *testing.T, name, mode string, env ...string) Spec {
	t.Helper()
	return Spec{
		Name: name,
		Path: os.Args[0],
		// A race-enabled child would sleep 1s at exit otherwise.
		Env:     append([]string{childEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}, env...),
		LogPath: filepath.Join(t.TempDir(), name+".log"),
	}
}

// serveSpec returns a Spec of a child serving HTTP on a free port.
func serveSpec(t *testing.T, name string, env ...string) Spec {
	t.Helper()
	addrs, err := FreeAddrs("", 1, TCP)
	require.NoError(t, err)
	s := childSpec(t, name, "serve", append(env, addrEnv+"="+addrs[0])...)
	s.HealthURL = "http://" + addrs[0] + "/healthz"
	return s
}

func startT(t *testing.T, s Spec) *Process {
	t.Helper()
	p, err := Start(s)
	require.NoError(t, err)
	t.Cleanup(func() { p.Kill() })
	return p
}

// alive reports whether pid is a process that is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// The state follows the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// logContains waits until p's log contains s.
func logContains(t *testing.T, p *Process, s string) {
	t.Helper()
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(p.LogPath())
		return strings.Contains(string(b), s)
	}, 10*time.Second, 5*time.Millisecond, "log of %s never contained %q", p.Name(), s)
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestProcess_KillReallyKills(t *testing.T) {
	p := startT(t, childSpec(t, "sleeper", "sleep"))
	logContains(t, p, "ready")
	pid := p.Pid()
	require.True(t, alive(pid))
	require.True(t, p.Running())

	require.NoError(t, p.Kill())
	assert.False(t, p.Running())
	assert.False(t, alive(pid), "pid %d still alive after Kill", pid)
	var exitErr *exec.ExitError
	require.ErrorAs(t, p.ExitError(), &exitErr)
	assert.Equal(t, syscall.SIGKILL, exitErr.Sys().(syscall.WaitStatus).Signal())
	require.NoError(t, p.Kill(), "killing a dead process does nothing")
	assert.Error(t, p.Wait(context.Background()))
}

func TestProcess_KillKillsProcessGroup(t *testing.T) {
	p := startT(t, childSpec(t, "parent", "grandchild"))
	logContains(t, p, "grandchild pid")
	b, err := os.ReadFile(p.LogPath())
	require.NoError(t, err)
	var gpid int
	_, err = fmt.Sscanf(string(b[strings.Index(string(b), "grandchild pid"):]), "grandchild pid %d", &gpid)
	require.NoError(t, err)
	require.True(t, alive(gpid))

	require.NoError(t, p.Kill())
	require.Eventually(t, func() bool { return !alive(gpid) }, 10*time.Second, 5*time.Millisecond,
		"grandchild %d survived", gpid)
}

func TestProcess_StopGraceful(t *testing.T) {
	p := startT(t, serveSpec(t, "srv"))
	require.NoError(t, p.WaitHealthy(ctxTimeout(t, 10*time.Second)))
	require.NoError(t, p.Stop(ctxTimeout(t, 10*time.Second)))
	assert.NoError(t, p.ExitError(), "exit status 0 after a handled SIGTERM")
	logContains(t, p, "graceful exit")
	require.NoError(t, p.Stop(context.Background()), "stopping a stopped process does nothing")
}

func TestProcess_StopEscalatesToKill(t *testing.T) {
	p := startT(t, serveSpec(t, "stubborn", ignoreEnv+"=1"))
	require.NoError(t, p.WaitHealthy(ctxTimeout(t, 10*time.Second)))
	err := p.Stop(ctxTimeout(t, 100*time.Millisecond))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, p.Running())
	assert.False(t, alive(p.Pid()))
}

func TestProcess_WaitHealthyAfter503s(t *testing.T) {
	p := startT(t, serveSpec(t, "slow", unhealthyEnv+"=3"))
	require.NoError(t, p.WaitHealthy(ctxTimeout(t, 10*time.Second)))
}

func TestProcess_WaitHealthyFailsFastOnExit(t *testing.T) {
	s := childSpec(t, "broken", "exit")
	s.HealthURL = "http://127.0.0.1:1/healthz"
	p := startT(t, s)
	start := time.Now()
	err := p.WaitHealthy(ctxTimeout(t, time.Minute))
	require.ErrorIs(t, err, ErrExited)
	assert.Contains(t, err.Error(), "broken config", "the error quotes the output")
	assert.Less(t, time.Since(start), 30*time.Second)
	var exitErr *exec.ExitError
	require.ErrorAs(t, p.Wait(context.Background()), &exitErr)
	assert.Equal(t, 3, exitErr.ExitCode())
}

func TestProcess_WaitHealthyQuotesOnlyTheLastRun(t *testing.T) {
	s := childSpec(t, "chatty", "exit", linesEnv+"=30", runEnv+"=first")
	s.HealthURL = "http://127.0.0.1:1/healthz"
	p := startT(t, s)
	require.ErrorIs(t, p.WaitHealthy(ctxTimeout(t, time.Minute)), ErrExited)
	require.NoError(t, p.Restart())
	err := p.WaitHealthy(ctxTimeout(t, time.Minute))
	require.ErrorIs(t, err, ErrExited)
	msg := err.Error()
	assert.Contains(t, msg, "broken config")
	assert.Contains(t, msg, "line 7 of run first")
	assert.Contains(t, msg, "[... 15 lines ...]", "31 lines: 8 first, 8 last")
	assert.Contains(t, msg, "line 30 of run first")
	assert.NotContains(t, msg, "line 8 of run first")
	assert.NotContains(t, msg, "exited at", "not the footer")
	assert.Equal(t, 1, strings.Count(msg, "broken config"), "only the last run")
}

func TestProcess_WaitHealthyDeadline(t *testing.T) {
	addrs, err := FreeAddrs("", 1, TCP)
	require.NoError(t, err)
	s := childSpec(t, "mute", "sleep")
	s.HealthURL = "http://" + addrs[0] + "/healthz"
	p := startT(t, s)
	err = p.WaitHealthy(ctxTimeout(t, 100*time.Millisecond))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Contains(t, err.Error(), "connection refused")
	assert.True(t, p.Running())
}

func TestProcess_WaitTimesOut(t *testing.T) {
	p := startT(t, childSpec(t, "sleeper", "sleep"))
	require.ErrorIs(t, p.Wait(ctxTimeout(t, 10*time.Millisecond)), context.DeadlineExceeded)
}

func TestProcess_RestartSameArgsAndPorts(t *testing.T) {
	p := startT(t, serveSpec(t, "phoenix"))
	require.NoError(t, p.WaitHealthy(ctxTimeout(t, 10*time.Second)))
	pid1 := p.Pid()
	require.NoError(t, p.Kill())

	require.NoError(t, p.Restart())
	require.NoError(t, p.WaitHealthy(ctxTimeout(t, 10*time.Second)), "the same port is free again")
	assert.NotEqual(t, pid1, p.Pid())
	assert.Equal(t, 2, p.Starts())
	assert.True(t, p.Running())

	// Restart of a running process kills it first.
	pid2 := p.Pid()
	require.NoError(t, p.Restart())
	assert.False(t, alive(pid2))
	require.NoError(t, p.WaitHealthy(ctxTimeout(t, 10*time.Second)))
	assert.Equal(t, 3, p.Starts())

	b, err := os.ReadFile(p.LogPath())
	require.NoError(t, err)
	assert.Equal(t, 3, strings.Count(string(b), "--- procs: phoenix start #"))
}

func TestGroup_CloseLeavesNoChild(t *testing.T) {
	g := NewGroup(context.TODO(), t.TempDir())
	var pids []int
	for i := range 3 {
		p, err := g.Start(childSpec(t, fmt.Sprintf("s%d", i), "sleep"))
		require.NoError(t, err)
		pids = append(pids, p.Pid())
	}
	gp, err := g.Start(childSpec(t, "parent", "grandchild"))
	require.NoError(t, err)
	logContains(t, gp, "grandchild pid")
	b, _ := os.ReadFile(gp.LogPath())
	var gpid int
	_, err = fmt.Sscanf(string(b[strings.Index(string(b), "grandchild pid"):]), "grandchild pid %d", &gpid)
	require.NoError(t, err)
	pids = append(pids, gp.Pid(), gpid)
	require.Len(t, g.Processes(), 4)

	require.NoError(t, g.Close())
	require.NoError(t, g.Close(), "Close is idempotent")
	for _, p := range g.Processes() {
		assert.False(t, p.Running(), p.Name())
	}
	require.Eventually(t, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "a child survived Close")

	_, err = g.Start(childSpec(t, "late", "sleep"))
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, g.Process("s0").Restart(), ErrClosed)
}

func TestGroup_LogDirAndNames(t *testing.T) {
	dir := t.TempDir()
	g := NewGroup(context.TODO(), dir)
	defer g.Close()
	s := childSpec(t, "n1", "sleep")
	s.LogPath = ""
	p, err := g.Start(s)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "n1.log"), p.LogPath())
	logContains(t, p, "ready")
	assert.Same(t, p, g.Process("n1"))
	assert.Nil(t, g.Process("nope"))
	_, err = g.Start(s)
	require.ErrorContains(t, err, "already")
}

func TestGroup_ContextCancelCleansUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := NewGroup(ctx, t.TempDir())
	defer g.Close()
	var procs []*Process
	for i := range 3 {
		p, err := g.Start(childSpec(t, fmt.Sprintf("c%d", i), "sleep"))
		require.NoError(t, err)
		procs = append(procs, p)
	}
	cancel() // like Ctrl-C through signal.NotifyContext
	for _, p := range procs {
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still running after the context was cancelled", p.Name())
		}
		assert.False(t, alive(p.Pid()))
	}
	require.NoError(t, g.Close())
}

func TestGroup_Shutdown(t *testing.T) {
	g := NewGroup(context.TODO(), t.TempDir())
	defer g.Close()
	var procs []*Process
	for i := range 2 {
		p, err := g.Start(serveSpec(t, fmt.Sprintf("g%d", i)))
		require.NoError(t, err)
		procs = append(procs, p)
	}
	stubborn, err := g.Start(serveSpec(t, "stubborn", ignoreEnv+"=1"))
	require.NoError(t, err)
	for _, p := range append(procs, stubborn) {
		require.NoError(t, p.WaitHealthy(ctxTimeout(t, 10*time.Second)))
	}
	// End the grace period as soon as the two graceful ones are gone, so
	// only the stubborn one is killed, however slow this machine is.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		defer cancel()
		for _, p := range procs {
			select {
			case <-p.Done():
			case <-ctx.Done():
				return
			}
		}
	}()
	err = g.Shutdown(ctx)
	<-watcherDone
	require.ErrorIs(t, err, context.Canceled, "the stubborn one was killed")
	assert.ErrorContains(t, err, "stubborn")
	for _, p := range procs {
		assert.NoError(t, p.ExitError(), "%s exited gracefully", p.Name())
		logContains(t, p, "graceful exit")
	}
	assert.False(t, stubborn.Running())
}

func TestStart_RequiresPath(t *testing.T) {
	_, err := Start(Spec{})
	require.Error(t, err)
	_, err = Start(Spec{Path: filepath.Join(t.TempDir(), "missing")})
	require.Error(t, err)
}

func TestWaitHealthy(t *testing.T) {
	var n atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	defer func() { srv.Close(); <-done }()
	require.NoError(t, WaitHealthy(ctxTimeout(t, 10*time.Second), "http://"+ln.Addr().String()))
	assert.EqualValues(t, 3, n.Load())
}

func TestFreePorts(t *testing.T) {
	for _, network := range []Network{TCP, TCPAndUDP} {
		ports, err := FreePorts("127.0.0.1", 5, network)
		require.NoError(t, err)
		require.Len(t, ports, 5)
		seen := map[int]bool{}
		for _, p := range ports {
			assert.False(t, seen[p], "duplicate port %d", p)
			seen[p] = true
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
			ln, err := net.Listen("tcp", addr)
			require.NoError(t, err)
			ln.Close()
			if network == TCPAndUDP {
				pc, err := net.ListenPacket("udp", addr)
				require.NoError(t, err)
				pc.Close()
			}
		}
	}
	addrs, err := FreeAddrs("", 2, TCPAndUDP)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(addrs[0], "127.0.0.1:"))
	_, err = FreePorts("", 1, Network(99))
	require.Error(t, err)
}

func TestBuild(t *testing.T) {
	ctx := ctxTimeout(t, 5*time.Minute)
	out := filepath.Join(t.TempDir(), "hello")
	require.NoError(t, Build(ctx, "./testdata/hello", out))
	b, err := exec.Command(out).Output()
	require.NoError(t, err)
	assert.Equal(t, "hello from a built binary\n", string(b))

	err = Build(ctx, "./testdata/nonexistent", out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "nonexistent", "the error carries go build's output")
}

func TestBuildRevision(t *testing.T) {
	ctx := ctxTimeout(t, 5*time.Minute)
	out := filepath.Join(t.TempDir(), "hello")
	// The package sits in the examples module, nested in the repository's:
	// it builds from inside its own module, at the committed revision.
	require.NoError(t, BuildRevision(ctx, "HEAD", "./examples/internal/procs/testdata/hello", out))
	b, err := exec.Command(out).Output()
	require.NoError(t, err)
	assert.Equal(t, "hello from a built binary\n", string(b))

	err = BuildRevision(ctx, "0000000000000000000000000000000000000000", "./examples/internal/procs/testdata/hello", out)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no such commit")
}

func TestProcess_RestartWith(t *testing.T) {
	ctx := ctxTimeout(t, 5*time.Minute)
	other := filepath.Join(t.TempDir(), "hello")
	require.NoError(t, Build(ctx, "./testdata/hello", other))
	p := startT(t, childSpec(t, "c", "exit"))
	require.Error(t, p.Wait(ctx), "the child mode exits with status 3")
	require.NoError(t, p.RestartWith(other))
	require.NoError(t, p.Wait(ctx))
	assert.Contains(t, p.LogTail(3), "hello from a built binary", "the new run is the other executable")
	assert.Equal(t, other, p.Spec().Path)
	assert.Equal(t, 2, p.Starts())
	require.Error(t, p.RestartWith(""))
}
