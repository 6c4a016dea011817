package main

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"
)

// testLog writes the harness's progress to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Logf("%s", b)
	return len(b), nil
}

// TestEndToEnd runs the real harness for 12 s: three walmq-node
// processes, four producers, two consumers and the readers; the leader
// partitioned and killed, a node's unsynced tails lost, a follower's
// sealed segment damaged.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for 10 s")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the harness attributes connections through /proc: Linux only")
	}
	dir, err := os.MkdirTemp("", "jepsen-lite-test-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Faults of at most 4 s: shorter than the clients' RetryFor (5 s), so
	// that no publish outlives a fault (see "Known issues" in README.md).
	cfg := config{Out: dir, Seed: 1, Duration: 12 * time.Second,
		Faults:   []string{"partition-leader", "kill-leader", "lose-tail", "flip-bit"},
		MaxFault: 4 * time.Second, Producers: 4, Consumers: 2, Readers: true}
	res, err := runHarness(ctx, cfg, testLog{t})
	if err != nil {
		t.Fatalf("harness: %v (run directory %s kept)", err, dir)
	}
	if !res.Valid || res.Acknowledged == 0 || res.Fetched == 0 || res.ReadsChecked == 0 {
		var b []byte
		b, _ = os.ReadFile(dir + "/results.json")
		t.Fatalf("valid = %v, acknowledged = %d; run directory %s kept; results:\n%s", res.Valid, res.Acknowledged, dir, b)
	}
	t.Logf("attempted %d, acknowledged %d, delivered %d, unknown %d, fetched %d, reads checked %d, bit flips %d", res.Attempted,
		res.Acknowledged, res.Delivered, res.Unknown, res.Fetched, res.ReadsChecked, res.BitFlips)
	os.RemoveAll(dir)
}

// TestPlantedBugIsCaught: a walmq-node built with a planted bug (every
// 17th publish entry acknowledged but not stored, fsm/planted_bug.go) must
// make the checker report lost acknowledged values and an invalid history,
// with no fault at all.
func TestPlantedBugIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster for 5 s")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the harness attributes connections through /proc: Linux only")
	}
	dir, err := os.MkdirTemp("", "jepsen-lite-bug-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := config{Out: dir, Seed: 1, Duration: 5 * time.Second, MaxFault: 4 * time.Second, Producers: 4, Consumers: 1,
		NodeTags: "walmq_planted_bug"}
	res, err := runHarness(ctx, cfg, testLog{t})
	if err != nil {
		t.Fatalf("harness: %v (run directory %s kept)", err, dir)
	}
	if res.Valid || res.Lost == 0 {
		t.Fatalf("with the planted bug: valid = %v, lost = %d (acknowledged %d); run directory %s kept", res.Valid, res.Lost, res.Acknowledged, dir)
	}
	t.Logf("with the planted bug: acknowledged %d, lost %d, valid %v", res.Acknowledged, res.Lost, res.Valid)
	os.RemoveAll(dir)
}
