package replication

import "fmt"

// Limits bound what one session may hold, so that no writer, local or
// remote, can make a node hold or send unbounded data for one session.
// Every node of a cluster must use the same limits: a node refuses records
// from peers that exceed its own. A zero field takes its default.
type Limits struct {
	// MaxAttributes is the most attributes a session may have, counting
	// the tombstones of deleted attributes, which the store keeps until
	// the session ends. Default 1024; at most 4096 (what the wire format
	// carries).
	MaxAttributes int

	// MaxValueSize is the largest attribute value in bytes. Default 1 MiB.
	MaxValueSize int

	// MaxSessionSize is the most bytes of attribute names and values one
	// session may hold. A session travels in one frame, so keep it well
	// below the transport's MaxFrameSize (8 MiB by default). Default 4 MiB.
	MaxSessionSize int
}

// DefaultLimits returns the default Limits.
func DefaultLimits() Limits {
	return Limits{MaxAttributes: 1024, MaxValueSize: 1 << 20, MaxSessionSize: 4 << 20}
}

// withDefaults returns l with zero (or negative) fields set to their
// defaults and MaxAttributes capped at what the wire format carries.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxAttributes <= 0 {
		l.MaxAttributes = d.MaxAttributes
	}
	l.MaxAttributes = min(l.MaxAttributes, maxAttrsPerRecord)
	if l.MaxValueSize <= 0 {
		l.MaxValueSize = d.MaxValueSize
	}
	if l.MaxSessionSize <= 0 {
		l.MaxSessionSize = d.MaxSessionSize
	}
	return l
}

// checkRecord checks one record, a whole session or a delta, against l.
func (l Limits) checkRecord(r *record) error {
	l = l.withDefaults()
	if n := len(r.attrs); n > l.MaxAttributes {
		return fmt.Errorf("%w: session %s has %d attributes, limit %d", ErrSessionTooLarge, shortID(r.id), n, l.MaxAttributes)
	}
	size := 0
	for i := range r.attrs {
		a := &r.attrs[i]
		if err := l.checkAttr(r.id, a); err != nil {
			return err
		}
		size += len(a.name) + len(a.value)
	}
	if size > l.MaxSessionSize {
		return fmt.Errorf("%w: session %s holds %d bytes, limit %d", ErrSessionTooLarge, shortID(r.id), size, l.MaxSessionSize)
	}
	return nil
}

func (l Limits) checkAttr(id string, a *attr) error {
	switch {
	case len(a.name) > maxAttrNameLen:
		return fmt.Errorf("%w: session %s: attribute name of %d bytes, limit %d", ErrSessionTooLarge, shortID(id), len(a.name), maxAttrNameLen)
	case len(a.value) > l.MaxValueSize:
		return fmt.Errorf("%w: session %s: attribute %q of %d bytes, limit %d", ErrSessionTooLarge, shortID(id), a.name, len(a.value), l.MaxValueSize)
	}
	return nil
}

// checkWrite checks the session that applying the local write delta to cur
// (nil for a new session) would produce. Both have their attributes sorted
// by name; the delta's are newer, so they replace cur's of the same name.
// It allocates nothing.
func (l Limits) checkWrite(cur, delta *record) error {
	l = l.withDefaults()
	var old []attr
	if cur != nil {
		old = cur.attrs
	}
	n, size := 0, 0
	i, j := 0, 0
	for i < len(old) || j < len(delta.attrs) {
		var a *attr
		switch {
		case j == len(delta.attrs) || i < len(old) && old[i].name < delta.attrs[j].name:
			a = &old[i]
			i++
		default:
			a = &delta.attrs[j]
			if err := l.checkAttr(delta.id, a); err != nil {
				return err
			}
			if i < len(old) && old[i].name == a.name {
				i++
			}
			j++
		}
		n++
		size += len(a.name) + len(a.value)
	}
	switch {
	case n > l.MaxAttributes:
		return fmt.Errorf("%w: session %s would have %d attributes, limit %d", ErrSessionTooLarge, shortID(delta.id), n, l.MaxAttributes)
	case size > l.MaxSessionSize:
		return fmt.Errorf("%w: session %s would hold %d bytes, limit %d", ErrSessionTooLarge, shortID(delta.id), size, l.MaxSessionSize)
	}
	return nil
}

// shortID returns a prefix of a session ID for logs and errors: enough to
// tell sessions apart, too little to use one.
func shortID(id string) string {
	if len(id) > 8 {
		return id[:8] + "…"
	}
	return id
}
