package scsstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/httpsession/scsstore"
	"github.com/sessionmesh/sessionmesh/internal/testing/testcluster"
)

// newTimedStore returns a Store on a one-node cluster whose clock the test
// sets, and the backend that counts its writes.
func newTimedStore(t *testing.T) (*scsstore.Store, *counting, *time.Time) {
	c := testcluster.New(t, testcluster.Options{})
	n := c.Start("n")
	c.WaitReady(t)
	b := &counting{Backend: n.Store}
	s := newStore(t, b)
	now := time.Now()
	s.Now = func() time.Time { return now }
	return s, b, &now
}

const tok = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdE"

func TestStore_FindOfUnknownOrMalformedTokensIsNotFound(t *testing.T) {
	s, _, _ := newTimedStore(t)
	for _, token := range []string{"", tok, "~p.whatever", strings.Repeat("x", 300), "../../etc/passwd"} {
		b, found, err := s.Find(token)
		assert.NoError(t, err, "token %q", token)
		assert.False(t, found)
		assert.Nil(t, b)
		assert.NoError(t, s.Delete(token))
	}
	assert.ErrorIs(t, s.Commit("~p.x", []byte("x"), time.Now().Add(time.Hour)), scsstore.ErrInvalidToken)
	all, err := s.All()
	require.NoError(t, err)
	assert.NotNil(t, all)
	assert.Empty(t, all)
}

func TestStore_CommitFindDelete(t *testing.T) {
	s, _, now := newTimedStore(t)
	ctx := context.Background()
	blob := []byte("opaque scs blob")
	require.NoError(t, s.CommitCtx(ctx, tok, blob, now.Add(time.Hour)))
	blob[0] = 'X' // the store kept its own copy
	b, found, err := s.FindCtx(ctx, tok)
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, "opaque scs blob", string(b))
	all, err := s.AllCtx(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{tok: []byte("opaque scs blob")}, all)

	require.NoError(t, s.DeleteCtx(ctx, tok))
	_, found, err = s.FindCtx(ctx, tok)
	require.NoError(t, err)
	assert.False(t, found)
}

func TestStore_ExpiryIsTheLastCommits(t *testing.T) {
	s, _, now := newTimedStore(t)
	t0 := *now
	blob := []byte("b")
	require.NoError(t, s.Commit(tok, blob, t0.Add(time.Hour)))
	*now = t0.Add(30 * time.Minute)
	_, found, _ := s.Find(tok)
	assert.True(t, found)
	// scs's SetDeadline moved the deadline back: it holds at once.
	require.NoError(t, s.Commit(tok, []byte("c"), t0.Add(40*time.Minute)))
	*now = t0.Add(41 * time.Minute)
	_, found, _ = s.Find(tok)
	assert.False(t, found, "expired at the deadline of the last commit")
	all, err := s.All()
	require.NoError(t, err)
	assert.Empty(t, all)
	// A commit whose expiry has passed deletes.
	*now = t0
	require.NoError(t, s.Commit(tok, blob, t0.Add(-time.Second)))
	_, found, _ = s.Find(tok)
	assert.False(t, found)
}

func TestStore_CommitsThatOnlyTouchAreReplicatedInSteps(t *testing.T) {
	s, b, now := newTimedStore(t)
	t0 := *now
	codec := scs.GobCodec{}
	values := map[string]any{}
	for i := 0; i < 20; i++ {
		values[fmt.Sprint("k", i)] = i
	}
	blob, err := codec.Encode(t0.Add(24*time.Hour), values)
	require.NoError(t, err)
	require.NoError(t, s.Commit(tok, blob, t0.Add(time.Hour)))
	require.EqualValues(t, 1, b.saves.Load())

	// The same values, encoded again: gob writes the map in another order.
	var other []byte
	for range 100 {
		if other, err = codec.Encode(t0.Add(24*time.Hour), values); err == nil && string(other) != string(blob) {
			break
		}
	}
	require.NotEqual(t, blob, other, "gob's map order is random")
	*now = t0.Add(time.Minute)
	require.NoError(t, s.Commit(tok, other, t0.Add(time.Hour+time.Minute)))
	assert.EqualValues(t, 1, b.saves.Load(), "moved by 1m of 1h: coalesced")

	*now = t0.Add(8 * time.Minute)
	require.NoError(t, s.Commit(tok, blob, t0.Add(time.Hour+8*time.Minute)))
	assert.EqualValues(t, 2, b.saves.Load(), "moved by more than 1h/8: replicated")

	values["k0"] = "changed"
	changed, err := codec.Encode(t0.Add(24*time.Hour), values)
	require.NoError(t, err)
	require.NoError(t, s.Commit(tok, changed, t0.Add(time.Hour+8*time.Minute)))
	assert.EqualValues(t, 3, b.saves.Load(), "a changed value is written at once")
	got, found, err := s.Find(tok)
	require.NoError(t, err)
	require.True(t, found)
	_, decoded, err := codec.Decode(got)
	require.NoError(t, err)
	assert.Equal(t, "changed", decoded["k0"])

	// Expiry bound: a coalesced commit leaves the stored expiry behind by
	// less than an eighth.
	*now = t0.Add(9 * time.Minute)
	require.NoError(t, s.Commit(tok, changed, t0.Add(time.Hour+9*time.Minute)))
	assert.EqualValues(t, 3, b.saves.Load())
	*now = t0.Add(time.Hour + 8*time.Minute)
	_, found, _ = s.Find(tok)
	assert.False(t, found, "ends at the last replicated expiry, within the bound")
}

// With KeepCookie, a commit under a token the store held already says the
// browser's cookie is right (scs then sets none), until the expiry has
// moved a step from the one the last cookie carried; a new token always
// gets its cookie.
func TestStore_KeepCookieSetsTheCookieOnlyWhenItChanges(t *testing.T) {
	s, b, now := newTimedStore(t)
	s.KeepCookie = true
	t0 := *now
	codec := scs.GobCodec{}
	blob := func(v int) []byte {
		b, err := codec.Encode(t0.Add(24*time.Hour), map[string]any{"v": v})
		require.NoError(t, err)
		return b
	}
	require.NoError(t, s.Commit(tok, blob(1), t0.Add(time.Hour)), "a new token: set the cookie")

	*now = t0.Add(time.Minute)
	err := s.Commit(tok, blob(2), t0.Add(time.Hour+time.Minute))
	require.ErrorIs(t, err, scsstore.ErrCookieUnchanged, "a changed value under the same token")
	got, _, err := s.Find(tok)
	require.NoError(t, err)
	_, values, err := codec.Decode(got)
	require.NoError(t, err)
	assert.Equal(t, 2, values["v"], "stored all the same")
	saves := b.saves.Load()
	require.ErrorIs(t, s.Commit(tok, blob(2), t0.Add(time.Hour+time.Minute)), scsstore.ErrCookieUnchanged)
	assert.Equal(t, saves, b.saves.Load(), "nothing to store")

	*now = t0.Add(8 * time.Minute)
	require.NoError(t, s.Commit(tok, blob(2), t0.Add(time.Hour+8*time.Minute)), "the expiry moved a step since the last cookie")
	*now = t0.Add(9 * time.Minute)
	require.ErrorIs(t, s.Commit(tok, blob(3), t0.Add(time.Hour+9*time.Minute)), scsstore.ErrCookieUnchanged)
	require.NoError(t, s.Commit(tok, blob(3), t0.Add(30*time.Minute)), "an expiry moved back")

	s.KeepCookie = false
	require.NoError(t, s.Commit(tok, blob(4), t0.Add(30*time.Minute)), "without KeepCookie, never")
}
