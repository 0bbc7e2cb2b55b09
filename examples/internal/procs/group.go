package procs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
)

// Group starts processes and ends all of them together: Close kills them,
// Shutdown stops them gracefully, and both happen by themselves when the
// context given to NewGroup is done. A Group is safe for concurrent use.
type Group struct {
	logDir   string
	stopHook func() bool // unregisters the context.AfterFunc

	mu     sync.Mutex // guards procs, names and closed
	procs  []*Process
	names  map[string]bool
	closed bool

	closeOnce sync.Once
}

// NewGroup returns an empty Group. Output of processes whose Spec names no
// log destination goes to logDir/<Name>.log ("" leaves it to the Spec).
// When ctx is done (for example on Ctrl-C through signal.NotifyContext) the
// Group closes itself, killing everything it started; a nil ctx disables
// that. Call Close or Shutdown when done with the Group in any case.
func NewGroup(ctx context.Context, logDir string) *Group {
	g := &Group{logDir: logDir, names: map[string]bool{}}
	if ctx != nil {
		g.stopHook = context.AfterFunc(ctx, func() { g.Close() })
	}
	return g
}

// Start starts a process like the package-level Start and adds it to the
// Group. Names must be unique within a Group. It returns ErrClosed after
// Close or Shutdown.
func (g *Group) Start(spec Spec) (*Process, error) {
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Path)
	}
	if spec.LogPath == "" && spec.Stdout == nil && spec.Stderr == nil && g.logDir != "" {
		spec.LogPath = filepath.Join(g.logDir, spec.Name+".log")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, ErrClosed
	}
	if g.names[spec.Name] {
		return nil, fmt.Errorf("procs: a process named %q is already in the group", spec.Name)
	}
	p, err := start(spec, g)
	if err != nil {
		return nil, err
	}
	g.names[spec.Name] = true
	g.procs = append(g.procs, p)
	return p, nil
}

// Process returns the process of the Group with the given name, or nil.
func (g *Group) Process(name string) *Process {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.procs {
		if p.Name() == name {
			return p
		}
	}
	return nil
}

// Processes returns the Group's processes in the order they were started.
func (g *Group) Processes() []*Process {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*Process(nil), g.procs...)
}

func (g *Group) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// markClosed forbids new starts and restarts and returns every process.
func (g *Group) markClosed() []*Process {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return append([]*Process(nil), g.procs...)
}

// Close kills every process of the Group that still runs with SIGKILL and
// returns once all of them have been reaped. It is idempotent and safe to
// call concurrently; every call returns after the cleanup has finished.
func (g *Group) Close() error {
	g.closeOnce.Do(func() {
		if g.stopHook != nil {
			g.stopHook()
		}
		procs := g.markClosed()
		// Signal all first, then reap all: the deaths overlap.
		runs := make([]*run, len(procs))
		for i, p := range procs {
			// Lock out a concurrent Restart: it either finished (we kill
			// its new run) or will see closed.
			p.mu.Lock()
			runs[i] = p.run
			kill(runs[i])
			p.mu.Unlock()
		}
		for _, r := range runs {
			<-r.done
		}
	})
	return nil
}

// Shutdown stops every running process of the Group gracefully: SIGTERM to
// all, then SIGKILL to those still running when ctx is done. It returns
// once all have been reaped, closes the Group, and reports the processes
// that had to be killed.
func (g *Group) Shutdown(ctx context.Context) error {
	procs := g.markClosed()
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() { errs[i] = p.Stop(ctx) })
	}
	wg.Wait()
	g.Close()
	return errors.Join(errs...)
}
