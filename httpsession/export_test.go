package httpsession

import (
	"time"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
)

// SetIndexGrace sets how old an index entry must be before a listing drops
// it for want of its session, until the returned function restores it.
func SetIndexGrace(d time.Duration) (restore func()) {
	old := indexGrace
	indexGrace = d
	return func() { indexGrace = old }
}

// IsReservedID reports whether id names one of the package's own records
// (the principal index) rather than a session.
var IsReservedID = sessionid.Reserved

// SetClock makes m read the time from now (for RotateEvery).
func SetClock(m *Manager, now func() time.Time) { m.now = now }
