package httpsession

import "time"

// SetIndexGrace sets how old an index entry must be before a listing drops
// it for want of its session, until the returned function restores it.
func SetIndexGrace(d time.Duration) (restore func()) {
	old := indexGrace
	indexGrace = d
	return func() { indexGrace = old }
}
