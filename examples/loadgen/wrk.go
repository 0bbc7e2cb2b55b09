package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/examples/internal/loadgen"
)

// benchLua is wrk's script: the users' requests, and the checks of their
// answers (see its comment).
//
//go:embed bench.lua
var benchLua []byte

// wrkUser is one simulated user as the wrk script sees it.
type wrkUser struct {
	name   string
	acks   int    // acknowledged POST /visit so far
	last   int    // the count the last acknowledged POST /visit answered
	cookie string // the Cookie header to send
}

// wrkRun is what one wrk run measured, read from the file the script's
// done() writes.
type wrkRun struct {
	requests  uint64
	duration  time.Duration
	socket    uint64 // connect, read, write errors and timeouts
	status    uint64 // answers with a status of 400 or more
	stale     uint64 // reads older than the user's last acknowledged write
	unknown   uint64 // answers that name no user of the run
	abandoned uint64 // users sent a request again without an answer to their last one
	latency   loadgen.Histogram
	users     []wrkUser
	cpu       time.Duration // wrk's own user+system time
}

// result returns the run as a loadgen.Result of mix m: errors are the
// socket errors and error statuses, mismatches the stale reads.
func (w *wrkRun) result(m loadgen.Mix) *loadgen.Result {
	r := &loadgen.Result{Config: loadgen.Config{Mix: m}, Elapsed: w.duration, Ops: map[string]*loadgen.OpStats{}}
	r.Total.Requests = w.requests + w.socket // wrk counts answered requests only
	r.Total.Errors = w.socket + w.status
	r.Total.Mismatches = w.stale
	r.Total.Latency.Merge(&w.latency)
	return r
}

// writeUsers writes the users file the script reads.
func writeUsers(file string, users []wrkUser) error {
	var b bytes.Buffer
	for _, u := range users {
		fmt.Fprintf(&b, "%s %d %d %s\n", u.name, u.acks, u.last, u.cookie)
	}
	if err := os.WriteFile(file, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	return nil
}

// parseWrkOut reads the file the script's done() writes.
func parseWrkOut(r io.Reader) (*wrkRun, error) {
	w := &wrkRun{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	num := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	seen := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "requests":
			w.requests, seen = num(f[1]), true
		case "duration_us":
			w.duration = time.Duration(num(f[1])) * time.Microsecond
		case "errors":
			if len(f) == 6 {
				w.socket = num(f[1]) + num(f[2]) + num(f[3]) + num(f[5])
				w.status = num(f[4])
			}
		case "stale":
			w.stale = num(f[1])
		case "unknown":
			w.unknown = num(f[1])
		case "abandoned":
			w.abandoned = num(f[1])
		case "latency":
			if len(f) == 3 {
				d := time.Duration(num(f[1])) * time.Microsecond
				for range num(f[2]) {
					w.latency.Record(d)
				}
			}
		case "user":
			if len(f) < 4 {
				continue
			}
			acks, _ := strconv.Atoi(f[2])
			last, _ := strconv.Atoi(f[3])
			cookie := ""
			if len(f) > 4 {
				cookie = strings.Join(f[4:], " ")
			}
			w.users = append(w.users, wrkUser{name: f[1], acks: acks, last: last, cookie: cookie})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("wrk output: %w", err)
	}
	if !seen {
		return nil, fmt.Errorf("wrk output has no totals")
	}
	return w, nil
}

// wrkConfig is how the harness runs wrk.
type wrkConfig struct {
	bin, script, dir string
	threads, conns   int
	timeout          time.Duration
}

// runWrk runs wrk for d against url with users, writePercent of the
// requests POST /visit, and returns what the script wrote: the totals and
// the users as they are afterwards (counts, cookies).
func runWrk(ctx context.Context, c wrkConfig, url string, users []wrkUser, writePercent int, d time.Duration, name string) (*wrkRun, error) {
	in, out := c.dir+"/"+name+".users", c.dir+"/"+name+".out"
	if err := writeUsers(in, users); err != nil {
		return nil, err
	}
	secs := max(1, int((d+time.Second/2)/time.Second))
	args := []string{"-t" + strconv.Itoa(c.threads), "-c" + strconv.Itoa(c.conns), "-d" + strconv.Itoa(secs) + "s",
		"--timeout", strconv.Itoa(max(1, int(c.timeout/time.Second))) + "s", "-s", c.script, url,
		"--", in, out, strconv.Itoa(writePercent), strconv.Itoa(c.threads)}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("wrk %s: %w: %s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	f, err := os.Open(out)
	if err != nil {
		return nil, fmt.Errorf("wrk wrote no results (%s): %w", strings.TrimSpace(stderr.String()+stdout.String()), err)
	}
	defer f.Close()
	w, err := parseWrkOut(f)
	if err != nil {
		return nil, err
	}
	if len(w.users) != len(users) {
		return nil, fmt.Errorf("wrk wrote %d users, not %d", len(w.users), len(users))
	}
	if st := cmd.ProcessState; st != nil {
		w.cpu = st.UserTime() + st.SystemTime()
	}
	return w, nil
}

// wrkClient is the HTTP client the harness logs users in and reads their
// final counts with, through the front.
func wrkClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{
		Transport: &http.Transport{Proxy: nil, MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true},
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// answer is the JSON answer of the login apps.
type answer struct {
	User   string `json:"user"`
	Visits *int   `json:"visits"`
}

// call sends one request with cookie and decodes the JSON answer.
func call(ctx context.Context, client *http.Client, method, u, cookie string, form url.Values) (*http.Response, answer, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, answer{}, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp, answer{}, fmt.Errorf("%s %s: %w", method, u, err)
	}
	var a answer
	if resp.StatusCode != http.StatusOK {
		return resp, a, fmt.Errorf("%s %s: status %d: %s", method, u, resp.StatusCode, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return resp, a, fmt.Errorf("%s %s: answer %q: %w", method, u, b, err)
	}
	return resp, a, nil
}

// loginUsers logs users named names in through the front at base, conns
// at a time, and returns them with the cookies their logins set and the
// logins' statistics (latency of every login).
func loginUsers(ctx context.Context, client *http.Client, base string, names []string, conns int) ([]wrkUser, loadgen.OpStats, error) {
	users := make([]wrkUser, len(names))
	stats := make([]loadgen.OpStats, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			for i := w; i < len(names); i += conns {
				t0 := time.Now()
				resp, a, err := call(ctx, client, http.MethodPost, base+"/login", "", url.Values{"user": {names[i]}, "password": {"demo"}})
				stats[w].Requests++
				stats[w].Latency.Record(time.Since(t0))
				if err == nil && a.User != names[i] {
					err = fmt.Errorf("login of %s answered user %q", names[i], a.User)
				}
				if err != nil {
					stats[w].Errors++
					errs[w] = err
					continue
				}
				var cookies []string
				for _, ck := range resp.Cookies() {
					cookies = append(cookies, ck.Name+"="+ck.Value)
				}
				users[i] = wrkUser{name: names[i], cookie: strings.Join(cookies, "; ")}
			}
		})
	}
	wg.Wait()
	var total loadgen.OpStats
	for i := range stats {
		total.Requests += stats[i].Requests
		total.Errors += stats[i].Errors
		total.Latency.Merge(&stats[i].Latency)
	}
	for _, err := range errs {
		if err != nil {
			return nil, total, fmt.Errorf("%d of %d logins failed, e.g. %w", total.Errors, len(names), err)
		}
	}
	return users, total, ctx.Err()
}

// finalCheck reads every user's count through the front and returns the
// acknowledged increments the counts do not reflect (lost), and the users
// whose count could not be read.
func finalCheck(ctx context.Context, client *http.Client, base string, users []wrkUser, conns int) (lost, unreadable uint64, sample error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			for i := w; i < len(users); i += conns {
				u := users[i]
				_, a, err := call(ctx, client, http.MethodGet, base+"/me", u.cookie, nil)
				if err == nil && (a.User != u.name || a.Visits == nil) {
					err = fmt.Errorf("GET /me of %s answered user %q visits %v", u.name, a.User, a.Visits)
				}
				mu.Lock()
				switch {
				case err != nil:
					unreadable++
					sample = err
				case *a.Visits < u.acks:
					lost += uint64(u.acks - *a.Visits)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return lost, unreadable, sample
}
