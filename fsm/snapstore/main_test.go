package snapstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a test leaves a goroutine behind, such as the
// stream decoder of a sink that was neither closed nor canceled.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
