package replication

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

func testSnapshotRecords(n int) []*record {
	rs := make([]*record, 0, n+1)
	for i := range n {
		rs = append(rs, &record{id: fmt.Sprintf("s%05d", i), created: 1, expires: 1 << 50, idleMs: 1000, idleUntil: 1 << 49,
			attrs: []attr{{name: "user", value: bytes.Repeat([]byte{byte(i)}, 1+i%900), version: version{time: 7, node: 9}}}})
	}
	return append(rs, &record{id: "gone", destroyed: true, expires: 1 << 50, renamed: 3})
}

// writeTestSnapshot returns a snapshot of rs sealed with k.
func writeTestSnapshot(t testing.TB, k snapshotKey, rs []*record) []byte {
	t.Helper()
	var buf bytes.Buffer
	sw, err := newSnapshotWriter(&buf, k, DefaultLimits(), 1000)
	require.NoError(t, err)
	for _, r := range rs {
		require.NoError(t, sw.add(r))
	}
	require.NoError(t, sw.close())
	require.Equal(t, int64(buf.Len()), sw.bytes)
	return buf.Bytes()
}

func readAll(b []byte, k snapshotKey, notBefore int64) ([]*record, error) {
	var out []*record
	_, err := readSnapshot(bytes.NewReader(b), []snapshotKey{k}, DefaultLimits(), notBefore, func(rs []*record) error {
		out = append(out, rs...)
		return nil
	})
	return out, err
}

func mustKey(t testing.TB, secret []byte, label string) snapshotKey {
	t.Helper()
	k, err := newSnapshotKey(secret, label)
	require.NoError(t, err)
	return k
}

func TestSnapshot_RoundTripAcrossChunks(t *testing.T) {
	for _, secret := range [][]byte{nil, bytes.Repeat([]byte{1}, 32)} {
		k := mustKey(t, secret, "shop")
		rs := testSnapshotRecords(3000) // about 1.4 MB: two chunks
		b := writeTestSnapshot(t, k, rs)
		got, err := readAll(b, k, 0)
		require.NoError(t, err)
		require.Len(t, got, len(rs))
		for i := range rs {
			require.True(t, sameRecord(rs[i], got[i]), "record %d", i)
		}
		if secret != nil {
			require.NotContains(t, string(b), "user", "a sealed snapshot shows attribute names")
		}
	}
}

func TestSnapshot_ReadsWithTheKeysOfARotation(t *testing.T) {
	old := mustKey(t, bytes.Repeat([]byte{1}, 32), "shop")
	cur := mustKey(t, bytes.Repeat([]byte{2}, 32), "shop")
	b := writeTestSnapshot(t, old, testSnapshotRecords(10))
	var n int
	_, err := readSnapshot(bytes.NewReader(b), []snapshotKey{cur, old}, DefaultLimits(), 0, func(rs []*record) error { n += len(rs); return nil })
	require.NoError(t, err)
	require.Equal(t, 11, n)
	_, err = readSnapshot(bytes.NewReader(b), []snapshotKey{cur}, DefaultLimits(), 0, func([]*record) error { return nil })
	require.ErrorIs(t, err, errSnapshotForeign)
}

func TestSnapshot_EmptyStore(t *testing.T) {
	k := mustKey(t, nil, "")
	got, err := readAll(writeTestSnapshot(t, k, nil), k, 0)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestSnapshot_RefusesForeignCorruptAndStale(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, 32)
	k := mustKey(t, secret, "shop")
	good := writeTestSnapshot(t, k, testSnapshotRecords(3000))

	for name, other := range map[string]snapshotKey{
		"other label":  mustKey(t, secret, "bank"),
		"other secret": mustKey(t, bytes.Repeat([]byte{2}, 32), "shop"),
		"no secret":    mustKey(t, nil, "shop"),
	} {
		_, err := readAll(good, other, 0)
		require.ErrorIs(t, err, errSnapshotForeign, name)
	}
	_, err := readAll(writeTestSnapshot(t, mustKey(t, nil, "shop"), nil), k, 0)
	require.ErrorIs(t, err, errSnapshotForeign, "a snapshot without a secret read by a node with one")

	_, err = readAll(good, k, 1001)
	require.ErrorIs(t, err, errSnapshotStale)

	corrupt := map[string][]byte{
		"empty":          nil,
		"short header":   good[:10],
		"truncated":      good[:len(good)-1],
		"no last chunk":  good[:len(good)/2],
		"trailing bytes": append(bytes.Clone(good), 0),
		"other magic":    append([]byte("XXXXXX"), good[6:]...),
		"other version":  append(append(bytes.Clone(good[:6]), 9), good[7:]...),
	}
	for _, at := range []int{snapshotHeaderLen - 1, snapshotHeaderLen + 2, snapshotHeaderLen + 100, len(good) - 5} {
		b := bytes.Clone(good)
		b[at] ^= 0x40
		corrupt[fmt.Sprintf("flipped byte %d", at)] = b
	}
	huge := bytes.Clone(good[:snapshotHeaderLen+4])
	huge[snapshotHeaderLen] = 0xff
	corrupt["huge chunk"] = huge
	for name, b := range corrupt {
		_, err := readAll(b, k, 0)
		require.ErrorIs(t, err, errSnapshotCorrupt, name)
	}
}

// FuzzDecodeSnapshot feeds arbitrary bytes to the snapshot reader, as a
// whole file (sealed with the key of the seeds, and without a secret) and
// as the plaintext of one chunk: it must never panic or allocate beyond a
// chunk's bound, and what it accepts must be within the limits.
func FuzzDecodeSnapshot(f *testing.F) {
	keyed := mustKey(f, bytes.Repeat([]byte{1}, 32), "shop")
	plain := mustKey(f, nil, "")
	f.Add(writeTestSnapshot(f, keyed, testSnapshotRecords(3)))
	f.Add(writeTestSnapshot(f, plain, testSnapshotRecords(3)))
	f.Add(writeTestSnapshot(f, plain, nil))
	chunk, _ := func() ([]byte, error) {
		e := newEncoder(snapshotChunk)
		e.records(testSnapshotRecords(2))
		return e.finish()
	}()
	f.Add(chunk)
	f.Add([]byte{snapshotChunk, 0xdd, 0xff, 0xff, 0xff, 0xff})
	lim := DefaultLimits()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range []snapshotKey{keyed, plain} {
			_, err := readSnapshot(bytes.NewReader(data), []snapshotKey{k}, lim, 0, func(rs []*record) error {
				for _, r := range rs {
					if err := lim.checkRecord(r); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil && !errors.Is(err, errSnapshotCorrupt) && !errors.Is(err, errSnapshotForeign) && !errors.Is(err, ErrSessionTooLarge) {
				t.Fatalf("unexpected error: %v", err)
			}
		}
		rs, err := decodeSnapshotChunk(data)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r == nil || r.id == "" {
				t.Fatalf("accepted a record without ID")
			}
		}
	})
}

func TestSnapshot_SmallLimitsStillReadFullChunks(t *testing.T) {
	lim := Limits{MaxAttributes: 4, MaxValueSize: 64, MaxSessionSize: 256}
	k := mustKey(t, nil, "")
	var rs []*record
	for i := range 20_000 { // about 3 MiB of small attributes: several chunks
		r := &record{id: fmt.Sprintf("s%06d", i), expires: 1 << 50}
		for j := range 4 {
			r.attrs = append(r.attrs, attr{name: fmt.Sprintf("attribute-%02d-%s", j, bytes.Repeat([]byte{'n'}, 20)),
				value: bytes.Repeat([]byte{'v'}, 30), version: version{time: 1 << 40, node: 1 << 60}})
		}
		rs = append(rs, r)
	}
	var buf bytes.Buffer
	sw, err := newSnapshotWriter(&buf, k, lim, 1000)
	require.NoError(t, err)
	for _, r := range rs {
		require.NoError(t, sw.add(r))
	}
	require.NoError(t, sw.close())
	require.Greater(t, sw.index, uint64(2))
	n := 0
	_, err = readSnapshot(bytes.NewReader(buf.Bytes()), []snapshotKey{k}, lim, 0, func(rs []*record) error { n += len(rs); return nil })
	require.NoError(t, err)
	require.Equal(t, len(rs), n)
}

func TestSnapshot_WriterLeavesOutRecordsNoReaderAccepts(t *testing.T) {
	lim := Limits{MaxAttributes: 4, MaxValueSize: 64, MaxSessionSize: 256}
	k := mustKey(t, nil, "")
	huge := &record{id: "huge", attrs: []attr{{name: "cart", value: make([]byte, 2*maxSnapshotRecord(lim))}}}
	small := &record{id: "small", attrs: []attr{{name: "user", value: []byte("ann")}}}
	var buf bytes.Buffer
	sw, err := newSnapshotWriter(&buf, k, lim, 1000)
	require.NoError(t, err)
	require.NoError(t, sw.add(huge))
	require.NoError(t, sw.add(small))
	require.NoError(t, sw.close())
	require.Equal(t, 1, sw.skipped)
	got, err := readAll(buf.Bytes(), k, 0)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "small", got[0].id)
}

func TestSnapshot_LoadLeavesOutOnlyTheRecordsOverTheLimits(t *testing.T) {
	dir := t.TempDir()
	k := mustKey(t, nil, "")
	over := &record{id: "over", expires: 1 << 50, attrs: []attr{{name: "cart", value: make([]byte, 100), version: version{time: 1, node: 1}}}}
	under := &record{id: "under", expires: 1 << 50, attrs: []attr{{name: "user", value: []byte("ann"), version: version{time: 1, node: 1}}}}
	var buf bytes.Buffer
	sw, err := newSnapshotWriter(&buf, k, DefaultLimits(), SystemClock().Now().UnixMilli())
	require.NoError(t, err)
	require.NoError(t, sw.add(over))
	require.NoError(t, sw.add(under))
	require.NoError(t, sw.close())
	require.NoError(t, os.WriteFile(filepath.Join(dir, snapshotFile), buf.Bytes(), 0o600))

	var logs bytes.Buffer
	cfg := Config{SnapshotDir: dir, Limits: Limits{MaxValueSize: 50}}
	require.Error(t, cfg.validate()) // no membership or transport: only the defaults matter here
	s := &Store{cfg: cfg, log: slog.New(slog.NewTextHandler(&logs, nil)), clock: cfg.Clock, parts: newPartitions(&usage{})}
	s.hlc = hlc.NewClock(cfg.Clock.Now, cfg.MaxClockOffset)
	s.snap.key, s.snap.readKeys = k, []snapshotKey{k}
	s.loadSnapshot()
	require.NotNil(t, s.parts[partitionOf("under")].get("under"))
	require.Nil(t, s.parts[partitionOf("over")].get("over"))
	require.Equal(t, 1, s.snap.loaded.Records)
	require.Contains(t, logs.String(), "snapshot records refused")
	require.Contains(t, logs.String(), "records=1")
}
