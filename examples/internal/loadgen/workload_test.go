package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeApp implements the login contract with sessions in a map, with knobs
// to misbehave.
type fakeApp struct {
	mu       sync.Mutex
	sessions map[string]*fakeSession // guards: sessions by cookie value

	loseEvery   int64 // if > 0, every n-th visit is answered but not stored
	expireEvery int64 // if > 0, every n-th /me finds no session (401)
	visits, mes atomic.Int64
	logins      atomic.Int64
}

type fakeSession struct {
	user   string
	visits int
}

func newFakeApp() *fakeApp { return &fakeApp{sessions: map[string]*fakeSession{}} }

func (a *fakeApp) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(code int, v map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	session := func() *fakeSession {
		c, err := r.Cookie("session")
		if err != nil {
			return nil
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.sessions[c.Value]
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /login":
		a.logins.Add(1)
		if r.PostFormValue("password") != "demo" {
			reply(401, map[string]any{"error": "wrong"})
			return
		}
		id := rand.Text()
		a.mu.Lock()
		a.sessions[id] = &fakeSession{user: r.PostFormValue("user")}
		a.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "session", Value: id, Path: "/"})
		reply(200, map[string]any{"user": r.PostFormValue("user")})
	case "GET /me":
		n := a.mes.Add(1)
		s := session()
		if s == nil || (a.expireEvery > 0 && n%a.expireEvery == 0) {
			reply(401, map[string]any{"error": "not logged in"})
			return
		}
		a.mu.Lock()
		user, visits := s.user, s.visits
		a.mu.Unlock()
		reply(200, map[string]any{"user": user, "visits": visits})
	case "POST /visit":
		n := a.visits.Add(1)
		s := session()
		if s == nil {
			reply(401, map[string]any{"error": "not logged in"})
			return
		}
		a.mu.Lock()
		v := s.visits + 1
		if a.loseEvery == 0 || n%a.loseEvery != 0 {
			s.visits = v
		}
		a.mu.Unlock()
		reply(200, map[string]any{"visits": v})
	default:
		http.NotFound(w, r)
	}
}

func run(t *testing.T, app http.Handler, cfg Config) *Result {
	t.Helper()
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	cfg.BaseURL = srv.URL
	if cfg.Duration == 0 {
		cfg.Duration = 200 * time.Millisecond
	}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	return res
}

func TestRun_ReadHeavy(t *testing.T) {
	app := newFakeApp()
	var mixEnd, measureStart time.Time
	res := run(t, app, Config{Users: 40, Concurrency: 4, Mix: ReadHeavy, Warmup: 50 * time.Millisecond,
		OnMix: func(end time.Time) { mixEnd = end }, OnMeasure: func() { measureStart = time.Now() }})
	assert.WithinDuration(t, time.Now(), mixEnd, 5*time.Second)
	assert.WithinDuration(t, mixEnd.Add(-200*time.Millisecond), measureStart, 100*time.Millisecond)
	assert.Equal(t, uint64(40), res.Logins.Requests)
	assert.Zero(t, res.Logins.Errors)
	assert.Zero(t, res.Total.Errors, res.ErrorSamples)
	assert.Zero(t, res.Total.Mismatches, res.ErrorSamples)
	me, visit := res.Ops[OpMe], res.Ops[OpVisit]
	require.NotNil(t, me)
	require.NotNil(t, visit)
	assert.Equal(t, res.Total.Requests, me.Requests+visit.Requests)
	assert.Equal(t, res.Total.Requests, res.Total.Latency.Count())
	// About 10% writes.
	share := float64(visit.Requests) / float64(res.Total.Requests)
	assert.InDelta(t, 0.10, share, 0.05, "write share")
	assert.Greater(t, res.RequestsPerSecond(), 0.0)
	assert.GreaterOrEqual(t, res.Elapsed, 200*time.Millisecond)
	// The warm-up ran requests that were not counted.
	assert.Greater(t, uint64(app.mes.Load()+app.visits.Load()), res.Total.Requests)

	var sb strings.Builder
	require.NoError(t, res.WriteText(&sb))
	assert.Contains(t, sb.String(), "requests/s")
	assert.Contains(t, sb.String(), OpMe)
}

func TestRun_WriteHeavyOnlyWrites(t *testing.T) {
	res := run(t, newFakeApp(), Config{Users: 8, Concurrency: 2, Mix: WriteHeavy})
	assert.Nil(t, res.Ops[OpMe])
	require.NotNil(t, res.Ops[OpVisit])
	assert.Zero(t, res.Total.Errors+res.Total.Mismatches, res.ErrorSamples)
}

func TestRun_DetectsLostWrites(t *testing.T) {
	app := newFakeApp()
	app.loseEvery = 5
	res := run(t, app, Config{Users: 8, Concurrency: 2, Mix: Mix{Name: "half", WritePercent: 50}})
	assert.Greater(t, res.Total.Mismatches, uint64(0))
	assert.Zero(t, res.Total.Errors)
	assert.NotEmpty(t, res.ErrorSamples)
}

func TestRun_LogsInAgainAfter401(t *testing.T) {
	app := newFakeApp()
	app.expireEvery = 7
	res := run(t, app, Config{Users: 8, Concurrency: 2, Mix: ReadHeavy})
	require.NotNil(t, res.Ops[OpLogin], "no re-login")
	assert.Greater(t, res.Ops[OpLogin].Requests, uint64(0))
	assert.Greater(t, res.Ops[OpMe].Errors, uint64(0))
	assert.Equal(t, res.Ops[OpMe].Errors, res.Total.Errors)
	assert.Zero(t, res.Total.Mismatches, res.ErrorSamples)
}

func TestRun_EveryLoginFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, err := Run(context.Background(), Config{BaseURL: srv.URL, Users: 4, Concurrency: 2, Duration: time.Second})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "status 503")
}

func TestRun_Cancel(t *testing.T) {
	srv := httptest.NewServer(newFakeApp())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Config{BaseURL: srv.URL, Users: 4, Concurrency: 2, Duration: time.Minute})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 10*time.Second)
	require.NotNil(t, res)
}

func TestConfig_Validation(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no URL":           {},
		"relative URL":     {BaseURL: "localhost:80"},
		"fewer users":      {BaseURL: "http://x", Users: 2, Concurrency: 4},
		"negative":         {BaseURL: "http://x", Duration: -1},
		"write percentage": {BaseURL: "http://x", Mix: Mix{Name: "x", WritePercent: 101}},
	} {
		_, err := Run(context.Background(), cfg)
		assert.Error(t, err, name)
	}
}

func TestParseMix(t *testing.T) {
	for s, want := range map[string]Mix{
		"read": ReadHeavy, "read-heavy": ReadHeavy, "write": WriteHeavy, "write-heavy": WriteHeavy,
		"writes=30": {Name: "writes=30", WritePercent: 30},
	} {
		got, err := ParseMix(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, got)
	}
	for _, s := range []string{"", "reads", "writes=101", "writes=-1", "writes=x"} {
		_, err := ParseMix(s)
		assert.Error(t, err, s)
	}
}

func TestJar(t *testing.T) {
	j := newJar()
	j.SetCookies(nil, []*http.Cookie{{Name: "session", Value: "a"}, {Name: "other", Value: "b"}})
	assert.Len(t, j.Cookies(nil), 2)
	j.SetCookies(nil, []*http.Cookie{{Name: "session", Value: "c"}})
	got := map[string]string{}
	for _, c := range j.Cookies(nil) {
		got[c.Name] = c.Value
	}
	assert.Equal(t, map[string]string{"session": "c", "other": "b"}, got)
	j.SetCookies(nil, []*http.Cookie{{Name: "session", MaxAge: -1}})
	j.SetCookies(nil, []*http.Cookie{{Name: "other", Expires: time.Unix(1, 0)}})
	assert.Empty(t, j.Cookies(nil))
}

func TestResult_Merge(t *testing.T) {
	a := run(t, newFakeApp(), Config{Users: 8, Concurrency: 2, Mix: ReadHeavy})
	b := run(t, newFakeApp(), Config{Users: 8, Concurrency: 2, Mix: ReadHeavy})
	b.ErrorSamples = []string{"x", "y"}
	want := a.Total.Requests + b.Total.Requests
	wantMe := a.Ops[OpMe].Requests + b.Ops[OpMe].Requests
	wantMax := max(a.Total.Latency.Max(), b.Total.Latency.Max())
	elapsed := a.Elapsed + b.Elapsed
	var m Result
	m.Merge(a)
	m.Merge(b)
	m.Merge(nil)
	assert.Equal(t, want, m.Total.Requests)
	assert.Equal(t, want, m.Total.Latency.Count())
	assert.Equal(t, wantMe, m.Ops[OpMe].Requests)
	assert.Equal(t, wantMax, m.Total.Latency.Max())
	assert.Equal(t, elapsed, m.Elapsed)
	assert.Equal(t, uint64(16), m.Logins.Requests)
	assert.Equal(t, []string{"x", "y"}, m.ErrorSamples)
	assert.InDelta(t, float64(want)/elapsed.Seconds(), m.RequestsPerSecond(), 0.001)
}

func TestRun_RotatesOverURLs(t *testing.T) {
	// Two servers sharing one session table: a client-side round robin.
	app := newFakeApp()
	var hits [2]atomic.Int64
	var srvs [2]*httptest.Server
	for i := range srvs {
		srvs[i] = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			app.ServeHTTP(w, r)
		}))
		defer srvs[i].Close()
	}
	res, err := Run(context.Background(), Config{MoreURLs: []string{srvs[0].URL, srvs[1].URL + "/"}, Users: 8, Concurrency: 2,
		Duration: 200 * time.Millisecond, Mix: WriteHeavy})
	require.NoError(t, err)
	assert.Zero(t, res.Total.Errors+res.Total.Mismatches, res.ErrorSamples)
	a, b := hits[0].Load(), hits[1].Load()
	assert.InDelta(t, a, b, 1, "strict rotation")
	assert.Equal(t, srvs[0].URL, res.Config.BaseURL)
	assert.Equal(t, []string{srvs[1].URL}, res.Config.MoreURLs)
}
