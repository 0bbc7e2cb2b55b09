package replication

import "fmt"

// admit is the one gate for records that came from a peer: a write, a
// repair or hand-off, a state transfer chunk, a read's or an update's
// answer. Before any of them is used, each must be within Config.Limits
// and carry versions no further ahead of the local clock than
// MaxClockOffset; admitting them advances the local hybrid logical clock
// past them, so that this node's next version is newer. A message with one
// bad record is refused whole, so that a write is applied whole or not at
// all. A refusal is counted in Stats.Rejected and logged, with what
// carried the records (path).
func (s *Store) admit(path string, rs ...*record) error {
	if err := s.checkRecords(rs...); err != nil {
		s.stats.rejected.Add(1)
		s.log.Warn("refused records from a peer", "path", path, "records", len(rs), "err", err)
		return fmt.Errorf("refuse %s: %w", path, err)
	}
	return nil
}

// checkRecords is admit without its count and log, for callers that
// report a refusal their own way (a snapshot at start, see loadSnapshot):
// it checks every record against the limits and the clock bound and
// advances the hybrid logical clock past them.
func (s *Store) checkRecords(rs ...*record) error {
	for _, r := range rs {
		if r == nil {
			continue
		}
		err := s.cfg.Limits.checkRecord(r)
		if err == nil {
			err = s.hlc.Update(r.maxVersion().time)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
