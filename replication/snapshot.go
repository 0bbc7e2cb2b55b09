package replication

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// This file holds the store's durable snapshots (Config.SnapshotDir): the
// file format, its writer and its reader, and the store's use of them.
//
// A snapshot file is a header followed by chunks. All integers are
// big-endian.
//
//	header (64 bytes):
//	  magic    [6]byte  "SMSNAP"
//	  version  byte     snapshotVersion
//	  flags    byte     bit 0: sealed with a cluster secret
//	  identity [16]byte HKDF(secret, label): the cluster that wrote it
//	  salt     [32]byte random, once per file
//	  written  int64    Unix milliseconds
//	chunk:
//	  length   uint32   of the sealed bytes that follow
//	  sealed   AES-256-GCM of a chunk's records, additional data the header
//
// The key of a file is HKDF(secret, salt, label): every file has its own,
// so chunk nonces are simply the chunk's index (and a mark on the last
// chunk, so that a truncated file is refused, as are reordered chunks).
// A chunk's plaintext is one byte of kind (snapshotChunk) and an array of
// records in the codec of codec.go, the one peers exchange.
//
// Without a secret the key derives from the label alone: the file is
// checked against corruption but neither secret nor authenticated, and
// anyone who can read the directory can read the sessions.

// snapshotFile is the name of the snapshot in Config.SnapshotDir, and
// tempPattern that of a snapshot being written.
const (
	snapshotFile = "sessions.snap"
	tempPattern  = "." + snapshotFile + ".*.tmp"
)

// Format constants: values are part of the file format.
const (
	snapshotMagic     = "SMSNAP"
	snapshotVersion   = 1
	snapshotKeyed     = 1 << 0 // flags: sealed with a cluster secret
	snapshotHeaderLen = 64
	snapshotChunk     = 's' // the kind byte of a chunk's plaintext
	snapshotLastChunk = 1   // nonce byte 8 of the last chunk
	snapshotKeyInfo   = "sessionmesh snapshot v1 key\x00"
	snapshotIDInfo    = "sessionmesh snapshot v1 identity\x00"
)

// snapshotChunkBytes is how many bytes of records the writer gathers per
// chunk before it seals it; a chunk ends at the first record past it.
const snapshotChunkBytes = 1 << 20

// Why a snapshot is refused. The reader wraps one of these.
var (
	errSnapshotCorrupt = errors.New("corrupt snapshot")
	errSnapshotForeign = errors.New("snapshot of another cluster (its label or secret differ)")
	errSnapshotStale   = errors.New("snapshot older than TombstoneTTL")
)

// snapshotKey is what a cluster's snapshots are sealed with.
type snapshotKey struct {
	secret   []byte
	label    string
	keyed    bool
	identity [16]byte
}

func newSnapshotKey(secret []byte, label string) (snapshotKey, error) {
	k := snapshotKey{secret: secret, label: label, keyed: len(secret) > 0}
	id, err := hkdf.Key(sha256.New, secret, nil, snapshotIDInfo+label, len(k.identity))
	if err != nil {
		return k, fmt.Errorf("derive snapshot identity: %w", err)
	}
	copy(k.identity[:], id)
	return k, nil
}

// snapshotKeyOf returns the key of keys that wrote the snapshot whose
// header is h: the one whose identity the header names.
func snapshotKeyOf(h []byte, keys []snapshotKey) (snapshotKey, error) {
	keyed, unkeyed := false, false
	for _, k := range keys {
		keyed, unkeyed = keyed || k.keyed, unkeyed || !k.keyed
		if k.keyed == (h[7]&snapshotKeyed != 0) && subtle.ConstantTimeCompare(h[8:24], k.identity[:]) == 1 {
			return k, nil
		}
	}
	switch {
	case h[7]&snapshotKeyed != 0 && !keyed:
		return snapshotKey{}, fmt.Errorf("%w: it is sealed with a cluster secret and this node has none", errSnapshotForeign)
	case h[7]&snapshotKeyed == 0 && !unkeyed:
		return snapshotKey{}, fmt.Errorf("%w: it was written without a cluster secret and this node has one", errSnapshotForeign)
	}
	return snapshotKey{}, errSnapshotForeign
}

// aead returns the cipher of the file with the given salt.
func (k snapshotKey) aead(salt []byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, k.secret, salt, snapshotKeyInfo+k.label, 32)
	if err != nil {
		return nil, fmt.Errorf("derive snapshot key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("snapshot cipher: %w", err)
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("snapshot cipher: %w", err)
	}
	return g, nil
}

func chunkNonce(nonce []byte, index uint64, last bool) []byte {
	clear(nonce)
	binary.BigEndian.PutUint64(nonce, index)
	if last {
		nonce[8] = snapshotLastChunk
	}
	return nonce
}

// snapshotWriter writes a snapshot to w, one chunk at a time: it encodes
// records straight into the chunk's buffer and seals the chunk once it
// holds snapshotChunkBytes.
type snapshotWriter struct {
	w       io.Writer
	aead    cipher.AEAD
	header  []byte
	nonce   []byte
	index   uint64
	maxRec  int      // the largest encoded record a reader accepts
	enc     *encoder // the chunk being filled, reused between chunks
	inChunk int      // records in it
	sealed  []byte   // reused between chunks
	records int      // records written
	skipped int      // records too large for a reader to accept, left out
	bytes   int64
}

// chunkHeader is the chunk's kind and an array32 header whose count is
// filled in when the chunk is sealed.
var chunkHeader = []byte{snapshotChunk, 0xdd, 0, 0, 0, 0}

func newSnapshotWriter(w io.Writer, k snapshotKey, lim Limits, now int64) (*snapshotWriter, error) {
	h := make([]byte, snapshotHeaderLen)
	copy(h, snapshotMagic)
	h[6] = snapshotVersion
	if k.keyed {
		h[7] |= snapshotKeyed
	}
	copy(h[8:24], k.identity[:])
	if _, err := rand.Read(h[24:56]); err != nil {
		return nil, fmt.Errorf("snapshot salt: %w", err)
	}
	binary.BigEndian.PutUint64(h[56:64], uint64(now))
	g, err := k.aead(h[24:56])
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(h); err != nil {
		return nil, fmt.Errorf("write snapshot header: %w", err)
	}
	sw := &snapshotWriter{w: w, aead: g, header: h, nonce: make([]byte, g.NonceSize()),
		maxRec: maxSnapshotRecord(lim), enc: &encoder{enc: msgpack.NewEncoder(nil)}, bytes: snapshotHeaderLen}
	sw.startChunk()
	return sw, nil
}

func (sw *snapshotWriter) startChunk() {
	sw.enc.reset(chunkHeader[0])
	sw.enc.buf.Write(chunkHeader[1:])
	sw.inChunk = 0
}

// add encodes r into the chunk, sealing the chunk when it is full. A
// record larger than a reader accepts (merges of concurrent writes can
// grow a session past the limits) is left out and counted, so that it
// cannot make the whole snapshot unreadable.
func (sw *snapshotWriter) add(r *record) error {
	e := sw.enc
	mark := e.buf.Len()
	encodeRecord(e, r)
	if e.err != nil {
		return fmt.Errorf("encode snapshot record: %w", e.err)
	}
	if e.buf.Len()-mark > sw.maxRec {
		e.buf.Truncate(mark)
		sw.skipped++
		return nil
	}
	sw.inChunk++
	if e.buf.Len() >= snapshotChunkBytes {
		return sw.flush(false)
	}
	return nil
}

// flush seals and writes the chunk.
func (sw *snapshotWriter) flush(last bool) error {
	plain := sw.enc.buf.Bytes()
	binary.BigEndian.PutUint32(plain[2:6], uint32(sw.inChunk))
	sw.sealed = sw.aead.Seal(append(sw.sealed[:0], 0, 0, 0, 0), chunkNonce(sw.nonce, sw.index, last), plain, sw.header)
	binary.BigEndian.PutUint32(sw.sealed, uint32(len(sw.sealed)-4))
	if _, err := sw.w.Write(sw.sealed); err != nil {
		return fmt.Errorf("write snapshot chunk: %w", err)
	}
	sw.index++
	sw.records += sw.inChunk
	sw.bytes += int64(len(sw.sealed))
	sw.startChunk()
	return nil
}

// close writes the last chunk.
func (sw *snapshotWriter) close() error { return sw.flush(true) }

// maxSnapshotRecord is the largest encoded record a snapshot holds under
// lim: a session at the limits, with room for every field's header.
func maxSnapshotRecord(lim Limits) int {
	lim = lim.withDefaults()
	return lim.MaxSessionSize + lim.MaxAttributes*48 + maxIDLen + 128
}

// maxSnapshotChunk is the largest chunk plaintext a reader accepts under
// lim: a full chunk plus the record that overfilled it.
func maxSnapshotChunk(lim Limits) int {
	return snapshotChunkBytes + maxSnapshotRecord(lim) + len(chunkHeader)
}

// readSnapshot reads a snapshot from r and calls fn with the records of
// each chunk, in order. It checks the header against k, refuses a
// snapshot written earlier than notBefore (Unix milliseconds; 0: any),
// never allocates more than one chunk of maxSnapshotChunk(lim) bytes, and
// decodes records with the bounds peers' records get. fn sees every chunk
// before the snapshot is known to be complete (an error may still follow):
// callers keep what fn collects only when readSnapshot returns nil.
func readSnapshot(r io.Reader, keys []snapshotKey, lim Limits, notBefore int64, fn func([]*record) error) (written int64, err error) {
	h := make([]byte, snapshotHeaderLen)
	if _, err := io.ReadFull(r, h); err != nil {
		return 0, fmt.Errorf("%w: header: %w", errSnapshotCorrupt, err)
	}
	switch {
	case string(h[:6]) != snapshotMagic:
		return 0, fmt.Errorf("%w: not a snapshot file", errSnapshotCorrupt)
	case h[6] != snapshotVersion:
		return 0, fmt.Errorf("%w: format version %d (this release reads %d)", errSnapshotCorrupt, h[6], snapshotVersion)
	}
	k, err := snapshotKeyOf(h, keys)
	if err != nil {
		return 0, err
	}
	written = int64(binary.BigEndian.Uint64(h[56:64]))
	if notBefore != 0 && written < notBefore {
		return written, fmt.Errorf("%w: written %s", errSnapshotStale, time.UnixMilli(written).UTC().Format(time.RFC3339))
	}
	g, err := k.aead(h[24:56])
	if err != nil {
		return written, err
	}
	limit := maxSnapshotChunk(lim) + g.Overhead()
	nonce := make([]byte, g.NonceSize())
	var buf, out []byte
	for index := uint64(0); ; index++ {
		var l [4]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return written, fmt.Errorf("%w: chunk %d: %w", errSnapshotCorrupt, index, err)
		}
		n := int(binary.BigEndian.Uint32(l[:]))
		if n < g.Overhead() || n > limit {
			return written, fmt.Errorf("%w: chunk %d of %d bytes (limit %d)", errSnapshotCorrupt, index, n, limit)
		}
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return written, fmt.Errorf("%w: chunk %d: %w", errSnapshotCorrupt, index, err)
		}
		// Open clears its output when it fails: never open in place.
		last := false
		plain, err := g.Open(out[:0], chunkNonce(nonce, index, false), buf, h)
		if err != nil {
			if plain, err = g.Open(out[:0], chunkNonce(nonce, index, true), buf, h); err != nil {
				return written, fmt.Errorf("%w: chunk %d does not authenticate", errSnapshotCorrupt, index)
			}
			last = true
		}
		out = plain
		rs, err := decodeSnapshotChunk(plain)
		if err != nil {
			return written, fmt.Errorf("%w: chunk %d: %w", errSnapshotCorrupt, index, err)
		}
		if err := fn(rs); err != nil {
			return written, err
		}
		if last {
			break
		}
	}
	if n, _ := io.Copy(io.Discard, io.LimitReader(r, 1)); n != 0 {
		return written, fmt.Errorf("%w: bytes after the last chunk", errSnapshotCorrupt)
	}
	return written, nil
}

// decodeSnapshotChunk decodes the plaintext of one chunk.
func decodeSnapshotChunk(b []byte) ([]*record, error) {
	if len(b) == 0 || b[0] != snapshotChunk {
		return nil, fmt.Errorf("%w: not a chunk of records", errMalformed)
	}
	d := newDecoder(b[1:])
	defer d.release()
	rs := d.records()
	if err := d.done(); err != nil {
		return nil, err
	}
	return rs, nil
}

// snapshotPath returns the path of the store's snapshot.
func (s *Store) snapshotPath() string { return filepath.Join(s.cfg.SnapshotDir, snapshotFile) }

// SnapshotStats describes the last snapshot a store wrote or loaded.
type SnapshotStats struct {
	Records int           // sessions and tombstones in it
	Bytes   int64         // size of the file
	Took    time.Duration // time to write or load it
}

// snapshotState is what the store remembers of its snapshots.
type snapshotState struct {
	key      snapshotKey   // seals the snapshots written
	readKeys []snapshotKey // the one a snapshot at start may be sealed with: key, then Config.SnapshotOldKeys
	written  bool          // a snapshot of this store's state was written or loaded
	count    int           // of the records then
	digest   uint64        // and their digest, to skip writing an unchanged state
	last     SnapshotStats // the last one written
	loaded   SnapshotStats // the one loaded at start
	errors   int           // writes that failed in a row, to log once per run of failures
}

// loadSnapshot fills the store's partitions from its snapshot, if any,
// before the store serves: records pass admit's checks (limits, clock
// bound; one that fails is left out, counted and logged), expired ones are
// dropped. A snapshot that is corrupt, foreign
// or stale is moved aside (its name gets ".refused") and the store starts
// empty, with one log line that says why. The partitions stay unready, so
// the maintenance loop reconciles them with the peers: merging by version
// as always, a tombstone or a newer write made elsewhere meanwhile wins.
func (s *Store) loadSnapshot() {
	path := s.snapshotPath()
	start := s.clock.Monotonic()
	// Temporary files of writes a crash interrupted: never complete, never
	// read, only taking space.
	if stale, _ := filepath.Glob(filepath.Join(s.cfg.SnapshotDir, tempPattern)); len(stale) > 0 {
		for _, f := range stale {
			_ = os.Remove(f)
		}
		s.log.Info("removed temporary files of interrupted snapshot writes", "files", len(stale))
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		s.log.Info("no snapshot to load; starting empty", "path", path)
		return
	}
	if err != nil {
		s.log.Warn("snapshot unreadable; starting empty", "path", path, "err", err)
		return
	}
	defer func() { _ = f.Close() }()
	now := s.now()
	notBefore := now - s.cfg.TombstoneTTL.Milliseconds()
	var loaded, expired, refused int
	var refusal error
	written, err := readSnapshot(bufio.NewReaderSize(f, 256<<10), s.snap.readKeys, s.cfg.Limits, notBefore, func(rs []*record) error {
		for _, r := range rs {
			// A record over the limits or the clock bound costs only
			// itself: the file is authentic, the limits may have changed.
			if err := s.checkRecords(r); err != nil {
				refused++
				refusal = cmp.Or(refusal, err)
				continue
			}
			if _, _, changed := s.parts[partitionOf(r.id)].apply(r, now); changed {
				loaded++
			} else {
				expired++
			}
		}
		return nil
	})
	if err != nil {
		held := &usage{} // what the refused snapshot put in counted for nothing
		if s.budget != nil {
			s.budget.held = held
		}
		s.parts = newPartitions(held)
		aside := path + ".refused"
		if rerr := os.Rename(path, aside); rerr != nil {
			aside = ""
		}
		s.log.Warn("snapshot refused; starting empty", "path", path, "moved_to", aside, "err", err)
		return
	}
	size := int64(0)
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	s.snap.loaded = SnapshotStats{Records: loaded, Bytes: size, Took: s.clock.Monotonic() - start}
	// With old keys, the snapshot may be sealed with one of them: write
	// the next one, under the current key, even if nothing changes.
	s.snap.written, s.snap.count, s.snap.digest = len(s.snap.readKeys) == 1, loaded, s.digest()
	s.markUnshared()
	s.log.Info("snapshot loaded", "path", path, "records", loaded, "expired", expired,
		"age", time.Duration(now-written)*time.Millisecond, "took", s.snap.loaded.Took.Round(time.Millisecond))
	if refused > 0 {
		s.log.Warn("snapshot records refused: over the size limits or the clock bound", "records", refused, "first", refusal)
	}
}

// snapshotLoop writes a snapshot every SnapshotInterval until Close, and
// stops writing once Leave is called: Leave and Close write the last ones.
func (s *Store) snapshotLoop() {
	for s.sleep(s.cfg.SnapshotInterval) {
		if s.selfLeave.Load() {
			continue
		}
		s.snapshotNow()
	}
}

// snapshotNow writes a snapshot and logs a failure, once per run of
// failures.
func (s *Store) snapshotNow() bool {
	err := s.writeSnapshot()
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	if err != nil {
		s.stats.snapshotFailures.Add(1)
		if s.snap.errors++; s.snap.errors == 1 {
			s.log.Warn("snapshot failed; will retry", "path", s.snapshotPath(), "err", err)
		}
		return false
	}
	if s.snap.errors > 0 {
		s.log.Info("snapshot written again", "path", s.snapshotPath(), "failures", s.snap.errors)
		s.snap.errors = 0
	}
	return true
}

// writeSnapshot writes every record the store holds (sessions and
// tombstones not yet expired) to a new snapshot, unless nothing changed
// since the last one. It copies one partition's record pointers at a time
// under that partition's read lock (records are immutable) and encodes and
// writes without any lock, so requests never wait for the disk. The file
// is written to a temporary name in the same directory, synced, renamed
// over the previous snapshot, and the directory synced: a crash leaves
// either the old snapshot or the new one.
func (s *Store) writeSnapshot() error {
	s.snapWrite.Lock()
	defer s.snapWrite.Unlock()
	count := 0
	for _, p := range s.parts {
		n, _ := p.stats()
		count += n
	}
	digest := s.digest()
	s.snapMu.Lock()
	unchanged := s.snap.written && s.snap.count == count && s.snap.digest == digest
	s.snapMu.Unlock()
	if unchanged {
		return nil
	}
	start := s.clock.Monotonic()
	dir := s.cfg.SnapshotDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("snapshot dir: %w", err)
	}
	f, err := os.CreateTemp(dir, tempPattern)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 256<<10)
	now := s.now()
	s.snapMu.Lock()
	key := s.snap.key
	s.snapMu.Unlock()
	sw, err := newSnapshotWriter(bw, key, s.cfg.Limits, now)
	if err != nil {
		return err
	}
	for _, p := range s.parts {
		for _, r := range p.snapshot() {
			if d := r.deadline(); d != 0 && d <= now {
				continue
			}
			if err := sw.add(r); err != nil {
				return err
			}
		}
	}
	if err := sw.close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync snapshot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	if err := os.Rename(tmp, s.snapshotPath()); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	ok = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("sync snapshot dir: %w", err)
	}
	s.snapMu.Lock()
	s.snap.written, s.snap.count, s.snap.digest = true, count, digest
	s.snap.last = SnapshotStats{Records: sw.records, Bytes: sw.bytes, Took: s.clock.Monotonic() - start}
	s.snapMu.Unlock()
	s.stats.snapshots.Add(1)
	if sw.skipped > 0 {
		s.log.Warn("sessions over the size limits left out of the snapshot", "sessions", sw.skipped)
	}
	s.log.Debug("snapshot written", "records", sw.records, "bytes", sw.bytes, "took", s.snap.last.Took)
	return nil
}

// UseSnapshotKey makes the store seal its snapshots with the cluster
// secret secret from now on (the label stays Config.SnapshotLabel), and
// write one at the next interval even if nothing changed, so that the
// snapshot on disk follows a rotation of the secret. sessionmesh's
// Node.UseKey calls it. It does nothing without Config.SnapshotDir.
func (s *Store) UseSnapshotKey(secret []byte) error {
	if s.cfg.SnapshotDir == "" {
		return nil
	}
	k, err := newSnapshotKey(bytes.Clone(secret), s.cfg.SnapshotLabel)
	if err != nil {
		return fmt.Errorf("replication: %w", err)
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	s.snap.key, s.snap.written = k, false
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// Snapshots returns the last snapshot the store wrote and the one it
// loaded at start (zero when none); see Config.SnapshotDir.
func (s *Store) Snapshots() (last, loaded SnapshotStats) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	return s.snap.last, s.snap.loaded
}

// liveSessions counts the sessions the store holds that are not
// destroyed.
func (s *Store) liveSessions() int {
	now := s.now()
	n := 0
	for _, p := range s.parts {
		p.mu.RLock()
		for _, r := range p.records {
			if r.live(now) {
				n++
			}
		}
		p.mu.RUnlock()
	}
	return n
}
