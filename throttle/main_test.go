package throttle_test

import (
	"testing"

	"github.com/sessionmesh/sessionmesh/internal/testing/leaktest"
)

func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
