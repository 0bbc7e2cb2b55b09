package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Errors callers branch on.
var (
	// ErrClosed is returned by Group.Start and Process.Restart once the
	// group has been closed.
	ErrClosed = errors.New("procs: group closed")
	// ErrExited is wrapped by Process.WaitHealthy when the process exits
	// before it becomes healthy.
	ErrExited = errors.New("procs: process exited")
)

// waitDelay bounds how long Wait waits for the output copying of a child
// whose output goes to a non-file io.Writer after the child exited (a
// grandchild may still hold the pipe).
const waitDelay = 2 * time.Second

// Spec describes a process to start. Restart starts it again from the same
// Spec.
type Spec struct {
	// Name identifies the process in log headers and errors, and names its
	// log file in a Group. Default: the base name of Path.
	Name string
	// Path is the executable to run. Required.
	Path string
	// Args are the arguments, without the program name.
	Args []string
	// Env holds extra "KEY=value" entries appended to the parent's
	// environment (later entries win). Nil inherits the parent's
	// environment unchanged.
	Env []string
	// Dir is the working directory. Default: the parent's.
	Dir string
	// LogPath, when set, receives the process's stdout and stderr. The file
	// is created if needed and appended to, with a header line before each
	// start and a footer line after each exit. A Group sets it to
	// <logDir>/<Name>.log when it is empty and Stdout and Stderr are nil.
	LogPath string
	// Stdout and Stderr receive the output when LogPath is empty. Nil
	// discards it.
	Stdout, Stderr io.Writer
	// HealthURL is polled by Process.WaitHealthy: the process is healthy
	// once a GET returns 200. Optional.
	HealthURL string
}

// Process is a started child process that can be killed, stopped, waited
// for and restarted. It is safe for concurrent use. Create it with Start
// or Group.Start.
type Process struct {
	spec  Spec
	group *Group // nil when started by Start

	mu     sync.Mutex // guards run and starts
	run    *run
	starts int
}

// run is one execution (incarnation) of a Process.
type run struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time
	done    chan struct{} // closed once the process has been reaped
	err     error         // cmd.Wait's result; read only after done
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// Start starts a process described by spec, not attached to any Group. The
// caller must end it (Kill, Stop) or it runs on; on Linux it is still killed
// when the parent dies.
func Start(spec Spec) (*Process, error) {
	return start(spec, nil)
}

func start(spec Spec, g *Group) (*Process, error) {
	if spec.Path == "" {
		return nil, errors.New("procs: Spec.Path is empty")
	}
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Path)
	}
	spec.Args = append([]string(nil), spec.Args...)
	spec.Env = append([]string(nil), spec.Env...)
	p := &Process{spec: spec, group: g}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.startLocked(); err != nil {
		return nil, err
	}
	return p, nil
}

// startLocked starts a new run. p.mu must be held.
func (p *Process) startLocked() error {
	s := &p.spec
	cmd := exec.Command(s.Path, s.Args...)
	if s.Env != nil {
		cmd.Env = append(os.Environ(), s.Env...)
	}
	cmd.Dir = s.Dir
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = waitDelay
	var logFile *os.File
	if s.LogPath != "" {
		f, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("procs: start %s: %w", s.Name, err)
		}
		fmt.Fprintf(f, "--- procs: %s start #%d at %s: %s %s\n", s.Name, p.starts+1,
			time.Now().Format(time.RFC3339Nano), s.Path, strings.Join(s.Args, " "))
		logFile = f
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	}
	if err := cmd.Start(); err != nil {
		if logFile != nil {
			fmt.Fprintf(logFile, "--- procs: %s failed to start: %v\n", s.Name, err)
			logFile.Close()
		}
		return fmt.Errorf("procs: start %s: %w", s.Name, err)
	}
	r := &run{cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), done: make(chan struct{})}
	p.run = r
	p.starts++
	// The reaper: owned by the run, ends when the process exits.
	go func() {
		r.err = cmd.Wait()
		if logFile != nil {
			fmt.Fprintf(logFile, "--- procs: %s (pid %d) exited at %s: %v\n", s.Name, r.pid,
				time.Now().Format(time.RFC3339Nano), cmd.ProcessState)
			logFile.Close()
		}
		close(r.done)
	}()
	return nil
}

func (p *Process) current() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.run
}

// Name returns the Spec's Name.
func (p *Process) Name() string { return p.spec.Name }

// Spec returns a copy of the Spec the process was started from.
func (p *Process) Spec() Spec {
	p.mu.Lock()
	s := p.spec
	p.mu.Unlock()
	s.Args = append([]string(nil), s.Args...)
	s.Env = append([]string(nil), s.Env...)
	return s
}

// LogPath returns the file the process's output goes to, or "" if none.
func (p *Process) LogPath() string { return p.spec.LogPath }

// Pid returns the operating-system process ID of the current run. It
// changes on Restart.
func (p *Process) Pid() int { return p.current().pid }

// Starts returns how many times the process has been started: 1 after
// Start, plus one for each Restart.
func (p *Process) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// StartedAt returns when the current run was started.
func (p *Process) StartedAt() time.Time { return p.current().started }

// Running reports whether the current run has not exited yet.
func (p *Process) Running() bool { return !p.current().exited() }

// Done returns a channel that is closed when the current run has exited and
// been reaped. After a Restart, call Done again for the new run.
func (p *Process) Done() <-chan struct{} { return p.current().done }

// ExitError returns the result of waiting for the current run: nil while it
// runs or when it exited with status 0, else an error such as an
// *exec.ExitError ("signal: killed").
func (p *Process) ExitError() error {
	r := p.current()
	if !r.exited() {
		return nil
	}
	return r.err
}

// Wait waits until the current run exits or ctx is done. It returns the
// exit error (nil for status 0; an *exec.ExitError otherwise) or ctx's
// error.
func (p *Process) Wait(ctx context.Context) error {
	r := p.current()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("procs: wait for %s: %w", p.spec.Name, ctx.Err())
	}
}

// Kill sends SIGKILL to the process (and, on Unix, to its whole process
// group) and returns once it has been reaped. Killing a process that has
// already exited does nothing.
func (p *Process) Kill() error {
	r := p.current()
	kill(r)
	<-r.done
	return nil
}

// kill sends SIGKILL to r unless it is already reaped. It does not wait.
func kill(r *run) {
	if r.exited() {
		return
	}
	killTree(r.cmd.Process)
}

// Stop asks the process to exit with SIGTERM and waits for it. If it has
// not exited when ctx is done, Stop kills it with SIGKILL, waits for it to
// be reaped and returns an error wrapping ctx's error. Stopping a process
// that has already exited does nothing.
func (p *Process) Stop(ctx context.Context) error {
	r := p.current()
	if r.exited() {
		return nil
	}
	terminate(r.cmd.Process)
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		kill(r)
		<-r.done
		return fmt.Errorf("procs: %s did not exit after SIGTERM, killed: %w", p.spec.Name, ctx.Err())
	}
}

// Restart starts the process again with the same Spec (path, arguments,
// environment, log file). If the current run is still running it is killed
// first with SIGKILL; use Stop before Restart for a graceful restart. It
// returns ErrClosed if the process's Group has been closed.
func (p *Process) Restart() error {
	return p.restart("")
}

// RestartWith is Restart from another executable: the Spec's Path becomes
// path for this run and every later one, as when a deploy replaces a
// server's binary. Arguments, environment and log file stay.
func (p *Process) RestartWith(path string) error {
	if path == "" {
		return fmt.Errorf("procs: restart %s: empty path", p.spec.Name)
	}
	return p.restart(path)
}

// restart kills the current run and starts a new one, from path if it is
// not empty.
func (p *Process) restart(path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	kill(p.run)
	<-p.run.done
	if p.group != nil && p.group.isClosed() {
		return ErrClosed
	}
	if path != "" {
		p.spec.Path = path
	}
	return p.startLocked()
}

// WaitHealthy polls the Spec's HealthURL until a GET returns 200. It fails
// when ctx is done, or at once, wrapping ErrExited and quoting the end of the
// log, when the process exits first.
func (p *Process) WaitHealthy(ctx context.Context) error {
	if p.spec.HealthURL == "" {
		return fmt.Errorf("procs: %s has no HealthURL", p.spec.Name)
	}
	r := p.current()
	err := waitHealthy(ctx, p.spec.HealthURL, r.done)
	if errors.Is(err, ErrExited) {
		err = fmt.Errorf("procs: %s (pid %d) exited before healthy (%v): %w", p.spec.Name, r.pid, r.err, ErrExited)
		if out := p.lastRunOutput(8); out != "" {
			err = fmt.Errorf("%w; its output (%s):\n%s", err, p.spec.LogPath, out)
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("procs: %s: %w", p.spec.Name, err)
	}
	return nil
}

// LogTail returns up to the last n lines of the process's log file, or ""
// when it has no LogPath or the file cannot be read.
func (p *Process) LogTail(n int) string {
	if p.spec.LogPath == "" || n <= 0 {
		return ""
	}
	return tailFile(p.spec.LogPath, n)
}

// lastRunOutput returns what the last run wrote to the log: all of it, or
// its first and last k lines when it is longer than 2k lines.
func (p *Process) lastRunOutput(k int) string {
	if p.spec.LogPath == "" {
		return ""
	}
	lines := strings.Split(tailFile(p.spec.LogPath, 1<<20), "\n")
	header := "--- procs: " + p.spec.Name + " start #"
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], header) {
			lines = lines[i+1:]
			break
		}
	}
	if n := len(lines); n > 0 && strings.HasPrefix(lines[n-1], "--- procs: ") {
		lines = lines[:n-1] // the exit footer
	}
	if len(lines) > 2*k {
		skipped := fmt.Sprintf("[... %d lines ...]", len(lines)-2*k)
		lines = append(append(lines[:k:k], skipped), lines[len(lines)-k:]...)
	}
	return strings.Join(lines, "\n")
}

// tailFile returns up to the last n lines of the last 64 KiB of path.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		if _, err := f.Seek(fi.Size()-max, io.SeekStart); err != nil {
			return ""
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
