package transport_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/walmq/walmq"
	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/cluster/faultnet"
	"github.com/walmq/walmq/transport"
)

// gate relays TCP connections to a target and can stop relaying, as a
// paused (SIGSTOPped) process stops reading: the bytes sent to it are held,
// nothing fails, connections stay open.
type gate struct {
	l      net.Listener
	target string
	held   atomic.Int64 // bytes that arrived while frozen

	mu     sync.Mutex
	thaw   chan struct{} // non-nil while frozen; closed on unfreeze
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

func newGate(t *testing.T) *gate {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &gate{l: l, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
}

func (g *gate) addr() string { return g.l.Addr().String() }

// serve relays to target until close.
func (g *gate) serve(target string) {
	g.target = target
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			c, err := g.l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", g.target)
			if err != nil {
				c.Close()
				continue
			}
			if !g.track(c, up) {
				return
			}
			g.wg.Add(2)
			go g.pipe(c, up)
			go g.pipe(up, c)
		}
	}()
}

func (g *gate) track(cs ...net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		g.conns[c] = struct{}{}
	}
	return true
}

func (g *gate) pipe(from, to net.Conn) {
	defer g.wg.Done()
	defer to.Close()
	defer from.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			g.mu.Lock()
			thaw := g.thaw
			g.mu.Unlock()
			if thaw != nil {
				g.held.Add(int64(n))
				select {
				case <-thaw:
				case <-g.done:
					return
				}
			}
			if _, err := to.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (g *gate) freeze() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.thaw == nil {
		g.thaw = make(chan struct{})
	}
}

func (g *gate) unfreeze() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.thaw != nil {
		close(g.thaw)
		g.thaw = nil
	}
}

func (g *gate) close() {
	g.mu.Lock()
	if !g.closed {
		g.closed = true
		close(g.done)
		g.l.Close()
		for c := range g.conns {
			c.Close()
		}
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// fwdNode is a node of an in-process three-node cluster whose Raft traffic
// crosses a faultnet network and whose gRPC server is reached, by clients
// and by the followers that forward to it, through a gate.
type fwdNode struct {
	id     string
	node   *cluster.Node
	srv    *transport.Server
	gate   *gate
	served chan error
}

type fwdCluster struct {
	t     *testing.T
	spell func(string) string // how the nodes advertise their gates' addresses
	net   *faultnet.Network
	nodes []*fwdNode
}

// startForwardCluster starts the cluster; each node advertises its gate's
// address, spelled by spell if given (as a host name, say).
func startForwardCluster(t *testing.T, spell ...func(string) string) *fwdCluster {
	t.Helper()
	c := &fwdCluster{t: t, net: faultnet.New(), spell: func(a string) string { return a }}
	if len(spell) > 0 {
		c.spell = spell[0]
	}
	var peers []cluster.Peer
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("n%d", i)
		peers = append(peers, cluster.Peer{ID: id, Addr: id})
	}
	base := t.TempDir()
	t.Cleanup(c.close)
	for _, p := range peers {
		layer, err := c.net.Listen(p.ID)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		node, err := cluster.Open(ctx, cluster.Config{Dir: filepath.Join(base, p.ID), NodeID: p.ID, Peers: peers,
			StreamLayer: layer, HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond})
		cancel()
		if err != nil {
			layer.Close()
			t.Fatalf("open %s: %v", p.ID, err)
		}
		g := newGate(t)
		srv, err := transport.NewServer(node, transport.Options{Listen: "127.0.0.1:0", Advertise: c.spell(g.addr())})
		if err != nil {
			g.close()
			node.Close()
			t.Fatal(err)
		}
		g.serve(srv.TCPAddr().String())
		n := &fwdNode{id: p.ID, node: node, srv: srv, gate: g, served: make(chan error, 1)}
		go func() { n.served <- srv.Serve() }()
		c.nodes = append(c.nodes, n)
	}
	// Wait for a leader that takes writes and for every node to know every
	// client address (followers forward to the leader's).
	deadline := time.Now().Add(20 * time.Second)
	for !c.ready() {
		if time.Now().After(deadline) {
			t.Fatal("no leader, or client addresses not announced")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return c
}

func (c *fwdCluster) ready() bool {
	if c.leader() == nil {
		return false
	}
	for _, n := range c.nodes {
		for _, m := range c.nodes {
			if n.node.FSM().ClientAddr(m.id) != c.spell(m.gate.addr()) {
				return false
			}
		}
	}
	return true
}

func (c *fwdCluster) leader() *fwdNode {
	for _, n := range c.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := n.node.VerifyLeader(ctx)
		cancel()
		if err == nil {
			return n
		}
	}
	return nil
}

func (c *fwdCluster) follower(not *fwdNode) *fwdNode {
	for _, n := range c.nodes {
		if n != not {
			return n
		}
	}
	return nil
}

func (c *fwdCluster) close() {
	c.net.Heal()
	for _, n := range c.nodes {
		n.gate.unfreeze()
	}
	for _, n := range c.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n.srv.Stop(ctx)
		cancel()
		if err := <-n.served; err != nil {
			c.t.Errorf("Serve %s: %v", n.id, err)
		}
	}
	for _, n := range c.nodes {
		n.gate.close()
		if err := n.node.Close(); err != nil {
			c.t.Errorf("close %s: %v", n.id, err)
		}
		c.net.Reset(n.id)
	}
}

// hang makes the leader unresponsive once calls are on their way to it:
// its gate already holds what followers forward (freeze before the calls
// start); once some bytes are held, its Raft links are cut too, so the
// other two elect a new leader. The forwarding connections stay open and
// silent, as with a SIGSTOPped leader: only a deadline ends a call on them.
func (c *fwdCluster) hang(leader *fwdNode) {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for leader.gate.held.Load() == 0 {
		if time.Now().After(deadline) {
			c.t.Fatal("nothing was forwarded to the leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let the other calls started reach it too
	c.net.Isolate(leader.id)
}

func dialNode(t *testing.T, n *fwdNode) pb.WalmqClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+n.srv.TCPAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewWalmqClient(conn)
}

// The bound a call through a follower must end within once the leader it
// forwarded to hangs: the election takes about a second here, the caller's
// deadline is 30 s.
const (
	callDeadline = 30 * time.Second
	forwardBound = 10 * time.Second
)

// checkStoppedLeading checks the error of a call forwarded to a leader
// that stopped leading: an unknown outcome (ErrTimeout, DeadlineExceeded),
// never a refusal.
func checkStoppedLeading(t *testing.T, err error, leader string, took time.Duration) {
	t.Helper()
	if took > forwardBound {
		t.Fatalf("the call took %v (error %v): it waited for the caller's deadline, not for the leader change", took, err)
	}
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("got %v (code %v); want DeadlineExceeded", err, status.Code(err))
	}
	werr := transport.FromStatus(err)
	if !errors.Is(werr, cluster.ErrTimeout) || errors.Is(werr, cluster.ErrNotLeader) {
		t.Fatalf("got %v; want ErrTimeout (outcome unknown), not ErrNotLeader", werr)
	}
	if want := "forwarded to " + leader + ", which stopped leading"; !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v; want it to say %q", err, want)
	}
}

// TestForwardedCallEndsWhenLeaderStopsLeading: a unary call a follower
// forwards to a leader that then hangs ends once the follower sees another
// leader (or none), well before the caller's deadline, with an unknown
// outcome.
func TestForwardedCallEndsWhenLeaderStopsLeading(t *testing.T) {
	c := startForwardCluster(t)
	leader := c.leader()
	api := dialNode(t, c.follower(leader))
	ctx := ctx10(t)
	if _, err := api.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "t", Config: &pb.TopicConfig{Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Publish(ctx, &pb.PublishRequest{Topic: "t", Messages: []*pb.Message{{Payload: []byte("before")}}}); err != nil {
		t.Fatal(err)
	}

	leader.gate.freeze()
	cctx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := api.Publish(cctx, &pb.PublishRequest{Topic: "t", Messages: []*pb.Message{{Payload: []byte("during")}}})
		done <- err
	}()
	c.hang(leader)
	err := <-done
	took := time.Since(start)
	t.Logf("forwarded publish ended after %v: %v", took, err)
	checkStoppedLeading(t, err, leader.id, took)
}

// TestForwardedStreamEndsWhenLeaderStopsLeading: the same for a publish
// stream a follower pipes to the leader.
func TestForwardedStreamEndsWhenLeaderStopsLeading(t *testing.T) {
	c := startForwardCluster(t)
	leader := c.leader()
	api := dialNode(t, c.follower(leader))
	if _, err := api.CreateTopic(ctx10(t), &pb.CreateTopicRequest{Name: "t", Config: &pb.TopicConfig{Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	st, err := api.PublishStream(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&pb.PublishRequest{Seq: 1, Topic: "t", Messages: []*pb.Message{{Payload: []byte("before")}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || r.GetError() != "" {
		t.Fatalf("first batch: %v, %v", r, err)
	}

	leader.gate.freeze()
	start := time.Now()
	if err := st.Send(&pb.PublishRequest{Seq: 2, Topic: "t", Messages: []*pb.Message{{Payload: []byte("during")}}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		r, err := st.Recv()
		if err == nil {
			err = fmt.Errorf("an answer while the leader hangs: %v", r)
		}
		done <- err
	}()
	c.hang(leader)
	err = <-done
	took := time.Since(start)
	t.Logf("forwarded publish stream ended after %v: %v", took, err)
	if errors.Is(err, io.EOF) {
		t.Fatal("the stream ended cleanly with a batch unanswered")
	}
	checkStoppedLeading(t, err, leader.id, took)
}

// dialWithTopic dials addr with AutoID, creates the topic "t" (one
// partition, an hour's dedup window) and publishes one message to it. The
// client is closed when the test ends.
func dialWithTopic(t *testing.T, ctx context.Context, addr string) *walmq.Client {
	t.Helper()
	cl, err := walmq.Dial(ctx, addr, walmq.DialOptions{AutoID: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if err := cl.CreateTopic(ctx, "t", walmq.TopicConfig{Partitions: 1, DedupWindow: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Publish(ctx, "t", walmq.Message{Payload: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestClientRetriesThroughFollowerWhenLeaderHangs: the Go client talking
// to a follower gets its publish (by id) and an idempotent call answered
// once a new leader is elected: the follower ends the calls it forwarded
// to the old leader with an unknown outcome, and the client retries them.
func TestClientRetriesThroughFollowerWhenLeaderHangs(t *testing.T) {
	c := startForwardCluster(t)
	leader := c.leader()
	follower := c.follower(leader)
	ctx := ctx10(t)
	cl := dialWithTopic(t, ctx, follower.srv.TCPAddr().String())

	leader.gate.freeze()
	cctx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	start := time.Now()
	var pubTook, descTook time.Duration
	var pubErr, descErr error
	var acks []walmq.PublishAck
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		acks, pubErr = cl.Publish(cctx, "t", walmq.Message{Payload: []byte("during")})
		pubTook = time.Since(start)
	}()
	go func() {
		defer wg.Done()
		_, descErr = cl.DescribeTopic(cctx, "t")
		descTook = time.Since(start)
	}()
	c.hang(leader)
	wg.Wait()
	t.Logf("publish through the follower: %v after %v; describe: %v after %v", pubErr, pubTook, descErr, descTook)
	if pubErr != nil || len(acks) != 1 || acks[0].Offset != 1 || acks[0].Duplicate {
		t.Fatalf("publish: %v, %v; want a new message's ack at offset 1", acks, pubErr)
	}
	if descErr != nil {
		t.Fatalf("describe: %v", descErr)
	}
	if pubTook > forwardBound || descTook > forwardBound {
		t.Fatalf("publish took %v, describe %v: over %v", pubTook, descTook, forwardBound)
	}
}

// TestClientMovesOffAHungLeader: a client of the cluster (given every
// node's address) talks to the leader, which stops answering without
// closing its connections, as a SIGSTOPped process does. gRPC's keepalive
// would notice after 12 s at best; the client's watchdog probes the node
// once a call is overdue, leaves it, and ends the calls in flight on it as
// unknown outcomes, which the client retries (by id) on the others: the
// unary publish, the publish stream (PublishAsync) and an idempotent read
// are all answered well before the calls' deadline.
func TestClientMovesOffAHungLeader(t *testing.T) {
	t.Run("ip", func(t *testing.T) { testClientMovesOffAHungLeader(t, func(a string) string { return a }) })
	// Given as host names, the addresses differ from the connections'
	// remote addresses, which the watchdog must map back.
	t.Run("hostname", func(t *testing.T) {
		testClientMovesOffAHungLeader(t, func(a string) string { return strings.Replace(a, "127.0.0.1", "localhost", 1) })
	})
}

func testClientMovesOffAHungLeader(t *testing.T, spell func(string) string) {
	c := startForwardCluster(t, spell)
	leader := c.leader()
	var addrs []string
	for _, n := range c.nodes {
		addrs = append(addrs, spell(n.gate.addr()))
	}
	ctx := ctx10(t)
	cl := dialWithTopic(t, ctx, strings.Join(addrs, ","))
	// The client's channel is on the leader (Dial puts it first).
	if st, err := cl.Status(ctx); err != nil || st.NodeID != leader.id {
		t.Fatalf("client talks to %q (%v), want the leader %s", st.NodeID, err, leader.id)
	}

	leader.gate.freeze()
	cctx, cancel := context.WithTimeout(context.Background(), callDeadline)
	defer cancel()
	start := time.Now()
	var (
		wg                        sync.WaitGroup
		pubErr, asyncErr, descErr error
		pubTook, asyncTook        time.Duration
		descTook                  time.Duration
		acks, asyncAcks           []walmq.PublishAck
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		acks, pubErr = cl.Publish(cctx, "t", walmq.Message{Payload: []byte("unary")})
		pubTook = time.Since(start)
	}()
	go func() {
		defer wg.Done()
		done := make(chan struct{})
		// PublishAsync reports an unknown outcome to its caller, who
		// retries (with the same id: the client gave it one).
		msg := walmq.Message{ID: "async-1", Payload: []byte("async")}
		var try func()
		try = func() {
			err := cl.PublishAsync(cctx, "t", 0, []walmq.Message{msg}, func(a []walmq.PublishAck, err error) {
				if err != nil && errors.Is(err, walmq.ErrTimeout) && cctx.Err() == nil {
					time.AfterFunc(20*time.Millisecond, try)
					return
				}
				asyncAcks, asyncErr = a, err
				close(done)
			})
			if err != nil {
				asyncErr = err
				close(done)
			}
		}
		try()
		<-done
		asyncTook = time.Since(start)
	}()
	go func() {
		defer wg.Done()
		_, descErr = cl.DescribeTopic(cctx, "t")
		descTook = time.Since(start)
	}()
	c.hang(leader)
	wg.Wait()
	t.Logf("publish: %v after %v; async: %v after %v; describe: %v after %v", pubErr, pubTook, asyncErr, asyncTook, descErr, descTook)
	if pubErr != nil || len(acks) != 1 {
		t.Fatalf("publish: %v, %v", acks, pubErr)
	}
	if asyncErr != nil || len(asyncAcks) != 1 {
		t.Fatalf("async publish: %v, %v", asyncAcks, asyncErr)
	}
	if descErr != nil {
		t.Fatalf("describe: %v", descErr)
	}
	if max(pubTook, asyncTook, descTook) > forwardBound {
		t.Fatalf("publish took %v, async %v, describe %v: over %v", pubTook, asyncTook, descTook, forwardBound)
	}
	// Each message is stored once: the retries were by id.
	info, err := cl.DescribeTopic(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	if got := info.Partitions[0].NextOffset; got != 3 {
		t.Fatalf("partition holds %d messages, want 3 (before, unary, async once each)", got)
	}
}
