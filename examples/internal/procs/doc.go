// Package procs starts, watches, kills and restarts real operating-system
// processes for tests, the demo, the chaos harness and the load generator:
// the multi-process layer of the test pyramid, where a node dies by SIGKILL
// and nothing in the process can soften it.
//
// A typical use builds the login example, picks free ports, starts a few
// nodes in a Group, waits for them to be healthy, kills one and restarts it:
//
//	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
//	defer cancel()
//	dir := t.TempDir() // or os.MkdirTemp
//	bin := filepath.Join(dir, "login")
//	if err := procs.Build(ctx, procs.LoginPackage, bin); err != nil { ... }
//	ports, err := procs.FreePorts("127.0.0.1", 2, procs.TCPAndUDP)
//	g := procs.NewGroup(ctx, dir) // logs go to dir/<name>.log
//	defer g.Close()               // SIGKILLs and reaps whatever is still running
//	p, err := g.Start(procs.Spec{
//		Name:      "n1",
//		Path:      bin,
//		Args:      []string{"-name", "n1", "-http", "127.0.0.1:" + strconv.Itoa(ports[0]), ...},
//		HealthURL: "http://127.0.0.1:" + strconv.Itoa(ports[0]) + "/healthz",
//	})
//	hctx, hcancel := context.WithTimeout(ctx, 30*time.Second)
//	err = p.WaitHealthy(hctx) // polls HealthURL until 200; fails fast if p exits
//	hcancel()
//	err = p.Kill()            // SIGKILL; returns once the process is reaped
//	err = p.Restart()         // same path, args, env and log file; new pid
//
// # Obligations and guarantees
//
// Every process started is reaped: a goroutine owned by the Process waits
// for it and ends when it exits. Whoever starts a process must end it:
// Kill, Stop, or Close of the Group that started it. A Group also ends
// everything it started when the context given to NewGroup is done, so a
// demo that cancels its context on Ctrl-C leaves no child behind.
//
// On Unix each child runs in its own process group, so a Ctrl-C typed in a
// terminal reaches only the parent, which then cleans up in order; Kill
// signals the whole process group, so grandchildren (for example the binary
// below a `go run`) die too. On Linux a child also receives SIGKILL when the
// parent dies, so not even a panicking or SIGKILLed test binary leaks
// servers.
//
// Ports come from FreePorts, which binds and releases them. That is a race
// by nature (another process may take the port before the child binds it),
// so FreePorts prefers ports below the kernel's ephemeral range, which
// outgoing connections never take: a node restarted on its old ports finds
// them free even after thousands of client connections.
//
// Never sleep for a fixed time to wait for a process: use
// Process.WaitHealthy, WaitHealthy or Process.Wait with a deadline.
//
// All methods of Process and Group are safe for concurrent use.
package procs
