package replication

import (
	"fmt"
	"strconv"

	"github.com/sessionmesh/sessionmesh/internal/hlc"
)

// Version is a point in a session's history: the hybrid logical clock time
// of a write. Versions of one session's writes are ordered the way the
// writes happened as far as any node could tell, and Save returns the
// version of the write it made. A caller that carries the version to the
// next request (httpsession puts it in the cookie) can ask any node for the
// session "at least as new as this" with GetAtLeast: read-your-writes across
// a load balancer even when writes replicate asynchronously. The zero
// Version is older than every write.
type Version uint64

// String formats v compactly for a cookie or header (base 36).
func (v Version) String() string { return strconv.FormatUint(uint64(v), 36) }

// ParseVersion parses the output of Version.String.
func ParseVersion(s string) (Version, error) {
	u, err := strconv.ParseUint(s, 36, 64)
	if err != nil {
		return 0, fmt.Errorf("replication: bad version %q: %w", s, err)
	}
	return Version(u), nil
}

// Version returns the version of the latest write the session holds.
func (s Session) Version() Version {
	if s.r == nil {
		return 0
	}
	return Version(s.r.maxVersion().time)
}

func toTimestamp(v Version) hlc.Timestamp { return hlc.Timestamp(v) }
