package faultnet

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
)

// maxBuffered is how many bytes one direction of a connection buffers
// before Write blocks.
const maxBuffered = 16 << 20

// Addr is the net.Addr of an endpoint: Network() is "faultnet", String()
// the endpoint's name.
type Addr string

// Network returns "faultnet".
func (Addr) Network() string { return "faultnet" }

// String returns the endpoint's name.
func (a Addr) String() string { return string(a) }

// link is one direction between two endpoint names.
type link struct{ from, to string }

// Network is an in-memory network of named endpoints. Its zero value is not
// usable; create one with New.
type Network struct {
	// mu guards everything below and all state of the Layers and
	// connections of the Network.
	mu       sync.Mutex
	layers   map[string]*Layer // listening endpoints
	cut      map[link]bool
	isolated map[string]bool
	delay    map[link]time.Duration
	conns    map[*conn]struct{} // open connection ends
	// changed is closed (and replaced) whenever links or endpoints change;
	// dials waiting for a cut link wait on it.
	changed chan struct{}
}

// New returns an empty Network: no endpoints, every link up.
func New() *Network {
	return &Network{
		layers:   make(map[string]*Layer),
		cut:      make(map[link]bool),
		isolated: make(map[string]bool),
		delay:    make(map[link]time.Duration),
		conns:    make(map[*conn]struct{}),
		changed:  make(chan struct{}),
	}
}

// broadcast closes *ch, waking whoever waits on it, and replaces it.
func broadcast(ch *chan struct{}) {
	close(*ch)
	*ch = make(chan struct{})
}

// wait releases n.mu until ch is closed or deadline passes (zero: no
// deadline), then takes it again. ch must have been read under n.mu.
func (n *Network) wait(ch <-chan struct{}, deadline time.Time) {
	n.mu.Unlock()
	defer n.mu.Lock()
	if deadline.IsZero() {
		<-ch
		return
	}
	d := time.Until(deadline)
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// isCut reports whether data from -> to is held. n.mu must be held.
func (n *Network) isCut(from, to string) bool {
	if n.cut[link{from, to}] {
		return true
	}
	return from != to && (n.isolated[from] || n.isolated[to])
}

// cutLocked runs cut, which adds cuts, after landing what has already
// crossed the links that are still up. n.mu must be held.
func (n *Network) cutLocked(cut func()) {
	now := time.Now()
	for c := range n.conns {
		for _, p := range []*pipe{c.in, c.out} {
			if !n.isCut(p.from, p.to) {
				p.land(now)
			}
		}
	}
	cut()
	n.changedLocked()
}

// changedLocked wakes everything that depends on link state: waiting dials
// and every connection's readers and writers. n.mu must be held.
func (n *Network) changedLocked() {
	broadcast(&n.changed)
	for c := range n.conns {
		broadcast(&c.in.notify)
		broadcast(&c.out.notify)
	}
}

// Listen creates the endpoint addr (any non-empty name, e.g. "n1"). It
// fails if addr is empty or already listening; after the Layer's Close the
// name may be listened on again.
func (n *Network) Listen(addr string) (*Layer, error) {
	if addr == "" {
		return nil, errors.New("faultnet: empty address")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.layers[addr]; ok {
		return nil, &net.OpError{Op: "listen", Net: "faultnet", Addr: Addr(addr), Err: syscall.EADDRINUSE}
	}
	l := &Layer{net: n, addr: addr, notify: make(chan struct{})}
	n.layers[addr] = l
	n.changedLocked()
	return l, nil
}

// Cut stops data flowing from -> to (one direction). Bytes written in that
// direction, on existing or new connections, are held until Heal; dials
// between the two endpoints (either way) time out. See the package
// documentation.
func (n *Network) Cut(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cutLocked(func() { n.cut[link{from, to}] = true })
}

// CutBoth cuts a -> b and b -> a.
func (n *Network) CutBoth(a, b string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cutLocked(func() {
		n.cut[link{a, b}] = true
		n.cut[link{b, a}] = true
	})
}

// Isolate cuts every link to and from addr, in both directions, including
// links to endpoints created later (but not addr's links to itself).
func (n *Network) Isolate(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cutLocked(func() { n.isolated[addr] = true })
}

// Partition cuts every link, both directions, between endpoints of
// different groups; links within a group, and links of endpoints in no
// group, are left as they are. It adds to the existing cuts.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cutLocked(func() {
		for i, g := range groups {
			for _, h := range groups[i+1:] {
				for _, a := range g {
					for _, b := range h {
						if a != b {
							n.cut[link{a, b}] = true
							n.cut[link{b, a}] = true
						}
					}
				}
			}
		}
	})
}

// Heal restores every link and removes every delay. Held and delayed bytes
// become readable at once, in order.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	clear(n.isolated)
	clear(n.delay)
	for c := range n.conns {
		for _, p := range []*pipe{c.in, c.out} {
			for i := range p.chunks {
				p.chunks[i].readyAt = time.Time{}
			}
		}
	}
	n.changedLocked()
}

// Delay makes each chunk written from -> to readable only d after its
// Write; bytes stay in order. d <= 0 removes the delay for later writes
// (chunks already written keep theirs; Heal clears those too).
func (n *Network) Delay(from, to string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d <= 0 {
		delete(n.delay, link{from, to})
	} else {
		n.delay[link{from, to}] = d
	}
	n.changedLocked()
}

// Reset breaks every existing connection that touches addr: both ends'
// Reads and Writes fail at once with an error wrapping
// syscall.ECONNRESET, like a restarting node's RSTs. Buffered bytes are
// discarded; links and listeners are not affected.
func (n *Network) Reset(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for c := range n.conns {
		if c.local == addr || c.remote == addr {
			c.resetLocked()
		}
	}
}

// Layer is one endpoint of a Network. It implements raft.StreamLayer: a
// net.Listener for the connections dialed to it, and Dial for the
// connections it makes.
type Layer struct {
	net     *Network
	addr    string
	closed  bool          // guarded by net.mu
	backlog []*conn       // dialed, not yet accepted; guarded by net.mu
	notify  chan struct{} // closed and replaced on backlog or close; guarded by net.mu
}

var _ raft.StreamLayer = (*Layer)(nil)

// Accept waits for and returns the next connection dialed to this
// endpoint. After Close it returns an error wrapping net.ErrClosed.
func (l *Layer) Accept() (net.Conn, error) {
	n := l.net
	n.mu.Lock()
	defer n.mu.Unlock()
	for {
		if l.closed {
			return nil, &net.OpError{Op: "accept", Net: "faultnet", Addr: Addr(l.addr), Err: net.ErrClosed}
		}
		if len(l.backlog) > 0 {
			c := l.backlog[0]
			l.backlog[0] = nil
			l.backlog = l.backlog[1:]
			return c, nil
		}
		n.wait(l.notify, time.Time{})
	}
}

// Close closes the listener and every connection of this endpoint (as
// Close on each: their peers read what was sent, then io.EOF). Accept and
// Dial on the Layer fail afterwards, and the address may be listened on
// again. Closing twice returns an error.
func (l *Layer) Close() error {
	n := l.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if l.closed {
		return &net.OpError{Op: "close", Net: "faultnet", Addr: Addr(l.addr), Err: net.ErrClosed}
	}
	l.closed = true
	if n.layers[l.addr] == l {
		delete(n.layers, l.addr)
	}
	for c := range n.conns {
		if c.layer == l {
			c.closeLocked()
		}
	}
	l.backlog = nil
	broadcast(&l.notify)
	broadcast(&n.changed)
	return nil
}

// Addr returns the endpoint's address.
func (l *Layer) Addr() net.Addr { return Addr(l.addr) }

// Dial connects to the endpoint named address. It fails at once (wrapping
// syscall.ECONNREFUSED) if nobody listens there; while the link is cut in
// either direction it waits for Heal until timeout and then fails with a
// timeout error (wrapping os.ErrDeadlineExceeded); over delayed links it
// takes the round trip. A timeout <= 0 means no timeout.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	n := l.net
	target := string(address)
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	fail := func(err error) error {
		return &net.OpError{Op: "dial", Net: "faultnet", Source: Addr(l.addr), Addr: Addr(target), Err: err}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	handshaken := false
	for {
		if l.closed {
			return nil, fail(net.ErrClosed)
		}
		if n.isCut(l.addr, target) || n.isCut(target, l.addr) {
			if !deadline.IsZero() && !time.Now().Before(deadline) {
				return nil, fail(os.ErrDeadlineExceeded)
			}
			n.wait(n.changed, deadline)
			handshaken = false
			continue
		}
		if rtt := n.delay[link{l.addr, target}] + n.delay[link{target, l.addr}]; rtt > 0 && !handshaken {
			// The handshake crosses both links once.
			until := time.Now().Add(rtt)
			if !deadline.IsZero() && deadline.Before(until) {
				n.wait(nil, deadline)
				return nil, fail(os.ErrDeadlineExceeded)
			}
			n.wait(nil, until)
			handshaken = true
			continue
		}
		t := n.layers[target]
		if t == nil {
			return nil, fail(syscall.ECONNREFUSED)
		}
		a2b := &pipe{from: l.addr, to: target, notify: make(chan struct{})}
		b2a := &pipe{from: target, to: l.addr, notify: make(chan struct{})}
		client := &conn{net: n, layer: l, local: l.addr, remote: target, in: b2a, out: a2b}
		server := &conn{net: n, layer: t, local: target, remote: l.addr, in: a2b, out: b2a}
		client.peer, server.peer = server, client
		n.conns[client] = struct{}{}
		n.conns[server] = struct{}{}
		t.backlog = append(t.backlog, server)
		broadcast(&t.notify)
		return client, nil
	}
}
