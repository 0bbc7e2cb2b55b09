package sessionid_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sessionmesh/sessionmesh/internal/sessionid"
)

func TestNew_IsValidAndUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := sessionid.New()
		assert.True(t, sessionid.Valid(id), id)
		assert.False(t, sessionid.Reserved(id), id)
		assert.False(t, seen[id], "duplicate ID %s", id)
		seen[id] = true
	}
}

func TestValid_RefusesWhatNewNeverMakes(t *testing.T) {
	id := sessionid.New()
	for _, s := range []string{
		"", id[:len(id)-1], id + "A", sessionid.ReservedPrefix + id[1:],
		strings.Repeat("+", sessionid.Len), strings.Repeat("=", sessionid.Len), id[:10] + "\x00" + id[11:],
	} {
		assert.False(t, sessionid.Valid(s), "%q", s)
	}
}

func TestReserved(t *testing.T) {
	assert.True(t, sessionid.Reserved(sessionid.ReservedPrefix+"p.x"))
	assert.False(t, sessionid.Reserved(""))
	assert.False(t, sessionid.Reserved("abc"))
}
