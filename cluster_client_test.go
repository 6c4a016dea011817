package walmq_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walmq/walmq"
	"github.com/walmq/walmq/internal/freeport"
	"github.com/walmq/walmq/transport"
)

// freePorts returns n 127.0.0.1 addresses that were free a moment ago,
// outside the kernel's ephemeral range (see internal/freeport).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		a, err := freeport.Addr()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

// member is one node of an in-process three-node cluster that serves the
// gRPC API on 127.0.0.1.
type member struct {
	id     string
	e      *walmq.Embedded
	srv    *transport.Server
	served chan error
	once   sync.Once
}

func (m *member) stop() {
	m.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.srv.Stop(ctx)
		<-m.served
		m.e.Close()
	})
}

// startCluster starts three members on 127.0.0.1. Their client addresses
// are the kernel's choice; their Raft addresses, which every member must
// know before it starts, are picked beforehand, so another process may
// take one first: the cluster is then started again on other ports.
func startCluster(t *testing.T) []*member {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ms, err := tryStartCluster(t)
		if err == nil {
			for _, m := range ms {
				t.Cleanup(m.stop)
			}
			return ms
		}
		if attempt == 3 || !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatal(err)
		}
		t.Logf("%v; starting the cluster again on other ports", err)
	}
}

func tryStartCluster(t *testing.T) (_ []*member, err error) {
	raftAddrs := freePorts(t, 3)
	var peers []walmq.Peer
	for i := range 3 {
		peers = append(peers, walmq.Peer{ID: fmt.Sprintf("n%d", i+1), Addr: raftAddrs[i]})
	}
	base := t.TempDir()
	var ms []*member
	defer func() {
		if err != nil {
			for _, m := range ms {
				m.stop()
			}
		}
	}()
	for i := range 3 {
		id := peers[i].ID
		e, err := walmq.Open(filepath.Join(base, id), walmq.Options{NodeID: id, RaftAddr: raftAddrs[i], Peers: peers})
		if err != nil {
			return nil, err
		}
		srv, err := transport.NewServer(e.Node(), transport.Options{Listen: "127.0.0.1:0"})
		if err != nil {
			e.Close()
			return nil, err
		}
		m := &member{id: id, e: e, srv: srv, served: make(chan error, 1)}
		go func() { m.served <- srv.Serve() }()
		ms = append(ms, m)
	}
	return ms, nil
}

func (m *member) addr() string { return m.srv.TCPAddr().String() }

// TestClientThroughLeaderLoss: a client of a three-node cluster, talking
// to the leader, keeps publishing when the leader goes away: it moves to
// another node and retries by message id; every acknowledged message is
// consumed afterwards, none is stored twice.
func TestClientThroughLeaderLoss(t *testing.T) {
	ms := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Wait for a leader, and for every node to know every client address.
	var leader *member
	for leader == nil || !announced(ms) {
		if ctx.Err() != nil {
			t.Fatal("no leader, or addresses not announced")
		}
		for _, m := range ms {
			if m.e.Node().IsLeader() {
				leader = m
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	addrs := []string{leader.addr()}
	for _, m := range ms {
		if m != leader {
			addrs = append(addrs, m.addr())
		}
	}
	c, err := walmq.Dial(ctx, strings.Join(addrs, ","), walmq.DialOptions{AutoID: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic(ctx, "t", walmq.TopicConfig{Partitions: 3, DedupWindow: time.Hour}); err != nil {
		t.Fatal(err)
	}

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				payload := fmt.Sprintf("w%d-%d", w, i)
				if _, err := c.Publish(ctx, "t", walmq.Message{Payload: []byte(payload)}); err != nil {
					errs <- fmt.Errorf("publish %s: %w", payload, err)
					return
				}
				mu.Lock()
				acked[payload] = true
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	leader.stop()
	t.Logf("stopped the leader %s", leader.id)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// Drain the topic through the client (any node): every ack is there,
	// and nothing is stored twice.
	seen := map[string]int{}
	for {
		ds, err := c.Fetch(ctx, "check", "t", 1000, 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			break
		}
		refs := make([]walmq.Ref, len(ds))
		for i, d := range ds {
			seen[string(d.Payload)]++
			refs[i] = d.Ref
		}
		if err := c.Ack(ctx, refs...); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(acked) < 50 {
		t.Fatalf("only %d publishes acknowledged", len(acked))
	}
	for p := range acked {
		if seen[p] == 0 {
			t.Errorf("acknowledged %s is missing", p)
		}
	}
	for p, n := range seen {
		if n > 1 {
			t.Errorf("%s stored %d times", p, n)
		}
	}
	t.Logf("%d acknowledged, %d consumed", len(acked), len(seen))
}

func announced(ms []*member) bool {
	for _, m := range ms {
		for _, o := range ms {
			if m.e.Node().FSM().ClientAddr(o.id) == "" {
				return false
			}
		}
	}
	return true
}

// TestPublishAsyncAcrossTransfer: after a leadership transfer, a client's
// publish stream (opened on the old leader) is retired on its first
// refusal, and publishing goes on through the new leader.
func TestPublishAsyncAcrossTransfer(t *testing.T) {
	ms := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for !announced(ms) {
		if ctx.Err() != nil {
			t.Fatal("addresses not announced")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var addrs []string
	for _, m := range ms {
		addrs = append(addrs, m.addr())
	}
	c, err := walmq.Dial(ctx, strings.Join(addrs, ","), walmq.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.CreateTopic(ctx, "t", walmq.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	publish := func() error {
		ch := make(chan error, 1)
		if err := c.PublishAsync(ctx, "t", 0, []walmq.Message{{Payload: []byte("x")}}, func(_ []walmq.PublishAck, err error) { ch <- err }); err != nil {
			return err
		}
		return <-ch
	}
	if err := publish(); err != nil {
		t.Fatal(err)
	}
	newLeader, err := c.TransferLeader(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leadership moved to %s", newLeader)
	ok, failed := 0, 0
	deadline := time.Now().Add(5 * time.Second)
	for ok < 20 && time.Now().Before(deadline) {
		if err := publish(); err != nil {
			failed++
			time.Sleep(20 * time.Millisecond)
			continue
		}
		ok++
	}
	if ok < 20 {
		t.Fatalf("after the transfer: %d published, %d failed", ok, failed)
	}
	t.Logf("after the transfer: %d failed before publishing resumed", failed)
}
