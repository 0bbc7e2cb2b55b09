package replication

import (
	"testing"

	"github.com/sessionmesh/sessionmesh/internal/testing/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
