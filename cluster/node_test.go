package cluster_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openNode(t testing.TB, dir string) *cluster.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cluster.Open(ctx, cluster.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPublishAfterCloseFails(t *testing.T) {
	n := openNode(t, t.TempDir())
	ctx := context.Background()
	if _, err := n.Apply(ctx, &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	res, err := n.Publish(ctx, "t", 0, []journal.Message{{Payload: []byte("a")}, {Payload: []byte("b")}})
	if err != nil || len(res.Offsets) != 2 || res.Offsets[1] != 1 {
		t.Fatalf("publish: %+v %v", res, err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Publish(ctx, "t", 0, []journal.Message{{Payload: []byte("c")}}); !errors.Is(err, cluster.ErrClosed) {
		t.Fatalf("publish after close: %v", err)
	}
	if _, err := n.Apply(ctx, &fsm.DeleteTopic{Name: "t"}); !errors.Is(err, cluster.ErrClosed) {
		t.Fatalf("apply after close: %v", err)
	}
}

// TestSplitPublish: a publish larger than one entry is split and its
// offsets come back in order.
func TestSplitPublish(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n, err := cluster.Open(ctx, cluster.Config{Dir: dir, MaxBatchMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.Apply(ctx, &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}})
	msgs := make([]journal.Message, 95)
	for i := range msgs {
		msgs[i].Payload = []byte{byte(i)}
	}
	res, err := n.Publish(ctx, "t", 0, msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, off := range res.Offsets {
		if off != uint64(i) {
			t.Fatalf("message %d got offset %d", i, off)
		}
	}
	p, _ := n.FSM().Partition("t", 0)
	got, _ := p.Read(0, 100, 0)
	for i, m := range got {
		if m.Payload[0] != byte(i) {
			t.Fatalf("offset %d holds %d", i, m.Payload[0])
		}
	}
}

// TestRestartFromSnapshot: state after a snapshot, more entries, and a
// restart is the state before the restart.
func TestRestartFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n := openNode(t, dir)
	n.Apply(ctx, &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 2}})
	n.Apply(ctx, &fsm.CreateGroup{Topic: "t", Group: "g", Config: fsm.GroupConfig{AckWait: time.Second}, Start: []uint64{0, 0}})
	for i := 0; i < 50; i++ {
		if _, err := n.Publish(ctx, "t", i%2, []journal.Message{{Payload: []byte{byte(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	n.Apply(ctx, &fsm.Settle{Topic: "t", Group: "g", Offsets: map[int][]uint64{0: {0, 1, 2}, 1: {5}}})
	if err := n.Snapshot(); err != nil {
		t.Fatal(err)
	}
	for i := 50; i < 80; i++ {
		n.Publish(ctx, "t", i%2, []journal.Message{{Payload: []byte{byte(i)}}})
	}
	n.Apply(ctx, &fsm.Settle{Topic: "t", Group: "g", Offsets: map[int][]uint64{0: {3}, 1: {0}}})
	n.Apply(ctx, &fsm.CreateTopic{Name: "u", Config: fsm.TopicConfig{Partitions: 1}})
	n.Close()

	n = openNode(t, dir)
	defer n.Close()
	names := n.FSM().TopicNames()
	if len(names) != 2 {
		t.Fatalf("topics %v", names)
	}
	for part, want := range map[int]struct {
		next  uint64
		floor uint64
	}{0: {40, 4}, 1: {40, 1}} {
		p, err := n.FSM().Partition("t", part)
		if err != nil {
			t.Fatal(err)
		}
		floor, settled, err := p.GroupState("g")
		if err != nil || floor != want.floor || p.Watermark() != want.next {
			t.Fatalf("partition %d: floor %d settled %v watermark %d, %v", part, floor, settled, p.Watermark(), err)
		}
	}
	// Publishing goes on at the right offset.
	res, err := n.Publish(ctx, "t", 0, []journal.Message{{Payload: []byte("x")}})
	if err != nil || res.Offsets[0] != 40 {
		t.Fatalf("publish after restart: %+v %v", res, err)
	}
}

// BenchmarkPublishOne: one publisher, one message per publish, waiting
// for each: the latency of a durable publish.
func BenchmarkPublishOne(b *testing.B) {
	n := openNode(b, b.TempDir())
	defer n.Close()
	ctx := context.Background()
	n.Apply(ctx, &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}})
	msg := []journal.Message{{Payload: make([]byte, 128)}}
	for b.Loop() {
		if _, err := n.Publish(ctx, "t", 0, msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRaftApplyOne: the same through raft.Apply alone, as a baseline.
func BenchmarkRaftApplyOne(b *testing.B) {
	n := openNode(b, b.TempDir())
	defer n.Close()
	ctx := context.Background()
	n.Apply(ctx, &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 1}})
	data, _ := fsm.Encode(&fsm.Publish{Topic: "t", Messages: []journal.Message{{Payload: make([]byte, 128)}}})
	for b.Loop() {
		if err := n.Raft().Apply(data, 0).Error(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCloseWithPublishesInFlight: Close while publishers keep queueing
// returns, and every publish is answered exactly once (committed, or an
// error). A future left in raft's apply queue at shutdown used to hang
// Close forever (hashicorp/raft#498).
func TestCloseWithPublishesInFlight(t *testing.T) {
	for round := 0; round < 10; round++ {
		n := openNode(t, t.TempDir())
		ctx := context.Background()
		n.Apply(ctx, &fsm.CreateTopic{Name: "t", Config: fsm.TopicConfig{Partitions: 2}})
		var queued, answered atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					err := n.PublishAsync(ctx, "t", g%2, []journal.Message{{Payload: []byte("x")}}, func(*fsm.PublishResult, error) {
						answered.Add(1)
					})
					if err != nil {
						return
					}
					queued.Add(1)
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		closed := make(chan error, 1)
		go func() { closed <- n.Close() }()
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Close hung with publishes in flight", round)
		}
		close(stop)
		wg.Wait()
		if q, a := queued.Load(), answered.Load(); q != a {
			t.Fatalf("round %d: %d publishes queued, %d answered", round, q, a)
		}
	}
}
