package cluster_test

import (
	"testing"
	"time"
)

// TestWatchLeader: a follower's subscription is signalled when its leader
// is cut off and the others elect a new one; stop removes it.
func TestWatchLeader(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	leader := c.leader()
	fid := others(c, leader)[0]
	f := c.node(fid)
	if id, _ := f.LeaderClientAddr(); id != leader {
		t.Fatalf("%s follows %q, not %s", fid, id, leader)
	}
	changed, stop := f.WatchLeader()
	_, stop2 := f.WatchLeader()
	if n := f.LeaderWatchers(); n != 2 {
		t.Fatalf("%d watchers; want 2", n)
	}
	stop2()
	stop2() // a second stop is harmless
	if n := f.LeaderWatchers(); n != 1 {
		t.Fatalf("%d watchers after a stop; want 1", n)
	}

	start := time.Now()
	c.net.Isolate(leader)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("no signal of a leader other than %s", leader)
		}
		if id, _ := f.LeaderClientAddr(); id != leader {
			t.Logf("%s saw the leader %s change to %q after %v", fid, leader, id, time.Since(start))
			break
		}
	}
	stop()
	if n := f.LeaderWatchers(); n != 0 {
		t.Fatalf("%d watchers after stop; want 0", n)
	}
}
