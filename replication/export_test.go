package replication

// Digest returns a 64-bit summary of every session the store holds, for
// tests that compare replicas.
func (s *Store) Digest() uint64 { return s.digest() }

// PartitionOf returns the partition of a session ID.
var PartitionOf = partitionOf

// WriteSnapshot writes a snapshot now (Config.SnapshotDir), for tests that
// time it.
func (s *Store) WriteSnapshot() error { return s.writeSnapshot() }

// MissedWrites reports whether the store knows it missed writes (what its
// read answers say as behind).
func (s *Store) MissedWrites() bool { return s.leases.missedWrites.Load() }

// LeaseRequests counts the lease requests the store has sent.
func (s *Store) LeaseRequests() uint64 { return s.stats.leaseRequests.Load() }
