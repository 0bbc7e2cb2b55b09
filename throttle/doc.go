// Package throttle is a cluster-wide rate limiter on top of the replicated
// session store: brute-force limits for a login service (so many wrong
// passwords per account, so many attempts per client address) that hold
// whichever node a load balancer picks and that no node restart resets,
// without Redis.
//
//	users, err := throttle.New(node.Store, 5, 15*time.Minute, throttle.Options{Name: "login-user"})
//	...
//	ok, retryAfter, err := users.Allow(ctx, "user:"+name)
//	if err != nil {
//		log.Warn("login throttle", "err", err) // ok is still the decision to follow
//	}
//	if !ok {
//		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retryAfter.Seconds()))))
//		http.Error(w, "too many attempts", http.StatusTooManyRequests)
//		return
//	}
//	if passwordOK {
//		_ = users.Reset(ctx, "user:"+name) // a correct login clears the count
//	}
//
// Call Allow before checking the password, for every attempt: an attempt
// that is counted only after it failed lets concurrent requests all pass
// the check before any of them is counted.
//
// # Algorithm: fixed window
//
// A Limiter allows limit calls of Allow per key in each window of the
// given length, windows being aligned on multiples of the length since the
// Unix epoch. The count of a key in a window is one record of the store,
// named by the limiter, the window's start and the key (RecordID), holding
// one attribute: the count. Allow increments it with Store.Update, the
// store's compare-and-set, coordinated by the record's owners, so
// increments made at the same moment on different nodes are never lost
// and never exceed the limit: of 64 concurrent attempts through three
// nodes exactly limit succeed. An attempt over the limit writes nothing.
// The record expires at the end of its window (its absolute deadline), so
// counts vanish with their window and their memory is reclaimed by the
// store's sweeper, with no clean-up of ours.
//
// Fixed windows were chosen over sliding windows and token buckets because
// they map onto the store's primitives one to one: a window is a record
// that expires by itself, a count is an attribute updated atomically, and
// a call costs one compare-and-set (the first call of a key in a window
// also creates the record: one more replicated write), while a call over
// the limit is refused from the node's own copy, with no write and, when
// the node holds the record, no network. They also behave
// as the INCR + EXPIRE of Redis that login services already use, so limits
// carry over unchanged. A sliding window would read two records per call
// and a token bucket would rewrite its state on every call, refill
// included; both smooth the known weakness of fixed windows, a client
// spending its limit at the end of one window and again at the start of
// the next (2×limit in a short time, at most). For brute-force limits of a
// few attempts per quarter of an hour that is harmless.
//
// Windows follow each node's wall clock. Nodes whose clocks differ (the
// store bounds the offset, replication.Config.MaxClockOffset) may briefly
// count in different windows around a window's end.
//
// # Durability
//
// Counts are replicated like sessions: with the default write concern an
// allowed call returns once every live owner of the record has it, so the
// SIGKILL of any one node (with all-to-all ownership or Backups(n ≥ 1))
// loses no count, and the other nodes go on refusing at once. With
// replication.Async a count acknowledged just before a crash may be lost.
//
// Across a coordinator failure an increment can count although its call
// failed (Store.Update's contract: the update may or may not have been
// applied), and Allow answers that call by its failure mode. So while the
// nodes' views of the cluster change, a key may be refused a call before
// its limit: counts run ahead of the calls allowed, never behind.
//
// # Key space and memory
//
// Records live in the store's reserved namespace: their IDs start with
// "~t/" (the store's reserved prefix "~", then "t/", the limiter's name,
// the window and the key), and no session ID can start with "~":
// httpsession accepts from a cookie only IDs of the shape it generates.
// Keys are any strings; keys too long for a record ID, or starting with
// "#", are replaced by a hash.
//
// An attacker who sprays random user names creates a record per name, so a
// Limiter bounds the records it creates: at most Options.MaxKeys new keys
// per window on each node. At the bound the limiter fails closed for new
// keys: Allow of a key that has no count yet in the window returns false
// and ErrFull until the window ends, while keys already counted go on
// being counted and allowed as before. Failing closed is what a
// brute-force limit needs: failing open would give the attacker unlimited
// guesses exactly when he has sprayed, and evicting old windows frees
// nothing in a replicated store (a deleted record leaves a tombstone until
// its deadline, which is the window's end anyway). The price is that a
// user who had no failed attempt yet is refused during a spray until the
// window ends; a per-address limit checked first (as examples/login does)
// keeps a single client from reaching the bound. The bound is per node:
// all-to-all, a node holds at most nodes × MaxKeys records of a limiter per
// live window (a node restarted within a window starts counting again).
// docs/benchmarks.md records the memory a record costs.
//
// # When the store cannot count: fail open or fail closed
//
// When no owner of a key's record answers (replication.ErrUnreachable,
// a deadline, a store closed or with its clock too far ahead), Allow
// cannot count. Options.FailOpen chooses what it then answers:
//
//   - Fail closed (the default): Allow returns false, with retryAfter
//     Options.ErrorRetryAfter, and the error. Right for login: an outage of
//     the counts must not open the door to guessing.
//   - Fail open: Allow returns true and the error. Right for limits that
//     protect capacity rather than secrets, where refusing everyone during
//     an outage is worse than not counting.
//
// Either way the error is returned, wrapped with context, for the caller
// to log; the boolean is the decision to follow. Reset has nothing to
// decide: it returns the error, and the count stays until the window ends.
// ErrFull is never subject to FailOpen.
//
// # Concurrency
//
// A Limiter is safe for concurrent use. Limiters on different nodes with
// the same Name, limit and window count together; limiters with different
// names never share counts.
//
// The store reports the limiter's records like sessions in Stats and
// Config.OnSessionEvent; their IDs start with "~".
package throttle
