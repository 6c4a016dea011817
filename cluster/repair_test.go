package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
)

// inprocPeers fetches records from the other nodes of a test cluster
// directly, as the gRPC transport does over the network.
type inprocPeers struct{ c *testCluster }

func (p inprocPeers) Records(ctx context.Context, id, _, topic string, part int, from, to uint64, fn func([]byte) error) error {
	n := p.c.node(id)
	if n == nil {
		return cluster.ErrClosed
	}
	return n.ReadRecords(ctx, topic, part, from, to, fn)
}

// smallSegments makes journals of many small sealed segments with index
// entries inside them.
func smallSegments(cfg *cluster.Config) {
	cfg.Journal.SegmentBytes = 4 << 10
	cfg.Journal.IndexIntervalBytes = 512
}

// publishMany publishes n batches of 10 messages to partition 0 of topic.
func publishMany(t *testing.T, n *cluster.Node, topic string, batches int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for b := range batches {
		var msgs []journal.Message
		for i := range 10 {
			msgs = append(msgs, journal.Message{Payload: []byte(fmt.Sprintf("batch %d message %d %s", b, i, bytes.Repeat([]byte{'x'}, 40)))})
		}
		if _, err := n.Publish(ctx, topic, 0, msgs); err != nil {
			t.Fatal(err)
		}
	}
}

// flip flips one bit of a file in place (the snapshots that link it see
// the flip too) and returns its bytes from before.
func flip(t *testing.T, path string, at int64) []byte {
	t.Helper()
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if at < 0 {
		at += int64(len(orig))
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{orig[at] ^ 0x08}, at); err != nil {
		t.Fatal(err)
	}
	return orig
}

// waitStatus waits until the node's status satisfies ok.
func waitStatus(t *testing.T, n *cluster.Node, what string, ok func(cluster.Status) bool) cluster.Status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := n.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s; status %+v", what, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDamagedFollowerSegmentRepairedFromPeer stops a follower, flips a bit
// in one of its sealed segments, and starts it again: it starts, finds
// the damage (at Open or by its first scrub), repairs the segment from a
// peer, relinks it into its snapshots, and every replica agrees.
func TestDamagedFollowerSegmentRepairedFromPeer(t *testing.T) {
	tests := []struct {
		name string
		at   int64 // byte to flip; negative counts from the end
	}{
		{"before the anchor, found by the scrub", 60},
		{"in the last record, found by Open", -3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 3, smallSegments)
			createTopic(t, c, "t", 1)
			leader := c.leader()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, p := range c.peers {
				if err := c.node(leader).Announce(ctx, p.ID, "inproc:"+p.ID); err != nil {
					t.Fatal(err)
				}
			}
			publishMany(t, c.node(leader), "t", 60)
			c.converge("t", 1, nil)
			follower := others(c, leader)[0]
			p, err := c.node(follower).FSM().Partition("t", 0)
			if err != nil {
				t.Fatal(err)
			}
			segs := p.Journal().Segments()
			if len(segs) < 4 {
				t.Fatalf("%d segments, want several sealed ones", len(segs))
			}
			victim := segs[len(segs)/2]
			c.stop(follower) // takes a snapshot, which links the victim
			orig := flip(t, victim.Path, tc.at)

			c.start(follower)
			n := c.node(follower)
			n.SetPeerRecords(inprocPeers{c})
			st := waitStatus(t, n, "repair", func(st cluster.Status) bool { return st.SegmentsRepaired == 1 && len(st.Damaged) == 0 })
			if st.ScrubPasses > 1 {
				t.Logf("scrub passes: %d", st.ScrubPasses)
			}
			if got, _ := os.ReadFile(victim.Path); !bytes.Equal(got, orig) {
				t.Fatal("the repaired segment differs from the original")
			}
			// The snapshot taken at the stop now links the repaired file.
			links, _ := filepath.Glob(filepath.Join(c.base, follower, "snapshots", "*", "files", "t", "0", filepath.Base(victim.Path)))
			if len(links) == 0 {
				t.Fatal("no snapshot holds the segment")
			}
			repaired, _ := os.Stat(victim.Path)
			for _, l := range links {
				if fi, err := os.Stat(l); err != nil || !os.SameFile(fi, repaired) {
					t.Fatalf("snapshot file %s does not link the repaired segment", l)
				}
			}
			c.converge("t", 1, nil)
		})
	}
}

// TestSingleNodeRefusesDamage: with no peer to repair from, the damaged
// range stays refused (journal.ErrCorrupt, listed in the status), the
// rest is served, and nothing is counted repaired.
func TestSingleNodeRefusesDamage(t *testing.T) {
	dir := t.TempDir()
	cfg := cluster.Config{Dir: dir}
	smallSegments(&cfg)
	open := func() *cluster.Node {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		n, err := cluster.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := open()
	ctx := context.Background()
	if _, err := n.Apply(ctx, &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	publishMany(t, n, "t", 60)
	p, _ := n.FSM().Partition("t", 0)
	segs := p.Journal().Segments()
	victim := segs[1]
	want, err := n.FSM().Digest("t", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	flip(t, victim.Path, 60)

	n = open()
	defer n.Close()
	st := waitStatus(t, n, "detection", func(st cluster.Status) bool { return len(st.Damaged) == 1 && st.ScrubPasses >= 1 })
	d := st.Damaged[0]
	if d.Topic != "t" || d.Partition != 0 || d.Segment != victim.Path || d.First != victim.BaseOffset || d.Next != victim.NextOffset {
		t.Fatalf("damaged segment %+v, want %s [%d, %d)", d, victim.Path, victim.BaseOffset, victim.NextOffset)
	}
	if _, err := n.Read(ctx, "t", 0, victim.BaseOffset, 10, 0, 0); !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("Read of the damaged record: %v, want ErrCorrupt", err)
	}
	if _, err := n.FSM().Digest("t", 0, 0); !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("Digest over the damage: %v, want ErrCorrupt", err)
	}
	for _, from := range []uint64{0, segs[2].BaseOffset, segs[len(segs)-1].BaseOffset} {
		res, err := n.Read(ctx, "t", 0, from, 10, 0, 0)
		if err != nil || len(res.Messages) == 0 || res.Messages[0].Offset != from {
			t.Fatalf("Read(%d) away from the damage: %+v, %v", from, res, err)
		}
	}
	err = n.ReadRecords(ctx, "t", 0, 0, want.Upto, func([]byte) error { return nil })
	if !errors.Is(err, journal.ErrCorrupt) {
		t.Fatalf("ReadRecords over the damage: %v, want ErrCorrupt", err)
	}
	time.Sleep(100 * time.Millisecond)
	if st := n.Status(); st.SegmentsRepaired != 0 || len(st.Damaged) != 1 {
		t.Fatalf("status %+v", st)
	}
}
