package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/walmq/walmq/internal/freeport"
)

// TestStartClusterRetriesTakenPort: a port that another process takes
// between the harness's check and the node's bind makes that node exit at
// start; StartCluster must then start the cluster again on other ports,
// and the cluster must come up with a leader.
func TestStartClusterRetriesTakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the harness attributes connections through /proc: Linux only")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := buildNode(ctx, dir, "")
	if err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	var mu sync.Mutex
	calls := 0
	pickAddr = func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 4 { // n2's client address, on the first attempt
			return taken.Addr().String(), nil
		}
		return freeport.Addr()
	}
	defer func() { pickAddr = freeport.Addr }()
	var log strings.Builder
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(&log, format+"\n", args...)
	}
	c, err := StartCluster(ctx, bin, dir, 3, logf)
	if err != nil {
		t.Fatalf("StartCluster: %v\n%s", err, log.String())
	}
	defer c.Close()
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(log.String(), "starting the cluster again on other ports") {
		t.Fatalf("no second start logged:\n%s", log.String())
	}
	if got := c.DirectAddr("n2"); got == taken.Addr().String() {
		t.Fatalf("n2 still given the taken address %s", got)
	}
	if calls != 12 {
		t.Fatalf("%d addresses picked, want 12 (6 per attempt)", calls)
	}
	if _, err := os.Stat(c.DataDir("n2")); err != nil {
		t.Fatalf("n2 has no data directory after the second start: %v", err)
	}
}
