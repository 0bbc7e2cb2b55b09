package scsstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/gob"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession/scsstore"
	"github.com/sessionmesh/sessionmesh/internal/testing/renewrace"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
	"github.com/sessionmesh/sessionmesh/replication"
)

// nextBuildEnv, set, makes the test binary the next build of the
// application, whose cart type has changed: it prints a cart, encoded as
// that build's KeyCodec stores it and as that build's whole gob session,
// and exits.
const nextBuildEnv = "SCSSTORE_TEST_NEXT_BUILD"

// cart is the type of the "cart" value in this build; the next build
// changes the type of Items, under the same gob name.
type cart struct{ Items []string }

type nextCart struct{ Items map[string]int }

func init() {
	if os.Getenv(nextBuildEnv) != "" {
		gob.RegisterName("cart", nextCart{})
	} else {
		gob.RegisterName("cart", cart{})
	}
}

// nextBuild prints, base64 on one line each, the next build's encoding of
// a cart as one KeyCodec value, and of a whole scs session (GobCodec) of
// user ann with 42 visits and that cart.
func nextBuild() {
	var v interface{} = nextCart{Items: map[string]int{"book": 2}}
	var one bytes.Buffer
	if err := gob.NewEncoder(&one).Encode(&v); err != nil {
		panic(err)
	}
	whole, err := scs.GobCodec{}.Encode(time.Now().Add(time.Hour), map[string]interface{}{"user": "ann", "visits": 42, "cart": v})
	if err != nil {
		panic(err)
	}
	fmt.Println(base64.StdEncoding.EncodeToString(one.Bytes()))
	fmt.Println(base64.StdEncoding.EncodeToString(whole))
}

// keyApp is a shop written against scs alone. /hold holds the request
// after the session is loaded, until the test releases it.
func keyApp(sm *scs.SessionManager, gate *renewrace.Gate) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		sm.Put(r.Context(), "user", r.FormValue("user"))
		sm.Put(r.Context(), "visits", 42)
		sm.Put(r.Context(), "cart", cart{Items: []string{"book"}})
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /me", func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		c, _ := sm.Get(ctx, "cart").(cart)
		fmt.Fprintf(w, "%s %d %v", sm.GetString(ctx, "user"), sm.GetInt(ctx, "visits"), c.Items)
	})
	mux.HandleFunc("POST /visit", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "visits", sm.GetInt(r.Context(), "visits")+1)
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("POST /hold", func(w http.ResponseWriter, r *http.Request) {
		gate.Hold(r.Context(), r.FormValue("ticket"))
		sm.Put(r.Context(), r.FormValue("k"), r.FormValue("v"))
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, sm.GetString(r.Context(), r.FormValue("k")))
	})
	return sm.LoadAndSave(mux)
}

// keyWeb is three nodes serving keyApp, with KeyCodec or scs's GobCodec.
type keyWeb struct {
	c    *testcluster.Cluster
	urls []string
	gate *renewrace.Gate
	logs *syncBuffer
}

// syncBuffer is a log sink for several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // guards: what was logged
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newKeyWeb(t *testing.T, perKey bool) *keyWeb {
	w := &keyWeb{c: testcluster.New(t, testcluster.Options{Seed: 1}), gate: renewrace.NewGate(), logs: &syncBuffer{}}
	for i := 0; i < 3; i++ {
		st := newStore(t, w.c.Start(fmt.Sprintf("n%d", i)).Store)
		sm := scs.New()
		sm.Store = st
		sm.ErrorFunc = scsstore.ErrorFunc(func(rw http.ResponseWriter, _ *http.Request, err error) {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
		})
		if perKey {
			codec := &scsstore.KeyCodec{Logger: slog.New(slog.NewTextHandler(w.logs, nil))}
			sm.Codec, st.Codec = codec, codec
		}
		srv := httptest.NewServer(keyApp(sm, w.gate))
		t.Cleanup(srv.Close)
		w.urls = append(w.urls, srv.URL)
	}
	w.c.WaitConverged(t)
	return w
}

// pairs runs n pairs of requests of one user that change different keys
// at the same time, on two nodes: both load the session before either
// commits. It returns how many pairs lost a change.
func (w *keyWeb) pairs(t *testing.T, n int) (lost int) {
	for p := 0; p < n; p++ {
		c := browser(t)
		code, _ := do(t, c, "POST", w.urls[0]+"/login", url.Values{"user": {"ann"}})
		require.Equal(t, http.StatusOK, code)
		var wg sync.WaitGroup
		for i, k := range []string{"a", "b"} {
			ticket := fmt.Sprintf("%d/%s", p, k)
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequest("POST", w.urls[1+i]+"/hold", strings.NewReader(url.Values{"ticket": {ticket}, "k": {k}, "v": {ticket}}.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				if resp, err := c.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
		for _, k := range []string{"a", "b"} {
			ticket := fmt.Sprintf("%d/%s", p, k)
			select {
			case <-w.gate.Held(ticket):
			case <-time.After(30 * time.Second):
				t.Fatalf("pair %d: %s was never held", p, k)
			}
		}
		w.gate.Release(fmt.Sprintf("%d/a", p))
		w.gate.Release(fmt.Sprintf("%d/b", p))
		wg.Wait()
		for _, k := range []string{"a", "b"} {
			if _, got := do(t, c, "GET", w.urls[p%3]+"/get?k="+k, nil); got != fmt.Sprintf("%d/%s", p, k) {
				lost++
				break
			}
		}
	}
	return lost
}

// With KeyCodec, two requests of one user that change different keys at
// the same time on two nodes both keep their change, 200 times out of 200;
// with scs's one blob per session, one of the two is lost every time.
func TestSCS_KeyCodecKeepsConcurrentChangesOfDifferentKeys(t *testing.T) {
	assert.Zero(t, newKeyWeb(t, true).pairs(t, 200), "pairs that lost a change with KeyCodec")
	assert.Equal(t, 20, newKeyWeb(t, false).pairs(t, 20), "with GobCodec, the last commit wins")
}

// A deploy that changes the type of one value: the next build stores a
// cart the nodes of this build cannot decode. With KeyCodec they drop that
// value with a warning and serve the rest of the session, and keep the
// cart for the nodes that can read it; with one gob blob the whole session
// fails on them.
func TestSCS_TypeChangeFailsOnlyTheChangedKey(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), nextBuildEnv+"=1")
	out, err := cmd.Output()
	require.NoError(t, err)
	lines := strings.Fields(string(out))
	require.Len(t, lines, 2, "%s", out)
	oneCart, err := base64.StdEncoding.DecodeString(lines[0])
	require.NoError(t, err)
	wholeSession, err := base64.StdEncoding.DecodeString(lines[1])
	require.NoError(t, err)
	ctx := context.Background()

	t.Run("per-key codec", func(t *testing.T) {
		w := newKeyWeb(t, true)
		c := browser(t)
		do(t, c, "POST", w.urls[0]+"/login", url.Values{"user": {"ann"}})
		_, me := do(t, c, "GET", w.urls[1]+"/me", nil)
		require.Equal(t, "ann 42 [book]", me)
		// A node of the next build commits its cart: the one value.
		tok := cookieValue(t, c, w.urls[0])
		st := w.c.Node("n2").Store
		_, err := st.Save(ctx, tok, replication.Changes{Set: map[string][]byte{"scs.k.cart": oneCart}})
		require.NoError(t, err)

		for i, u := range w.urls {
			code, me := do(t, c, "GET", u+"/me", nil)
			assert.Equal(t, http.StatusOK, code)
			assert.Equal(t, fmt.Sprintf("ann %d []", 42+i), me, "only the cart is missing on %s", u)
			code, _ = do(t, c, "POST", u+"/visit", nil)
			assert.Equal(t, http.StatusOK, code)
		}
		_, me = do(t, c, "GET", w.urls[0]+"/me", nil)
		assert.Equal(t, "ann 45 []", me, "the visits were counted")
		assert.Contains(t, w.logs.String(), "level=WARN")
		assert.Contains(t, w.logs.String(), "key=cart")
		for _, n := range w.c.Nodes() {
			sess, ok, err := n.Store.Get(ctx, tok)
			require.NoError(t, err)
			require.True(t, ok)
			got, _ := sess.Value("scs.k.cart")
			assert.Equal(t, oneCart, got, "the next build's cart is kept on %s", n.Name)
		}
	})

	t.Run("gob codec", func(t *testing.T) {
		w := newKeyWeb(t, false)
		c := browser(t)
		do(t, c, "POST", w.urls[0]+"/login", url.Values{"user": {"ann"}})
		tok := cookieValue(t, c, w.urls[0])
		// A node of the next build commits the whole session.
		_, err := w.c.Node("n2").Store.Save(ctx, tok, replication.Changes{Set: map[string][]byte{"scs.data": wholeSession}})
		require.NoError(t, err)
		for _, u := range w.urls {
			code, _ := do(t, c, "GET", u+"/me", nil)
			assert.Equal(t, http.StatusInternalServerError, code, "the whole session fails on %s", u)
		}
	})
}

// cookieValue returns the session token the browser holds for u.
func cookieValue(t *testing.T, c *http.Client, u string) string {
	pu, err := url.Parse(u)
	require.NoError(t, err)
	for _, ck := range c.Jar.Cookies(pu) {
		if ck.Name == "session" {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// Sessions stored as one blob before the switch to KeyCodec load, and are
// stored one value per attribute from their next commit; a Store back on
// GobCodec reads those again.
func TestStore_KeyCodecConvertsSessionsBothWays(t *testing.T) {
	s, _, now := newTimedStore(t)
	ctx := context.Background()
	gobCodec, keyCodec := scs.GobCodec{}, &scsstore.KeyCodec{}
	deadline := now.Add(time.Hour).UTC()
	values := map[string]interface{}{"user": "ann", "visits": 42, "cart": cart{Items: []string{"book"}}}
	blob, err := gobCodec.Encode(deadline, values)
	require.NoError(t, err)
	require.NoError(t, s.CommitCtx(ctx, tok, blob, deadline))

	s.Codec = keyCodec
	b, found, err := s.FindCtx(ctx, tok)
	require.NoError(t, err)
	require.True(t, found)
	d, got, err := keyCodec.Decode(b)
	require.NoError(t, err)
	assert.True(t, d.Equal(deadline))
	assert.Equal(t, values, got, "a blob of GobCodec decodes")
	got["visits"] = 43
	b, err = keyCodec.Encode(d, got)
	require.NoError(t, err)
	require.NoError(t, s.CommitCtx(ctx, tok, b, deadline))

	b, found, err = s.FindCtx(ctx, tok)
	require.NoError(t, err)
	require.True(t, found)
	_, got, err = keyCodec.Decode(b)
	require.NoError(t, err)
	assert.Equal(t, 43, got["visits"])
	assert.Contains(t, got, scsstore.LoadedKey, "what the request loaded travels to its commit")
	delete(got, scsstore.LoadedKey)
	assert.Equal(t, map[string]interface{}{"user": "ann", "visits": 43, "cart": cart{Items: []string{"book"}}}, got)

	s.Codec = gobCodec
	b, found, err = s.FindCtx(ctx, tok)
	require.NoError(t, err)
	require.True(t, found)
	_, got, err = gobCodec.Decode(b)
	require.NoError(t, err)
	assert.Equal(t, map[string]interface{}{"user": "ann", "visits": 43, "cart": cart{Items: []string{"book"}}}, got, "back to one blob")
}
