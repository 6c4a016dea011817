package main

import (
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Proxy forwards TCP connections to one target address and injects faults
// into them: Cut closes the connections it carries and holds new ones
// (accepted, never forwarded: to the dialer the network is silent) until
// Heal; Delay holds every chunk of bytes, in each direction, for a while
// before passing it on; Loss makes some chunks late by a retransmission
// timeout, which is what a lost packet costs a TCP connection.
//
// A Proxy either serves its own listener (ListenProxy) or is handed
// connections someone else accepted (Handle).
type Proxy struct {
	target string
	ln     net.Listener // nil unless ListenProxy made it

	mu      sync.Mutex
	cut     bool
	delay   time.Duration
	loss    float64       // probability that a chunk is "lost"
	rto     time.Duration // what a lost chunk waits
	closed  bool
	live    map[*session]struct{} // connections being forwarded
	held    map[net.Conn]struct{} // connections accepted while cut
	running sync.WaitGroup        // the accept loop and the sessions
}

// dialTimeout bounds the proxy's own dial of its target.
const dialTimeout = 2 * time.Second

// NewProxy returns a proxy to target with no listener: give it
// connections with Handle.
func NewProxy(target string) *Proxy {
	return &Proxy{target: target, live: map[*session]struct{}{}, held: map[net.Conn]struct{}{}}
}

// ListenProxy starts a proxy listening on addr (host:port, port 0 for any)
// that forwards to target.
func ListenProxy(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := NewProxy(target)
	p.ln = ln
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.Handle(c)
		}
	}()
	return p, nil
}

// Addr is the address the proxy listens on ("" without a listener).
func (p *Proxy) Addr() string {
	if p.ln == nil {
		return ""
	}
	return p.ln.Addr().String()
}

// Handle takes over an accepted connection: it is forwarded to the target,
// or held when the proxy is cut. It returns at once.
func (p *Proxy) Handle(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		c.Close()
	case p.cut:
		p.held[c] = struct{}{}
	default:
		p.running.Add(1)
		go p.forward(c)
	}
}

// Cut closes every connection the proxy carries and holds the new ones
// until Heal.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	live := p.live
	p.live = map[*session]struct{}{}
	p.mu.Unlock()
	for s := range live {
		s.close()
	}
}

// Heal ends a Cut: new connections are forwarded again, and those held
// meanwhile are closed (their dialers have long given up on them).
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	held := p.held
	p.held = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range held {
		c.Close()
	}
}

// Delay makes every chunk of bytes wait d (0: none) before it is passed
// on, in both directions, on existing and new connections.
func (p *Proxy) Delay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Loss makes each chunk of bytes, in each direction, "lost" with
// probability p (0: none): it and everything behind it on that connection
// wait rto more, as a TCP stream waits for the retransmission of a lost
// segment. (A proxy between two TCP connections cannot lose bytes: the
// kernels would retransmit them; this is what the loss costs the ends.)
func (p *Proxy) Loss(prob float64, rto time.Duration) {
	p.mu.Lock()
	p.loss, p.rto = prob, rto
	p.mu.Unlock()
}

// IsCut reports whether the proxy is cut.
func (p *Proxy) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// currentDelay is how long a chunk read now waits: the delay, plus the
// retransmission timeout if it is lost.
func (p *Proxy) currentDelay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	d := p.delay
	if p.loss > 0 && rand.Float64() < p.loss {
		d += p.rto
	}
	return d
}

// Close stops the listener, closes every connection and waits for the
// proxy's goroutines to end.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	live, held := p.live, p.held
	p.live, p.held = map[*session]struct{}{}, map[net.Conn]struct{}{}
	p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
	}
	for s := range live {
		s.close()
	}
	for c := range held {
		c.Close()
	}
	p.running.Wait()
}

// session is one forwarded connection: the accepted end and the proxy's
// connection to the target.
type session struct {
	down, up net.Conn
	once     sync.Once
	done     chan struct{} // closed by close
}

func (s *session) close() {
	s.once.Do(func() {
		close(s.done)
		s.down.Close()
		s.up.Close()
	})
}

// forward dials the target for c and pipes both ways until either side
// closes or the proxy cuts them.
func (p *Proxy) forward(c net.Conn) {
	defer p.running.Done()
	up, err := net.DialTimeout("tcp", p.target, dialTimeout)
	if err != nil {
		c.Close() // the target is down: to the dialer, a reset
		return
	}
	s := &session{down: c, up: up, done: make(chan struct{})}
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		s.close()
		return
	case p.cut: // cut while dialing
		p.held[c] = struct{}{}
		p.mu.Unlock()
		up.Close()
		return
	}
	p.live[s] = struct{}{}
	p.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pipe(s, up, c) }()
	go func() { defer wg.Done(); p.pipe(s, c, up) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.live, s)
	p.mu.Unlock()
}

// chunk is bytes read from one side, with the time they were read.
type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst, each chunk no earlier than its read time plus
// the proxy's delay, until either fails; then it closes the session. A
// reader goroutine keeps reading while the writer waits, so a delay adds
// latency without throttling the bandwidth.
func (p *Proxy) pipe(s *session, dst, src net.Conn) {
	chunks := make(chan chunk, 64)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case chunks <- chunk{buf[:n], time.Now()}:
				case <-s.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		s.close()
		for range chunks { // wait for the reader to end
		}
	}()
	// Chunks are passed on one after the other: one that waits (lost)
	// holds back those behind it, and order is kept.
	for c := range chunks {
		if d := p.currentDelay(); d > 0 {
			if wait := time.Until(c.at.Add(d)); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-s.done:
					t.Stop()
					return
				}
			}
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
	}
}
