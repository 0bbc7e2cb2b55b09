package replication

import (
	"testing"

	"github.com/sessionmesh/sessionmesh/internal/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
