package faultnet

import (
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"time"
)

// chunk is the bytes of one Write (or a FIN) in a pipe.
type chunk struct {
	data    []byte
	readyAt time.Time // readable from then on; zero: at once
	eof     bool      // the writer closed: io.EOF for the reader
	// arrived: the chunk crossed the link before it was cut, so it is
	// in the reader's receive buffer and a cut no longer holds it.
	// Arrived chunks are a prefix of the pipe.
	arrived bool
}

// pipe is one direction of a connection, from -> to. All fields are
// guarded by Network.mu.
type pipe struct {
	from, to string
	chunks   []chunk
	size     int // bytes in chunks
	// notify is closed (and replaced) whenever the pipe's readers or
	// writers may be able to make progress.
	notify chan struct{}
}

// ready reports whether h has crossed a link that is up, at now.
func (h *chunk) ready(now time.Time) bool {
	return h.readyAt.IsZero() || !now.Before(h.readyAt)
}

// land marks the chunks that have crossed the link (which must be up) as
// arrived, before the link is cut.
func (p *pipe) land(now time.Time) {
	for i := range p.chunks {
		h := &p.chunks[i]
		if !h.arrived && !h.ready(now) {
			return
		}
		h.arrived = true
	}
}

// discard drops the buffered bytes; nobody will read them.
func (p *pipe) discard() {
	p.chunks = nil
	p.size = 0
	broadcast(&p.notify)
}

// conn is one end of a connection. All fields but the immutable ones are
// guarded by Network.mu.
type conn struct {
	net           *Network
	layer         *Layer // the endpoint this end belongs to
	local, remote string
	in, out       *pipe
	peer          *conn

	closed        bool // Close was called
	reset         bool // broken by Network.Reset
	readDeadline  time.Time
	writeDeadline time.Time
}

var _ net.Conn = (*conn)(nil)

func (c *conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "faultnet", Source: Addr(c.local), Addr: Addr(c.remote), Err: err}
}

// closeLocked closes this end: it queues a FIN toward the peer and drops
// the unread input. n.mu must be held.
func (c *conn) closeLocked() {
	if c.closed {
		return
	}
	c.closed = true
	n := c.net
	delete(n.conns, c)
	if !c.reset && !c.peer.closed {
		var ready time.Time
		if d := n.delay[link{c.out.from, c.out.to}]; d > 0 {
			ready = time.Now().Add(d)
		}
		c.out.chunks = append(c.out.chunks, chunk{eof: true, readyAt: ready})
		broadcast(&c.out.notify)
	}
	c.in.discard()
}

// resetLocked breaks both ends of the connection. n.mu must be held.
func (c *conn) resetLocked() {
	for _, x := range []*conn{c, c.peer} {
		x.reset = true
		delete(x.net.conns, x)
		x.in.discard()
	}
}

// Read reads the bytes that have crossed the link so far, blocking until
// some are readable. It returns io.EOF once the peer's Close has arrived.
func (c *conn) Read(b []byte) (int, error) {
	n := c.net
	n.mu.Lock()
	defer n.mu.Unlock()
	p := c.in
	for {
		if c.reset {
			return 0, c.opErr("read", syscall.ECONNRESET)
		}
		if c.closed {
			return 0, c.opErr("read", net.ErrClosed)
		}
		now := time.Now()
		wake := c.readDeadline
		if !wake.IsZero() && !now.Before(wake) {
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
		if len(b) == 0 {
			return 0, nil
		}
		cut := n.isCut(p.from, p.to)
		got := 0
		for len(p.chunks) > 0 && got < len(b) {
			h := &p.chunks[0]
			if !h.arrived && (cut || !h.ready(now)) {
				if !cut && (wake.IsZero() || h.readyAt.Before(wake)) {
					wake = h.readyAt
				}
				break
			}
			if h.eof {
				if got == 0 {
					return 0, io.EOF
				}
				break
			}
			k := copy(b[got:], h.data)
			got += k
			h.data = h.data[k:]
			p.size -= k
			if len(h.data) == 0 {
				p.chunks[0] = chunk{}
				p.chunks = p.chunks[1:]
			}
		}
		if got > 0 {
			broadcast(&p.notify) // room for blocked writers
			return got, nil
		}
		n.wait(p.notify, wake)
	}
}

// Write queues b toward the peer. It blocks only while the pipe holds
// maxBuffered bytes.
func (c *conn) Write(b []byte) (int, error) {
	n := c.net
	n.mu.Lock()
	defer n.mu.Unlock()
	p := c.out
	written := 0
	for {
		if c.reset {
			return written, c.opErr("write", syscall.ECONNRESET)
		}
		if c.closed {
			return written, c.opErr("write", net.ErrClosed)
		}
		if c.peer.closed {
			return written, c.opErr("write", syscall.EPIPE)
		}
		now := time.Now()
		if !c.writeDeadline.IsZero() && !now.Before(c.writeDeadline) {
			return written, c.opErr("write", os.ErrDeadlineExceeded)
		}
		if written == len(b) {
			return written, nil
		}
		if space := maxBuffered - p.size; space > 0 {
			k := min(space, len(b)-written)
			var ready time.Time
			if d := n.delay[link{p.from, p.to}]; d > 0 {
				ready = now.Add(d)
			}
			if last := len(p.chunks) - 1; ready.IsZero() && last >= 0 && !p.chunks[last].eof && !p.chunks[last].arrived && p.chunks[last].readyAt.IsZero() {
				p.chunks[last].data = append(p.chunks[last].data, b[written:written+k]...)
			} else {
				p.chunks = append(p.chunks, chunk{data: slices.Clone(b[written : written+k]), readyAt: ready})
			}
			p.size += k
			written += k
			broadcast(&p.notify)
			continue
		}
		n.wait(p.notify, c.writeDeadline)
	}
}

// Close closes this end: its blocked and later calls fail with
// net.ErrClosed, and the peer reads the bytes written so far, then io.EOF.
func (c *conn) Close() error {
	n := c.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.closed {
		return c.opErr("close", net.ErrClosed)
	}
	c.closeLocked()
	return nil
}

// LocalAddr returns this end's endpoint.
func (c *conn) LocalAddr() net.Addr { return Addr(c.local) }

// RemoteAddr returns the peer's endpoint.
func (c *conn) RemoteAddr() net.Addr { return Addr(c.remote) }

// SetDeadline sets the read and write deadlines.
func (c *conn) SetDeadline(t time.Time) error {
	return c.setDeadline(t, true, true)
}

// SetReadDeadline sets the time after which Read fails with a timeout.
func (c *conn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(t, true, false)
}

// SetWriteDeadline sets the time after which Write fails with a timeout.
func (c *conn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(t, false, true)
}

func (c *conn) setDeadline(t time.Time, read, write bool) error {
	n := c.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.closed {
		return c.opErr("set", net.ErrClosed)
	}
	if read {
		c.readDeadline = t
		broadcast(&c.in.notify)
	}
	if write {
		c.writeDeadline = t
		broadcast(&c.out.notify)
	}
	return nil
}
