package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/examples/internal/procs"
)

// chromiumNames are the executables the browser test looks for on PATH.
var chromiumNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"}

// findChromium returns the path of a Chromium executable, or skips the test
// when there is none, except in CI (CI set to anything but "" or "false"),
// where a missing browser fails it: .ci/run installs Debian's chromium.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SESSIONMESH_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range chromiumNames {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatalf("CI=%s and no Chromium on PATH (looked for %s): .ci/run installs it with apt-get install chromium", ci, strings.Join(chromiumNames, ", "))
	}
	t.Skipf("no Chromium on PATH (looked for %s; set SESSIONMESH_CHROMIUM, or apt-get install chromium)", strings.Join(chromiumNames, ", "))
	return ""
}

// loginBin builds the login example once per test binary.
var loginBin = struct {
	once sync.Once
	dir  string
	path string
	err  error
}{}

func buildLogin(t *testing.T) string {
	t.Helper()
	loginBin.once.Do(func() {
		loginBin.dir, loginBin.err = os.MkdirTemp("", "sessionmesh-login-test-")
		if loginBin.err != nil {
			return
		}
		loginBin.path = filepath.Join(loginBin.dir, "login")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		loginBin.err = procs.Build(ctx, procs.LoginPackage, loginBin.path)
	})
	require.NoError(t, loginBin.err)
	return loginBin.path
}

// cluster3 starts three login processes that seed each other, with a
// random cluster secret in their environment, and waits until all are
// healthy. It returns their HTTP base URLs and processes.
func cluster3(t *testing.T, ctx context.Context, bin string) ([]string, []*procs.Process) {
	t.Helper()
	return cluster3Env(t, ctx, bin, nil, []bool{true, true, true})
}

// cluster3Env is cluster3 with env(i) appended to node i's environment (env
// may be nil), waiting only for the nodes whose healthy entry is true.
func cluster3Env(t *testing.T, ctx context.Context, bin string, env func(i int) []string, healthy []bool) ([]string, []*procs.Process) {
	t.Helper()
	return clusterOf(t, ctx, bin, clusterSpec{nodes: 3, env: env, healthy: healthy,
		args: func(int) []string { return []string{"-backups", "1"} }})
}

// cluster3Args is cluster3Env with args appended to every node's command
// line.
func cluster3Args(t *testing.T, ctx context.Context, bin string, env func(i int) []string, healthy []bool, args []string) ([]string, []*procs.Process) {
	t.Helper()
	return clusterOf(t, ctx, bin, clusterSpec{nodes: 3, env: env, healthy: healthy,
		args: func(int) []string { return append([]string{"-backups", "1"}, args...) }})
}

// clusterN starts n servers with args (no -backups: all-to-all unless args
// say otherwise) and env, waiting for those whose healthy entry is true.
func clusterN(t *testing.T, ctx context.Context, bin string, n int, args []string, env func(i int) []string, healthy []bool) ([]string, []*procs.Process) {
	t.Helper()
	return clusterOf(t, ctx, bin, clusterSpec{nodes: n, env: env, healthy: healthy,
		args: func(int) []string { return args }})
}

// clusterSpec describes the login servers clusterOf starts.
type clusterSpec struct {
	nodes   int
	args    func(i int) []string // node i's extra flags; nil: none
	env     func(i int) []string // node i's extra environment; nil: none
	healthy []bool               // wait for node i to be healthy; nil: all
}

// clusterOf starts the login servers of spec with a shared random cluster
// secret, each seeded with every gossip address, and waits until the
// chosen ones are healthy. The processes end with the test; their logs
// are printed if it fails.
func clusterOf(t *testing.T, ctx context.Context, bin string, spec clusterSpec) ([]string, []*procs.Process) {
	t.Helper()
	n := spec.nodes
	addrs, err := procs.FreeAddrs("127.0.0.1", 2*n, procs.TCPAndUDP)
	require.NoError(t, err)
	httpAddrs, gossip := addrs[:n], addrs[n:]
	var key [32]byte
	_, _ = rand.Read(key[:])
	logs := t.TempDir()
	g := procs.NewGroup(ctx, logs)
	t.Cleanup(func() {
		_ = g.Close()
		if t.Failed() {
			for i := range n {
				b, _ := os.ReadFile(filepath.Join(logs, nodeName(i)+".log"))
				t.Logf("log of %s:\n%s", nodeName(i), b)
			}
		}
	})
	var urls []string
	var ps []*procs.Process
	for i := range n {
		url := "http://" + httpAddrs[i]
		args := []string{"-name", nodeName(i), "-http", httpAddrs[i], "-gossip", gossip[i], "-seeds", strings.Join(gossip, ",")}
		if spec.args != nil {
			args = append(args, spec.args(i)...)
		}
		p, err := g.Start(procs.Spec{
			Name:      nodeName(i),
			Path:      bin,
			Args:      args,
			Env:       append([]string{secretEnv + "=" + hex.EncodeToString(key[:])}, envOf(spec.env, i)...),
			HealthURL: url + "/healthz",
		})
		require.NoError(t, err)
		urls, ps = append(urls, url), append(ps, p)
	}
	hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for i, p := range ps {
		if spec.healthy == nil || spec.healthy[i] {
			require.NoError(t, p.WaitHealthy(hctx), p.Name())
		}
	}
	return urls, ps
}

func envOf(env func(int) []string, i int) []string {
	if env == nil {
		return nil
	}
	return env(i)
}

func nodeName(i int) string { return fmt.Sprintf("n%d", i+1) }

// pageState is what the status page shows, read from its DOM.
type pageState struct {
	Title      string   `json:"title"`
	Members    []string `json:"members"`
	States     []string `json:"states"`
	Gone       []string `json:"gone"`
	Cells      int      `json:"cells"`
	Replicated string   `json:"replicated"`
	Conn       string   `json:"conn"`
}

const readPage = `(() => ({
	title: document.title,
	members: [...document.querySelectorAll('#members tbody tr')].map(r => r.dataset.name),
	states: [...document.querySelectorAll('#members tbody tr')].map(r => r.dataset.state),
	gone: [...document.querySelectorAll('#departed li')].map(l => l.dataset.name),
	cells: document.querySelectorAll('#grid .cell').length,
	replicated: (document.querySelector('#health dd') || {}).textContent || '',
	conn: document.getElementById('conn').textContent,
}))()`

// TestStatusPage_Browser opens /cluster of a real 3-process cluster in
// headless Chromium, checks that it renders the members and the partition
// grid, SIGKILLs the third node and waits until the page, refreshing
// itself, shows it gone.
func TestStatusPage_Browser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and a browser")
	}
	chromium := findChromium(t)
	start := time.Now()
	bin := buildLogin(t)
	t.Logf("login built in %v", time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	urls, ps := cluster3(t, ctx, bin)
	t.Logf("cluster healthy after %v", time.Since(start).Round(time.Millisecond))

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	// Collect what the page logs: a CSP violation or a script error shows
	// up there. The collector ends with the browser's context.
	var (
		mu      sync.Mutex
		console []string
		wg      sync.WaitGroup
	)
	messages := chromedp.Console(bctx)
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() || m.Type == chromedp.ConsoleWarning {
				mu.Lock()
				console = append(console, m.String())
				mu.Unlock()
			}
		}
	})
	defer wg.Wait()
	defer bcancel()

	require.NoError(t, chromedp.Do(bctx, chromedp.Navigate(urls[0]+"/cluster")))
	t.Logf("page loaded after %v", time.Since(start).Round(time.Millisecond))

	// Rendered: three members (once n1's membership lists them all: a
	// node is healthy when it has joined one seed), the grid, the health
	// box.
	read := func() pageState {
		st, err := chromedp.Run(bctx, chromedp.Evaluate[pageState](readPage))
		require.NoError(t, err)
		return st
	}
	pctx, pcancel := context.WithTimeout(bctx, 20*time.Second)
	defer pcancel()
	_, err := chromedp.Run(pctx, chromedp.Poll[bool](
		`[...document.querySelectorAll('#members tbody tr')].map(r => r.dataset.name).join() === 'n1,n2,n3'`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, "the page does not list n1, n2 and n3: %+v", read())
	st := read()
	assert.Equal(t, "sessionmesh: n1", st.Title)
	assert.Equal(t, []string{"n1", "n2", "n3"}, st.Members)
	assert.Equal(t, []string{"alive", "alive", "alive"}, st.States)
	assert.Equal(t, 256, st.Cells)
	assert.Empty(t, st.Gone)
	assert.Contains(t, st.Conn, "live")

	// The page refreshes itself: after the kill, n3 leaves the table and
	// shows as gone, without a reload. Poll the DOM with a deadline.
	require.NoError(t, ps[2].Kill())
	killed := time.Now()
	_, err = chromedp.Run(pctx, chromedp.Poll[bool](`(() => {
		const rows = [...document.querySelectorAll('#members tbody tr')].map(r => r.dataset.name);
		const gone = [...document.querySelectorAll('#departed li')].map(l => l.dataset.name);
		return rows.join() === 'n1,n2' && gone.includes('n3') && !document.getElementById('departed-box').hidden;
	})()`, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("the page did not show n3 gone: %v; it shows %+v", err, read())
	}
	t.Logf("page showed n3 gone %v after the SIGKILL", time.Since(killed).Round(time.Millisecond))
	st = read()
	assert.Equal(t, []string{"n1", "n2"}, st.Members)
	assert.Equal(t, []string{"n3"}, st.Gone)

	// The survivors re-replicate; the health box follows.
	_, err = chromedp.Run(pctx, chromedp.Poll[bool](
		`document.querySelector('#health dd').textContent === 'yes'`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
	require.NoError(t, err, "fully replicated again: %+v", read())

	bcancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, console, "the page logged errors or warnings")
	t.Logf("done after %v", time.Since(start).Round(time.Millisecond))
}
