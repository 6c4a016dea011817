package main

import (
	"fmt"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// clientName is the source name of connections the harness itself opens
// (its clients, when they reach a node at its announced address).
const clientName = "client"

// Net is the network between the nodes, owned by the harness. A node is
// reached by the others at two addresses, its Raft address and the client
// address it announces (followers forward requests to the leader's), and
// both are harness listeners. A connection accepted there is attributed to
// the process that opened it (connOwner) and handed to the proxy of its
// link (from, to): so every link, in each direction, can be cut, healed
// or delayed on its own.
//
// A link from -> to carries the connections from opens to to: the
// requests of from and their answers. Cutting i -> j and j -> i separates
// i and j.
type Net struct {
	ids       []string
	listeners []net.Listener
	links     map[linkKey]*Proxy
	routing   sync.WaitGroup

	mu   sync.Mutex
	pids map[int]string // live node processes, and the harness, by pid

	unattributed atomic.Int64 // connections nobody could be found for
}

type linkKey struct {
	from, to string
	kind     int // raftKind or apiKind
}

const (
	raftKind = iota
	apiKind
)

// endpoint is where a node really listens: its private Raft and client
// addresses.
type endpoint struct {
	id         string
	raft, api  string
	publicRaft string // filled by NewNet: where the others reach its Raft
	publicAPI  string // and its client address
}

// NewNet opens the proxies' listeners on 127.0.0.1 for the nodes eps and
// fills in their public addresses.
func NewNet(eps []*endpoint) (*Net, error) {
	n := &Net{links: map[linkKey]*Proxy{},
		pids: map[int]string{os.Getpid(): clientName}}
	froms := []string{clientName}
	for _, ep := range eps {
		n.ids = append(n.ids, ep.id)
		froms = append(froms, ep.id)
	}
	type serving struct {
		ln   net.Listener
		to   string
		kind int
	}
	var serve []serving
	for _, ep := range eps {
		var pub [2]string
		for kind, target := range []string{ep.raft, ep.api} {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				n.Close()
				return nil, err
			}
			n.listeners = append(n.listeners, ln)
			pub[kind] = ln.Addr().String()
			for _, from := range froms {
				n.links[linkKey{from, ep.id, kind}] = NewProxy(target)
			}
			serve = append(serve, serving{ln, ep.id, kind})
		}
		ep.publicRaft, ep.publicAPI = pub[raftKind], pub[apiKind]
	}
	for _, s := range serve { // links is complete: route connections
		n.routing.Add(1)
		go n.accept(s.ln, s.to, s.kind)
	}
	return n, nil
}

// SetPid records that node id now runs as process pid (0: it is down).
func (n *Net) SetPid(id string, pid int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for p, name := range n.pids {
		if name == id {
			delete(n.pids, p)
		}
	}
	if pid != 0 {
		n.pids[pid] = id
	}
}

func (n *Net) accept(ln net.Listener, to string, kind int) {
	defer n.routing.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		n.routing.Add(1)
		go func() {
			defer n.routing.Done()
			n.route(c, to, kind)
		}()
	}
}

// route hands c, accepted for node to, to the proxy of its link.
func (n *Net) route(c net.Conn, to string, kind int) {
	n.mu.Lock()
	pids := make([]int, 0, len(n.pids))
	for p := range n.pids {
		pids = append(pids, p)
	}
	n.mu.Unlock()
	pid, err := connOwner(c, pids)
	n.mu.Lock()
	from, ok := n.pids[pid]
	n.mu.Unlock()
	if err != nil || !ok {
		n.unattributed.Add(1)
		c.Close()
		return
	}
	n.links[linkKey{from, to, kind}].Handle(c)
}

// Unattributed is the number of connections closed because no node (nor
// the harness) could be found to have opened them.
func (n *Net) Unattributed() int64 { return n.unattributed.Load() }

func (n *Net) each(from, to string, f func(*Proxy)) {
	for kind := range 2 {
		if p := n.links[linkKey{from, to, kind}]; p != nil {
			f(p)
		}
	}
}

// Cut cuts the link from -> to: the connections from opened to to are
// closed and new ones hang.
func (n *Net) Cut(from, to string) { n.each(from, to, (*Proxy).Cut) }

// Heal heals the link from -> to.
func (n *Net) Heal(from, to string) { n.each(from, to, (*Proxy).Heal) }

// Delay delays the traffic of the link from -> to by d in each direction.
func (n *Net) Delay(from, to string, d time.Duration) {
	n.each(from, to, func(p *Proxy) { p.Delay(d) })
}

// Loss makes the traffic of the link from -> to, in each direction, lose
// a chunk with probability prob, which then arrives rto late.
func (n *Net) Loss(from, to string, prob float64, rto time.Duration) {
	n.each(from, to, func(p *Proxy) { p.Loss(prob, rto) })
}

// Isolate cuts every link between id and the other nodes, both ways.
// Clients still reach it.
func (n *Net) Isolate(id string) {
	for _, other := range n.ids {
		if other != id {
			n.Cut(id, other)
			n.Cut(other, id)
		}
	}
}

// HealAll heals every link and removes every delay and loss.
func (n *Net) HealAll() {
	for _, p := range n.links {
		p.Heal()
		p.Delay(0)
		p.Loss(0, 0)
	}
}

// CutLinks lists the links cut now, as "from->to", sorted.
func (n *Net) CutLinks() []string {
	seen := map[string]bool{}
	for k, p := range n.links {
		if p.IsCut() {
			seen[fmt.Sprintf("%s->%s", k.from, k.to)] = true
		}
	}
	var out []string
	for l := range seen {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// Close closes the listeners and every proxy.
func (n *Net) Close() {
	for _, ln := range n.listeners {
		ln.Close()
	}
	n.routing.Wait()
	for _, p := range n.links {
		p.Close()
	}
}
