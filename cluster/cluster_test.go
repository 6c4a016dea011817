package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/cluster/faultnet"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
)

// testCluster runs in-process nodes whose Raft traffic crosses a faultnet
// network (hashicorp/raft's NetworkTransport over links the test can cut).
type testCluster struct {
	t     *testing.T
	net   *faultnet.Network
	base  string
	peers []cluster.Peer
	tune  func(*cluster.Config)

	mu    sync.Mutex
	nodes map[string]*cluster.Node
}

func newTestCluster(t *testing.T, n int, tune func(*cluster.Config)) *testCluster {
	c := &testCluster{t: t, net: faultnet.New(), base: t.TempDir(), tune: tune, nodes: map[string]*cluster.Node{}}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		c.peers = append(c.peers, cluster.Peer{ID: id, Addr: id})
	}
	for _, p := range c.peers {
		c.start(p.ID)
	}
	t.Cleanup(func() {
		c.net.Heal()
		for _, p := range c.peers {
			c.stop(p.ID)
		}
	})
	return c
}

func (c *testCluster) config(id string) cluster.Config {
	cfg := cluster.Config{Dir: filepath.Join(c.base, id), NodeID: id, Peers: c.peers,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond,
		Journal: journal.Options{SegmentBytes: 64 << 10}}
	if testing.Verbose() {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Info})
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return cfg
}

// start opens node id (again) on its directory.
func (c *testCluster) start(id string) {
	c.t.Helper()
	layer, err := c.net.Listen(id)
	if err != nil {
		c.t.Fatal(err)
	}
	cfg := c.config(id)
	cfg.StreamLayer = layer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := cluster.Open(ctx, cfg)
	if err != nil {
		layer.Close()
		c.t.Fatalf("open %s: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
}

// stop closes node id, as a node that goes away (its peers' connections
// break).
func (c *testCluster) stop(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n == nil {
		return
	}
	if err := n.Close(); err != nil {
		c.t.Errorf("close %s: %v", id, err)
	}
	c.net.Reset(id)
}

func (c *testCluster) node(id string) *cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

func (c *testCluster) live() map[string]*cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]*cluster.Node{}
	for id, n := range c.nodes {
		out[id] = n
	}
	return out
}

// leader waits for one node of among (every live node when empty) to
// lead and take writes, and returns its id.
func (c *testCluster) leader(among ...string) string {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for id, n := range c.live() {
			if len(among) > 0 && !contains(among, id) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			err := n.VerifyLeader(ctx)
			cancel()
			if err == nil {
				return id
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("no leader among %v", among)
	return ""
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// acked is a publish the cluster acknowledged.
type acked struct {
	part    int
	offset  uint64
	payload string
}

// publisher publishes distinct messages with ids to whichever node
// leads, retrying an unknown outcome with the same id, and records every
// acknowledgement.
type publisher struct {
	c     *testCluster
	topic string
	parts int

	mu    sync.Mutex
	acked []acked
	tries int
}

func (p *publisher) publishOne(ctx context.Context, seq int) error {
	part := seq % p.parts
	msg := journal.Message{ID: fmt.Sprintf("id-%d", seq), Payload: []byte(fmt.Sprintf("m-%d", seq))}
	for ctx.Err() == nil {
		p.mu.Lock()
		p.tries++
		p.mu.Unlock()
		var target *cluster.Node
		for _, n := range p.c.live() {
			if n.IsLeader() {
				target = n
			}
		}
		if target == nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		res, err := target.Publish(pctx, p.topic, part, []journal.Message{msg})
		cancel()
		if err == nil {
			p.mu.Lock()
			p.acked = append(p.acked, acked{part: part, offset: res.Offsets[0], payload: string(msg.Payload)})
			p.mu.Unlock()
			return nil
		}
		if !errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrTimeout) && !errors.Is(err, cluster.ErrClosed) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ctx.Err()
}

// run publishes from workers goroutines until stop is closed.
func (p *publisher) run(workers int, stop <-chan struct{}) (wait func() error) {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var mu sync.Mutex
	next := 0
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				seq := next
				next++
				mu.Unlock()
				if err := p.publishOne(ctx, seq); err != nil {
					errs <- fmt.Errorf("publish %d: %w", seq, err)
					return
				}
			}
		}()
	}
	return func() error {
		wg.Wait()
		close(errs)
		return <-errs
	}
}

// converge waits until every live node holds what the leader holds in
// each partition, then checks that the replicas are identical (equal
// digests) and that every acknowledged message is in every replica.
func (c *testCluster) converge(topic string, parts int, acks []acked) {
	c.t.Helper()
	leader := c.node(c.leader())
	for part := range parts {
		lp, err := leader.FSM().Partition(topic, part)
		if err != nil {
			c.t.Fatal(err)
		}
		end := lp.Watermark()
		for id, n := range c.live() {
			deadline := time.Now().Add(20 * time.Second)
			for {
				p, err := n.FSM().Partition(topic, part)
				if err == nil && p.Watermark() >= end {
					break
				}
				if time.Now().After(deadline) {
					c.t.Fatalf("%s partition %d did not reach offset %d (err %v)", id, part, end, err)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		want, err := leader.FSM().Digest(topic, part, end)
		if err != nil {
			c.t.Fatal(err)
		}
		for id, n := range c.live() {
			got, err := n.FSM().Digest(topic, part, end)
			if err != nil {
				c.t.Fatal(err)
			}
			if got != want {
				c.t.Errorf("partition %d: %s digest %+v, leader %+v", part, id, got, want)
			}
		}
	}
	for id, n := range c.live() {
		for _, a := range acks {
			p, err := n.FSM().Partition(topic, a.part)
			if err != nil {
				c.t.Fatal(err)
			}
			ms, err := p.Journal().Read(a.offset, 1, 0)
			if err != nil || len(ms) == 0 || !bytes.Equal(ms[0].Payload, []byte(a.payload)) {
				c.t.Fatalf("%s: acknowledged %s at %d/%d is missing (%v, %v)", id, a.payload, a.part, a.offset, ms, err)
			}
		}
	}
}

func createTopic(t *testing.T, c *testCluster, name string, parts int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.node(c.leader()).Apply(ctx, &fsm.CreateTopic{Name: name, Config: fsm.TopicConfig{Partitions: parts, DedupWindow: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
}

func others(c *testCluster, not string) []string {
	var out []string
	for _, p := range c.peers {
		if p.ID != not {
			out = append(out, p.ID)
		}
	}
	return out
}

// TestClusterFaults runs a publishing load through each fault, heals,
// and checks one leader, identical replicas and every ack kept.
func TestClusterFaults(t *testing.T) {
	faults := []struct {
		name   string
		inject func(c *testCluster, leader string) (heal func())
	}{
		{"leader isolated", func(c *testCluster, leader string) func() {
			c.net.Isolate(leader)
			// The majority elects a new leader while the old one is cut off.
			c.leader(others(c, leader)...)
			return c.net.Heal
		}},
		{"follower isolated", func(c *testCluster, leader string) func() {
			c.net.Isolate(others(c, leader)[0])
			return c.net.Heal
		}},
		{"minority partition", func(c *testCluster, leader string) func() {
			// The leader alone on one side, the two followers on the other.
			c.net.Partition([]string{leader}, others(c, leader))
			c.leader(others(c, leader)...)
			return c.net.Heal
		}},
		{"one-way cut from the leader", func(c *testCluster, leader string) func() {
			for _, o := range others(c, leader) {
				c.net.Cut(leader, o)
			}
			return c.net.Heal
		}},
		{"leader stopped", func(c *testCluster, leader string) func() {
			c.stop(leader)
			c.leader(others(c, leader)...)
			return func() { c.start(leader) }
		}},
		{"slow links", func(c *testCluster, leader string) func() {
			for _, o := range others(c, leader) {
				c.net.Delay(leader, o, 30*time.Millisecond)
				c.net.Delay(o, leader, 30*time.Millisecond)
			}
			return c.net.Heal
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			c := newTestCluster(t, 3, nil)
			createTopic(t, c, "t", 3)
			pub := &publisher{c: c, topic: "t", parts: 3}
			stop := make(chan struct{})
			wait := pub.run(4, stop)
			time.Sleep(300 * time.Millisecond)
			heal := f.inject(c, c.leader())
			time.Sleep(700 * time.Millisecond)
			heal()
			time.Sleep(500 * time.Millisecond)
			close(stop)
			if err := wait(); err != nil {
				t.Fatal(err)
			}
			if len(pub.acked) < 20 {
				t.Fatalf("only %d publishes acknowledged", len(pub.acked))
			}
			c.converge("t", 3, pub.acked)
			leaders := 0
			for _, n := range c.live() {
				if n.IsLeader() {
					leaders++
				}
			}
			if leaders != 1 {
				t.Fatalf("%d leaders after healing", leaders)
			}
			t.Logf("%d acknowledged of %d tries", len(pub.acked), pub.tries)
		})
	}
}

// TestFollowerCatchesUpThroughSnapshot: a follower cut off while the
// leader compacts its log past the follower's last entry can only catch
// up through a snapshot carrying the journals.
func TestFollowerCatchesUpThroughSnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *cluster.Config) {
		cfg.SnapshotThreshold = 32
		cfg.TrailingLogs = 16
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	createTopic(t, c, "t", 2)
	leader := c.leader()
	lagging := others(c, leader)[0]
	pub := &publisher{c: c, topic: "t", parts: 2}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 20 {
		if err := pub.publishOne(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	c.net.Isolate(lagging)
	behind := c.node(lagging).Raft().LastIndex()
	for i := 20; i < 300; i++ {
		if err := pub.publishOne(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	l := c.node(c.leader(others(c, lagging)...))
	if err := l.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if first := l.FirstLogIndex(); first <= behind+1 {
		t.Fatalf("leader's log starts at %d; the follower has up to %d: no snapshot needed", first, behind)
	}
	c.net.Heal()
	c.converge("t", 2, pub.acked)
	if got := c.node(lagging).FSM().AppliedIndex(); got <= behind {
		t.Fatalf("lagging follower applied %d, was at %d", got, behind)
	}
}

// TestLeasesResetOnLeaderChange: a message leased by the old leader and
// never acked is delivered again by the new one without waiting for the
// ack deadline.
func TestLeasesResetOnLeaderChange(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	createTopic(t, c, "t", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old := c.node(c.leader())
	if _, err := old.Publish(ctx, "t", 0, []journal.Message{{Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if err := old.CreateGroup(ctx, "t", "g", fsm.GroupConfig{AckWait: time.Hour}, false); err != nil {
		t.Fatal(err)
	}
	ds, err := old.Fetch(ctx, "g", "t", 10, time.Second)
	if err != nil || len(ds) != 1 {
		t.Fatalf("fetch: %v %v", ds, err)
	}
	newID, err := old.TransferLeadership(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	c.leader(newID)
	ds, err = c.node(newID).Fetch(ctx, "g", "t", 10, 2*time.Second)
	if err != nil || len(ds) != 1 || string(ds[0].Payload) != "x" {
		t.Fatalf("fetch on the new leader %s: %v %v", newID, ds, err)
	}
	if _, err := old.Fetch(ctx, "g", "t", 10, 0); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("fetch on the old leader: %v", err)
	}
}

// TestMembership: removal that would lose the quorum is refused; a new
// node joins as a learner, catches up and is promoted.
func TestMembership(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	createTopic(t, c, "t", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leaderID := c.leader()
	l := c.node(leaderID)
	pub := &publisher{c: c, topic: "t", parts: 1}
	for i := range 50 {
		if err := pub.publishOne(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	f := others(c, leaderID)
	// One follower gone: removing the other would leave one voter that
	// answers out of two.
	c.stop(f[0])
	deadline := time.Now().Add(10 * time.Second)
	for !unreachable(l, f[0]) {
		if time.Now().After(deadline) {
			t.Fatalf("the leader does not see %s as unreachable: %+v", f[0], l.Status().Members)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.RemoveMember(ctx, f[1], nil); !errors.Is(err, cluster.ErrQuorum) {
		t.Fatalf("remove %s with %s down: %v, want ErrQuorum", f[1], f[0], err)
	}
	if err := l.RemoveMember(ctx, "nobody", nil); !errors.Is(err, cluster.ErrUnknownMember) {
		t.Fatalf("remove unknown: %v", err)
	}
	// Removing the stopped follower itself is allowed: the two left answer.
	if err := l.RemoveMember(ctx, f[0], nil); err != nil {
		t.Fatal(err)
	}

	// A fresh node joins as a learner, catches up, and becomes a voter.
	c.peers = append(c.peers, cluster.Peer{ID: "n4", Addr: "n4"})
	layer, err := c.net.Listen("n4")
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.config("n4")
	cfg.Peers = nil
	cfg.StreamLayer = layer
	cfg.NoBootstrap = true
	n4, err := cluster.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.nodes["n4"] = n4
	c.mu.Unlock()
	if err := l.AddLearner(ctx, "n4", "n4"); err != nil {
		t.Fatal(err)
	}
	for n4.FSM().AppliedIndex() < l.FSM().AppliedIndex() {
		if ctx.Err() != nil {
			t.Fatal("n4 did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := l.Promote(ctx, "n4"); err != nil {
		t.Fatal(err)
	}
	voters := 0
	for _, m := range l.Status().Members {
		if m.Suffrage == "voter" {
			voters++
		}
	}
	if voters != 3 {
		t.Fatalf("members %+v", l.Status().Members)
	}
	c.converge("t", 1, pub.acked)
}

func unreachable(n *cluster.Node, id string) bool {
	for _, m := range n.Status().Members {
		if m.ID == id {
			return m.Unreachable
		}
	}
	return false
}

func TestJoinOutcomes(t *testing.T) {
	notLeader := fmt.Errorf("%w: x", cluster.ErrNotLeader)
	for _, tc := range []struct {
		name string
		errs []error
		want error // nil, or the sentinel the result must wrap
	}{
		{"all stored", []error{nil, nil}, nil},
		{"all refused", []error{notLeader, notLeader}, cluster.ErrNotLeader},
		{"refused and invalid", []error{notLeader, fsm.ErrTopicNotFound}, cluster.ErrNotLeader},
		{"one stored, one refused", []error{nil, notLeader}, cluster.ErrTimeout},
		{"one unknown, one refused", []error{cluster.ErrTimeout, notLeader}, cluster.ErrTimeout},
		{"closed", []error{cluster.ErrClosed}, cluster.ErrTimeout},
	} {
		got := cluster.JoinOutcomes(tc.errs)
		if (got == nil) != (tc.want == nil) || (tc.want != nil && !errors.Is(got, tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
		if tc.want == cluster.ErrTimeout && errors.Is(got, cluster.ErrNotLeader) {
			t.Errorf("%s: %v also says not stored", tc.name, got)
		}
	}
}

// TestSplitPublishAcrossTransfer: a publish split into many entries,
// interrupted by a leadership transfer, is reported as refused
// (ErrNotLeader: retry freely) only if none of it was stored.
func TestSplitPublishAcrossTransfer(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *cluster.Config) {
		cfg.MaxBatchMessages = 8
		cfg.PipelineDepth = 1
	})
	createTopic(t, c, "t", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for round := 0; round < 5; round++ {
		l := c.node(c.leader())
		p, err := l.FSM().Partition("t", 0)
		if err != nil {
			t.Fatal(err)
		}
		before := p.Watermark()
		msgs := make([]journal.Message, 4000)
		for i := range msgs {
			msgs[i].Payload = []byte("x")
		}
		go func() {
			time.Sleep(5 * time.Millisecond)
			l.TransferLeadership(ctx, "")
		}()
		_, err = l.Publish(ctx, "t", 0, msgs)
		newLeader := c.node(c.leader())
		np, _ := newLeader.FSM().Partition("t", 0)
		stored := np.Watermark() - before
		t.Logf("round %d: %v; %d stored", round, err, stored)
		if errors.Is(err, cluster.ErrNotLeader) && stored > 0 {
			t.Fatalf("publish reported refused (%v) but %d of its messages were stored", err, stored)
		}
	}
}

// TestLeaderLogWrittenInParallel stalls the leader's own raft log write:
// the followers store the entry and raft counts it committed, yet nothing
// applies or acknowledges it until it is on the leader's disk too (the
// commit index sent to followers is capped at the leader's durable
// prefix, and the leader's state machine waits for its write).
func TestLeaderLogWrittenInParallel(t *testing.T) {
	ctx, c, lid := leaderAfterOnePublish(t)
	l := c.node(lid)
	before := l.Raft().LastIndex()
	release := l.StallLogWrites()
	defer release()
	done := publishInBackground(ctx, l, "stalled")
	var idx uint64
	waitUntil(t, "the leader dispatches the entry", func() bool {
		idx = l.Raft().LastIndex()
		return idx > before
	})
	followers := others(c, lid)
	waitUntil(t, "followers store the entry and raft commits it", func() bool {
		for _, id := range followers {
			if c.node(id).Raft().LastIndex() < idx {
				return false
			}
		}
		ci, _ := strconv.ParseUint(l.Raft().Stats()["commit_index"], 10, 64)
		return ci >= idx
	})
	time.Sleep(200 * time.Millisecond) // 40 commit timeouts: followers hear of every commit index
	select {
	case err := <-done:
		t.Fatalf("publish answered (%v) before the leader wrote its entry", err)
	default:
	}
	for _, id := range append(followers, lid) {
		if a := c.node(id).FSM().AppliedIndex(); a >= idx {
			t.Fatalf("%s applied %d before the leader wrote entry %d", id, a, idx)
		}
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, id := range followers {
		waitUntil(t, id+" applies the entry", func() bool { return c.node(id).FSM().AppliedIndex() >= idx })
	}
}

// TestLeaderLogWriteFailure fails the leader's own raft log write while it
// is cut off, so the entry never commits and never reaches a state
// machine: the node still reports the failure, and neither reads nor
// hands out deliveries as if it were healthy.
func TestLeaderLogWriteFailure(t *testing.T) {
	ctx, c, lid := leaderAfterOnePublish(t)
	l := c.node(lid)
	diskErr := errors.New("disk on fire")
	l.FailLogWrites(diskErr)
	c.net.Isolate(lid)
	done := publishInBackground(ctx, l, "doomed")
	select {
	case <-l.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not fail after its log write failed")
	}
	if err := l.Err(); !errors.Is(err, diskErr) {
		t.Fatalf("Err() = %v, want the log write's error", err)
	}
	if err := <-done; err == nil {
		t.Fatal("the publish whose log write failed was acknowledged")
	}
	if _, err := l.Read(ctx, "t", 0, 0, 10, 0, 0); !errors.Is(err, diskErr) {
		t.Fatalf("Read on the failed node: %v, want the log write's error", err)
	}
	if _, err := l.Fetch(ctx, "g", "t", 1, 0); !errors.Is(err, diskErr) {
		t.Fatalf("Fetch on the failed node: %v, want the log write's error", err)
	}
	c.mu.Lock()
	delete(c.nodes, lid) // closed here: its Close reports the failure
	c.mu.Unlock()
	if err := l.Close(); !errors.Is(err, diskErr) {
		t.Fatalf("Close of the failed node: %v, want the log write's error", err)
	}
	c.net.Heal()
	c.leader(others(c, lid)...) // the other two carry on
}

// leaderAfterOnePublish starts three nodes with a topic "t" of one
// partition, publishes one message through the leader and returns a
// context for the rest of the test (10 s), the cluster and the leader.
func leaderAfterOnePublish(t *testing.T) (context.Context, *testCluster, string) {
	c := newTestCluster(t, 3, nil)
	createTopic(t, c, "t", 1)
	lid := c.leader()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if _, err := c.node(lid).Publish(ctx, "t", 0, []journal.Message{{Payload: []byte("before")}}); err != nil {
		t.Fatal(err)
	}
	return ctx, c, lid
}

// publishInBackground publishes payload to partition 0 of "t" through n;
// the channel gets the publish's error.
func publishInBackground(ctx context.Context, n *cluster.Node, payload string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := n.Publish(ctx, "t", 0, []journal.Message{{Payload: []byte(payload)}})
		done <- err
	}()
	return done
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}
