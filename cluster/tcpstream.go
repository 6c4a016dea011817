package cluster

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// tcpStream is Raft's TCP stream layer, except that Close also closes
// every connection it dialed or accepted. raft.NetworkTransport.Close only
// closes the listener: its pooled connections, and the goroutines that
// serve the peers' connections, would live on until the process exits.
type tcpStream struct {
	l   net.Listener
	adv net.Addr

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newTCPStream(bind string, advertise string) (*tcpStream, error) {
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listen on %s: %w", bind, err)
	}
	var adv net.Addr = l.Addr()
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("cluster: raft advertise address: %w", err)
		}
		adv = a
	}
	if a, ok := adv.(*net.TCPAddr); !ok || a.IP == nil || a.IP.IsUnspecified() || a.Port == 0 {
		l.Close()
		return nil, fmt.Errorf("cluster: raft address %s cannot be dialed by peers: give an advertise address", adv)
	}
	return &tcpStream{l: l, adv: adv, conns: map[net.Conn]struct{}{}}, nil
}

func (s *tcpStream) track(c net.Conn) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	s.conns[c] = struct{}{}
	return &trackedConn{Conn: c, s: s}, nil
}

// Dial implements raft.StreamLayer.
func (s *tcpStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil {
		return nil, err
	}
	return s.track(c)
}

// Accept implements net.Listener.
func (s *tcpStream) Accept() (net.Conn, error) {
	c, err := s.l.Accept()
	if err != nil {
		return nil, err
	}
	return s.track(c) // net.ErrClosed once the stream is closed
}

// Close closes the listener and every connection.
func (s *tcpStream) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	return s.l.Close()
}

// Addr implements net.Listener: the advertised address.
func (s *tcpStream) Addr() net.Addr { return s.adv }

type trackedConn struct {
	net.Conn
	s    *tcpStream
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c.Conn)
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}
