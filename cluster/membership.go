package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/fsm"
)

// Errors of membership changes.
var (
	// ErrQuorum: the change would leave the voters without a quorum.
	ErrQuorum = errors.New("walmq: the change would lose the quorum")
	// ErrUnknownMember: no server of the configuration has that id.
	ErrUnknownMember = errors.New("walmq: unknown member")
)

// readyState reports whether the node may take writes and a channel
// closed at the next change.
func (n *Node) readyState() (bool, <-chan struct{}) {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	return n.ready.Load(), n.readyCh
}

func (n *Node) setReady(v bool) {
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	if n.ready.Load() == v {
		return
	}
	n.ready.Store(v)
	close(n.readyCh)
	n.readyCh = make(chan struct{})
}

// peerHealth tracks the followers whose heartbeats fail, from Raft's
// observations, so that a removal can tell which voters it would leave.
type peerHealth struct {
	mu      sync.Mutex
	failing map[raft.ServerID]bool
}

func (h *peerHealth) set(id raft.ServerID, failing bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failing == nil {
		h.failing = map[raft.ServerID]bool{}
	}
	if failing {
		h.failing[id] = true
	} else {
		delete(h.failing, id)
	}
}

func (h *peerHealth) clear() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.failing)
}

func (h *peerHealth) isFailing(id raft.ServerID) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failing[id]
}

// watchLeadership follows this node's leadership. On gaining it, the node
// first applies every entry of earlier terms (a barrier), then drops every
// lease (a lease granted by an earlier leader is unknown here: its message
// is delivered again), and only then takes writes. On losing it, writes
// stop and the leases are dropped.
func (n *Node) watchLeadership() {
	defer n.bg.Done()
	obs := make(chan raft.Observation, 64)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(o)
	defer n.raft.DeregisterObserver(o)
	check := make(chan struct{}, 1)
	check <- struct{}{}
	var readyTerm uint64
	for {
		select {
		case <-n.bgCtx.Done():
			// The acker commits its last acks after this returns: the
			// node stays ready until Raft shuts down.
			return
		case ob := <-obs:
			switch d := ob.Data.(type) {
			case raft.FailedHeartbeatObservation:
				n.health.set(d.PeerID, true)
			case raft.ResumedHeartbeatObservation:
				n.health.set(d.PeerID, false)
			case raft.LeaderObservation:
				n.health.clear()
				n.leaderWatch.leaderChanged()
			}
			continue
		case <-n.raft.LeaderCh():
		case <-check:
		}
		if n.raft.State() != raft.Leader {
			if n.ready.Load() {
				n.setReady(false)
				n.resetLeases()
			}
			continue
		}
		term := n.raft.CurrentTerm()
		if n.ready.Load() && term == readyTerm {
			continue // still the same leadership
		}
		n.setReady(false)
		n.resetLeases()
		if err := n.becomeReady(); err == nil {
			readyTerm = term
		} else {
			n.log.Warn("leadership: not ready", "error", err)
			if n.raft.State() == raft.Leader {
				// Try again soon unless leadership moves on.
				select {
				case check <- struct{}{}:
				default:
				}
				select {
				case <-time.After(100 * time.Millisecond):
				case <-n.bgCtx.Done():
				}
			}
		}
	}
}

// becomeReady runs a barrier, so that every entry of earlier terms is
// applied, then opens the node to writes. The barrier's own entry skips
// the state machine, so with the leader's log written behind (writeBehind)
// it may not be on this node's disk yet when the barrier returns; what
// matters holds anyway: every command before it is applied, and the state
// machine applies a command only once it is on this disk.
func (n *Node) becomeReady() error {
	if err := n.raft.Barrier(5 * time.Second).Error(); err != nil {
		return err
	}
	if err := n.Err(); err != nil {
		return err
	}
	n.resetLeases()
	n.fixOwnAddress()
	n.setReady(true)
	n.log.Info("leading", "term", n.raft.Stats()["term"])
	return nil
}

// fixOwnAddress updates this node's Raft address in the configuration
// when it changed (a single node restarted with a network address).
func (n *Node) fixOwnAddress() {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	id, addr := raft.ServerID(n.cfg.NodeID), n.localAddr()
	for _, s := range f.Configuration().Servers {
		if s.ID == id && s.Address != addr && s.Suffrage == raft.Voter {
			if err := n.raft.AddVoter(id, addr, 0, 5*time.Second).Error(); err != nil {
				n.log.Warn("could not update own Raft address", "address", addr, "error", err)
			} else {
				n.log.Info("updated own Raft address", "from", s.Address, "to", addr)
			}
		}
	}
}

func (n *Node) localAddr() raft.ServerAddress {
	if t, ok := n.trans.(interface{ LocalAddr() raft.ServerAddress }); ok {
		return t.LocalAddr()
	}
	return raft.ServerAddress(n.cfg.NodeID)
}

func (n *Node) resetLeases() {
	for _, name := range n.fsm.TopicNames() {
		t, err := n.fsm.Topic(name)
		if err != nil {
			continue
		}
		for i := range t.Partitions {
			if p, err := n.fsm.Partition(name, i); err == nil {
				p.ResetLeases()
			}
		}
	}
}

// VerifyLeader confirms that this node still leads (a quorum answers its
// heartbeat) and has applied the entries of earlier terms: a read made
// after it returns nil is linearizable.
func (n *Node) VerifyLeader(ctx context.Context) error {
	if err := n.usable(); err != nil {
		return err
	}
	if err := waitFuture(ctx, n.raft.VerifyLeader()); err != nil {
		return raftError(err)
	}
	return nil
}

// AddLearner adds a server as a non-voter: it receives the log (or a
// snapshot) but does not vote. Promote makes it a voter once it caught up.
func (n *Node) AddLearner(ctx context.Context, id, addr string) error {
	if err := n.usable(); err != nil {
		return err
	}
	if id == "" || addr == "" {
		return fmt.Errorf("%w: a member needs an id and a Raft address", ErrInvalidArgument)
	}
	if !n.clustered() {
		return fmt.Errorf("%w: this node keeps Raft in memory: restart it with a Raft address (walmq-node --raft-addr) before others join", ErrInvalidArgument)
	}
	for _, s := range n.servers() {
		if s.ID == raft.ServerID(id) && s.Address == raft.ServerAddress(addr) {
			return nil // already a member at that address
		}
	}
	return raftError(waitFuture(ctx, n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, 0)))
}

// Promote makes a member a voter.
func (n *Node) Promote(ctx context.Context, id string) error {
	if err := n.usable(); err != nil {
		return err
	}
	for _, s := range n.servers() {
		if s.ID != raft.ServerID(id) {
			continue
		}
		if s.Suffrage == raft.Voter {
			return nil
		}
		return raftError(waitFuture(ctx, n.raft.AddVoter(s.ID, s.Address, 0, 0)))
	}
	return fmt.Errorf("%w: %q", ErrUnknownMember, id)
}

// RemoveMember removes a server from the configuration. Removing a voter
// is refused when the voters left would not form a quorum of the new
// configuration, counting only those that answer now: the leader's
// heartbeats to them do not fail, and answers (when not nil) confirms
// each of them, e.g. by asking it whom it follows. Without answers, a
// voter that stopped since the last heartbeat still counts as live.
func (n *Node) RemoveMember(ctx context.Context, id string, answers func(ctx context.Context, id string) bool) error {
	if err := n.usable(); err != nil {
		return err
	}
	servers := n.servers()
	var target *raft.Server
	voters, live := 0, 0
	for i, s := range servers {
		if s.ID == raft.ServerID(id) {
			target = &servers[i]
			continue
		}
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		switch {
		case s.ID == raft.ServerID(n.cfg.NodeID):
			live++
		case n.health.isFailing(s.ID):
		case answers == nil || answers(ctx, string(s.ID)):
			live++
		}
	}
	if target == nil {
		return fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	if target.Suffrage == raft.Voter {
		if voters == 0 {
			return fmt.Errorf("%w: %q is the last voter", ErrQuorum, id)
		}
		if live < voters/2+1 {
			return fmt.Errorf("%w: without %q, %d of the %d voters left answer; a quorum is %d", ErrQuorum, id, live, voters, voters/2+1)
		}
	}
	if err := raftError(waitFuture(ctx, n.raft.RemoveServer(target.ID, 0, 0))); err != nil {
		return err
	}
	// The removal is done; forgetting its client address is cleanup (a
	// leader that removed itself has stepped down and cannot).
	if _, err := n.propose(ctx, &fsm.Member{ID: id}); err != nil {
		n.log.Warn("removed member's client address not forgotten", "id", id, "error", err)
	}
	return nil
}

// TransferLeadership hands leadership to the voter id, or to the most
// current voter when id is empty, and returns the new leader's id.
func (n *Node) TransferLeadership(ctx context.Context, id string) (string, error) {
	if err := n.usable(); err != nil {
		return "", err
	}
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		var addr raft.ServerAddress
		for _, s := range n.servers() {
			if s.ID == raft.ServerID(id) && s.Suffrage == raft.Voter {
				addr = s.Address
			}
		}
		if addr == "" {
			return "", fmt.Errorf("%w: no voter %q", ErrUnknownMember, id)
		}
		if id == n.cfg.NodeID {
			return id, nil
		}
		f = n.raft.LeadershipTransferToServer(raft.ServerID(id), addr)
	}
	if err := waitFuture(ctx, f); err != nil {
		return "", raftError(err)
	}
	// The new leader is known once it sends its first heartbeat.
	for {
		if _, lid := n.raft.LeaderWithID(); lid != "" && string(lid) != n.cfg.NodeID {
			return string(lid), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// servers is the latest Raft configuration ("" on error).
func (n *Node) servers() []raft.Server {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	return f.Configuration().Servers
}

// LeaderClientAddr is the client address the leader announced, and the
// leader's id; both empty when no leader is known.
func (n *Node) LeaderClientAddr() (id, addr string) {
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	return string(lid), n.fsm.ClientAddr(string(lid))
}

// Announce records this node's client address in the replicated state;
// only the leader can (followers forward theirs to it).
func (n *Node) Announce(ctx context.Context, id, clientAddr string) error {
	if n.fsm.ClientAddr(id) == clientAddr {
		return nil
	}
	_, err := n.propose(ctx, &fsm.Member{ID: id, ClientAddr: clientAddr})
	return err
}

// NodeID is this node's id.
func (n *Node) NodeID() string { return n.cfg.NodeID }

// waitFuture waits for a Raft future within ctx.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
}
