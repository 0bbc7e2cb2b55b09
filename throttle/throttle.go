package throttle

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sessionmesh/sessionmesh/replication"
)

// Errors of the package. Callers compare with errors.Is; everything else
// is wrapped with context.
var (
	// ErrFull is returned by Allow, with false, for a key that has no
	// count yet in the current window when this node has already created
	// Options.MaxKeys records of the limiter in the window: the key space
	// is full, and stays closed to new keys until the window ends.
	ErrFull = errors.New("throttle: too many keys in this window")
)

// errLimited aborts the update of a count that has reached the limit.
var errLimited = errors.New("throttle: limit reached")

// errNothing aborts the update of a count that is already zero.
var errNothing = errors.New("throttle: nothing to reset")

// countAttr is the attribute of a record holding the count.
const countAttr = "n"

// maxNameLen bounds Options.Name, so that record IDs fit the store's limit
// of 256 bytes with the key.
const maxNameLen = 64

// maxRawKey is the longest key used as is in a record ID; longer ones are
// hashed.
const maxRawKey = 160

// Options configures a Limiter. The zero value of each field but Name
// selects its default.
type Options struct {
	// Name identifies the limiter in the cluster: limiters with the same
	// name count together, on every node. Required: 1 to 64 bytes, no
	// "/".
	Name string
	// MaxKeys bounds the records this node creates for the limiter in one
	// window, that is the new keys it starts counting (see the package
	// documentation: Allow fails closed for further new keys with
	// ErrFull). Default 100 000.
	MaxKeys int
	// FailOpen makes Allow answer true when it cannot count (no owner of
	// the key's record answered, the store is closed or unhealthy).
	// Default false: it answers false then.
	FailOpen bool
	// ErrorRetryAfter is the retryAfter Allow returns when it fails
	// closed because it cannot count. Default 1 s.
	ErrorRetryAfter time.Duration
	// Now returns the time that places a call in its window. Default
	// time.Now. It must agree with the store's clock, which expires the
	// records: tests only.
	Now func() time.Time
}

// DefaultMaxKeys is the default of Options.MaxKeys.
const DefaultMaxKeys = 100_000

// Limiter allows a limited number of calls per key and window across the
// cluster. It is safe for concurrent use.
type Limiter struct {
	store  *replication.Store
	limit  uint64
	window time.Duration
	opts   Options

	mu       sync.Mutex
	current  int64                    // guards: the window created counts, in milliseconds since the epoch
	created  int                      // guards: records created by this node in window current
	creating map[string]chan struct{} // guards: records being created, closed when done
}

// New returns a limiter that allows limit calls of Allow per key in each
// window of length window, counting in store. Limiters on other nodes with
// the same options count with it.
func New(store *replication.Store, limit int, window time.Duration, opts Options) (*Limiter, error) {
	switch {
	case store == nil:
		return nil, errors.New("throttle: nil store")
	case limit < 1:
		return nil, fmt.Errorf("throttle: limit %d, want at least 1", limit)
	case window < time.Millisecond || window%time.Millisecond != 0:
		return nil, fmt.Errorf("throttle: window %v, want a whole number of milliseconds", window)
	case opts.Name == "" || len(opts.Name) > maxNameLen || strings.Contains(opts.Name, "/"):
		return nil, fmt.Errorf("throttle: name %q, want 1 to %d bytes without /", opts.Name, maxNameLen)
	case opts.MaxKeys < 0 || opts.ErrorRetryAfter < 0:
		return nil, errors.New("throttle: negative MaxKeys or ErrorRetryAfter")
	}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.ErrorRetryAfter == 0 {
		opts.ErrorRetryAfter = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Limiter{store: store, limit: uint64(limit), window: window, opts: opts, creating: map[string]chan struct{}{}}, nil
}

// Limit returns the number of calls allowed per key and window.
func (l *Limiter) Limit() int { return int(l.limit) }

// Window returns the length of a window.
func (l *Limiter) Window() time.Duration { return l.window }

// RecordID returns the ID of the store record that counts key, for the
// limiter called name with windows of length window, in the window that
// holds t. Operators and tests use it to find the record and its owners
// (replication.Store.Partitions).
func RecordID(name string, window time.Duration, key string, t time.Time) string {
	w := t.UnixMilli() / window.Milliseconds()
	return recordID(name, w*window.Milliseconds(), key)
}

// recordID returns the ID of the record of key in the window starting at
// start (Unix milliseconds).
func recordID(name string, start int64, key string) string {
	if len(key) > maxRawKey || strings.HasPrefix(key, "#") {
		h := sha256.Sum256([]byte(key))
		key = "#" + base64.RawURLEncoding.EncodeToString(h[:])
	}
	return "~t/" + name + "/" + strconv.FormatInt(start, 36) + "/" + key
}

// windowOf returns the start and the end of the window holding t.
func (l *Limiter) windowOf(t time.Time) (start int64, end time.Time) {
	ms := l.window.Milliseconds()
	start = t.UnixMilli() / ms * ms
	return start, time.UnixMilli(start + ms)
}

// maxAttempts bounds the rounds of Allow: a key created in the first, and
// a window ending between a read and a write in the second.
const maxAttempts = 4

// Allow counts one call for key and reports whether it is within the
// limit. When it is not, retryAfter is the time left until the window
// ends, when the key's count starts again from zero.
//
// The error is nil when the call was counted or refused by its count. It
// is not nil when the store could not count (no owner of the key's record
// answered, ctx ended, the store is closed or unhealthy): then ok is true
// if the limiter fails open (Options.FailOpen) and false otherwise, with
// retryAfter Options.ErrorRetryAfter; ok is the decision either way. A
// call that fails this way may or may not have been counted. For a new key
// beyond Options.MaxKeys it returns false, the time left in the window and
// an error matching ErrFull, whatever FailOpen says.
func (l *Limiter) Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error) {
	for range maxAttempts {
		now := l.opts.Now()
		start, end := l.windowOf(now)
		id := recordID(l.opts.Name, start, key)
		_, _, err := l.store.Update(ctx, id, countAttr, l.increment)
		switch {
		case err == nil:
			return true, 0, nil
		case errors.Is(err, errLimited):
			return false, end.Sub(now), nil
		case !errors.Is(err, replication.ErrSessionEnded):
			return l.cannotCount(fmt.Errorf("throttle %s: count %q: %w", l.opts.Name, key, err))
		}
		// No count yet in this window: create the record, then count.
		if err := l.create(ctx, start, id, end); err != nil {
			if errors.Is(err, ErrFull) {
				return false, end.Sub(now), fmt.Errorf("throttle %s: new key %q: %w", l.opts.Name, key, err)
			}
			return l.cannotCount(fmt.Errorf("throttle %s: create count of %q: %w", l.opts.Name, key, err))
		}
	}
	return l.cannotCount(fmt.Errorf("throttle %s: count %q: window records keep vanishing", l.opts.Name, key))
}

// cannotCount returns the decision of the failure mode for err.
func (l *Limiter) cannotCount(err error) (bool, time.Duration, error) {
	if l.opts.FailOpen {
		return true, 0, err
	}
	return false, l.opts.ErrorRetryAfter, err
}

// increment is the update of a count: one more, unless the limit is
// reached.
func (l *Limiter) increment(old []byte, _ bool) ([]byte, error) {
	n := decodeCount(old)
	if n >= l.limit {
		return nil, errLimited
	}
	return encodeCount(n + 1), nil
}

// create creates record id of the window starting at start, ending at
// end, unless MaxKeys records of the window have been created here. Calls
// that meet on one node create it once: the others wait for the first.
func (l *Limiter) create(ctx context.Context, start int64, id string, end time.Time) error {
	l.mu.Lock()
	if ch, ok := l.creating[id]; ok {
		l.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if start != l.current {
		l.current, l.created = start, 0
	}
	if l.created >= l.opts.MaxKeys {
		l.mu.Unlock()
		return ErrFull
	}
	l.created++
	ch := make(chan struct{})
	l.creating[id] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.creating, id)
		l.mu.Unlock()
		close(ch)
	}()
	// A record without attributes that ends with its window. Nodes that
	// create it at once merge harmlessly: no attribute, same deadline.
	_, err := l.store.Save(ctx, id, replication.Changes{ExpiresAt: end})
	if errors.Is(err, replication.ErrSessionEnded) {
		return nil // the window has just ended: Allow moves to the next one
	}
	return err
}

// Reset clears key's count in the current window, as after a correct
// login. It returns nil when the count is zero or was never started. When
// the store cannot write (no owner answered), it returns the error and the
// count stays until its window ends; a node whose copy has not yet seen
// the reset may still refuse the key once, briefly, after Reset returns
// with the asynchronous write concern.
func (l *Limiter) Reset(ctx context.Context, key string) error {
	start, _ := l.windowOf(l.opts.Now())
	id := recordID(l.opts.Name, start, key)
	_, _, err := l.store.Update(ctx, id, countAttr, func(old []byte, _ bool) ([]byte, error) {
		if decodeCount(old) == 0 {
			return nil, errNothing
		}
		return encodeCount(0), nil
	})
	switch {
	case err == nil, errors.Is(err, errNothing), errors.Is(err, replication.ErrSessionEnded):
		return nil
	default:
		return fmt.Errorf("throttle %s: reset %q: %w", l.opts.Name, key, err)
	}
}

// encodeCount encodes a count as the attribute's value.
func encodeCount(n uint64) []byte { return binary.AppendUvarint(nil, n) }

// decodeCount decodes a count; a missing or malformed value is zero.
func decodeCount(b []byte) uint64 {
	n, k := binary.Uvarint(b)
	if k <= 0 {
		return 0
	}
	return n
}
