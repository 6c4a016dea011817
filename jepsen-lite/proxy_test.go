package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// noLeaks fails the test if goroutines it started outlive it (after its
// cleanups: register it first).
func noLeaks(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
}

// echoServer serves lines back to their sender until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 100)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
			go io.Copy(c, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// roundTrip writes a line on c and reads it back, within timeout.
func roundTrip(c net.Conn, line string, timeout time.Duration) error {
	c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != line {
		return errors.New("echoed " + got)
	}
	return nil
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestProxyForwards(t *testing.T) {
	noLeaks(t)
	p, err := ListenProxy("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	for _, line := range []string{"one", strings.Repeat("x", 100_000), "three"} {
		if err := roundTrip(c, line, 2*time.Second); err != nil {
			t.Fatalf("round trip of %d bytes: %v", len(line), err)
		}
	}
}

func TestProxyCutAndHeal(t *testing.T) {
	noLeaks(t)
	p, err := ListenProxy("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	old := dial(t, p.Addr())
	if err := roundTrip(old, "before", 2*time.Second); err != nil {
		t.Fatal(err)
	}

	p.Cut()
	// The connection it carried is closed.
	if err := roundTrip(old, "cut", 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("round trip on a connection carried across a cut: %v, want it closed", err)
	}
	// A new one is accepted and then nothing: the network is silent.
	held := dial(t, p.Addr())
	if err := roundTrip(held, "held", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("round trip while cut: %v, want a timeout", err)
	}

	p.Heal()
	// What was held is closed, and new connections work again.
	held.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read on a connection held across the heal: %v, want it closed", err)
	}
	if err := roundTrip(dial(t, p.Addr()), "after", 2*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestProxyDelay(t *testing.T) {
	noLeaks(t)
	p, err := ListenProxy("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	if err := roundTrip(c, "warm", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	const d = 100 * time.Millisecond
	p.Delay(d)
	start := time.Now()
	if err := roundTrip(c, "slow", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt < 2*d {
		t.Fatalf("round trip with a delay of %v each way took %v", d, rtt)
	}
	p.Delay(0)
	start = time.Now()
	if err := roundTrip(c, "fast", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt >= d {
		t.Fatalf("round trip without delay took %v", rtt)
	}
}

func TestProxyLoss(t *testing.T) {
	noLeaks(t)
	p, err := ListenProxy("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	if err := roundTrip(c, "warm", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// Every chunk lost: each round trip waits the timeout twice, and the
	// bytes still arrive, in order.
	const rto = 80 * time.Millisecond
	p.Loss(1, rto)
	for _, msg := range []string{"one", "two"} {
		start := time.Now()
		if err := roundTrip(c, msg, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*rto {
			t.Fatalf("round trip with every chunk lost (rto %v) took %v", rto, rtt)
		}
	}
	p.Loss(0, 0)
	start := time.Now()
	if err := roundTrip(c, "fast", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if rtt := time.Since(start); rtt >= rto {
		t.Fatalf("round trip without loss took %v", rtt)
	}
}

func TestProxyTargetDown(t *testing.T) {
	noLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := ln.Addr().String()
	ln.Close()
	p, err := ListenProxy("127.0.0.1:0", target)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p.Addr())
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read through a proxy whose target is down: %v, want the connection closed", err)
	}
}

func TestProxyCloseEndsConnections(t *testing.T) {
	noLeaks(t)
	p, err := ListenProxy("127.0.0.1:0", echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	live := dial(t, p.Addr())
	if err := roundTrip(live, "x", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Close() // returns once every goroutine of the proxy has ended
	live.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := live.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read after Close: %v, want the connection closed", err)
	}
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("the proxy still listens after Close")
	}
}

func TestConnOwner(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out := dial(t, ln.Addr().String())
	in, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	_ = out
	me := os.Getpid()
	if pid, err := connOwner(in, []int{me + 1_000_000, me}); err != nil || pid != me {
		t.Fatalf("connOwner = %d, %v; want %d (this process)", pid, err, me)
	}
	if pid, err := connOwner(in, []int{me + 1_000_000}); !errors.Is(err, errNoOwner) {
		t.Fatalf("connOwner without this process among the candidates = %d, %v; want errNoOwner", pid, err)
	}
}

// TestNetRoutesByLink checks that the harness's network attributes a
// connection to its opener (here the harness itself: "client") and that
// cutting that link, and only it, stops it.
func TestNetRoutesByLink(t *testing.T) {
	eps := []*endpoint{{id: "n1", raft: echoServer(t), api: echoServer(t)}, {id: "n2", raft: echoServer(t), api: echoServer(t)}}
	n, err := NewNet(eps)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	c := dial(t, eps[0].publicRaft)
	if err := roundTrip(c, "hello", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	n.Cut("n2", "n1") // another link: no effect here
	if err := roundTrip(c, "still", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	n.Cut(clientName, "n1")
	if err := roundTrip(c, "cut", 2*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("round trip across a cut link: %v, want the connection closed", err)
	}
	if got := n.CutLinks(); strings.Join(got, " ") != "client->n1 n2->n1" {
		t.Fatalf("CutLinks = %v", got)
	}
	n.HealAll()
	if err := roundTrip(dial(t, eps[0].publicAPI), "healed", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if u := n.Unattributed(); u != 0 {
		t.Fatalf("%d connections not attributed", u)
	}
}
