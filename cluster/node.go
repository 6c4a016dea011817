package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/fsm/snapstore"
	"github.com/walmq/walmq/journal"
)

// Errors of the cluster layer.
var (
	// ErrNotLeader: this node cannot take writes now; retry (on the leader).
	ErrNotLeader = errors.New("walmq: not the leader")
	// ErrClosed: the node is shut down.
	ErrClosed = errors.New("walmq: node closed")
	// ErrTimeout: the write was submitted but its outcome is unknown: it may
	// or may not have been committed. Retry with the same message ids.
	ErrTimeout = errors.New("walmq: write outcome unknown (timed out)")
	// ErrDirInUse: another process has the data directory open.
	ErrDirInUse = errors.New("walmq: data directory in use by another process")
)

// Config configures a node. The zero value of every field but Dir gives a
// single-node broker with the defaults.
type Config struct {
	// Dir is the data directory: raft/, snapshots/, topics/.
	Dir string
	// NodeID names this node in the Raft configuration (default "node1").
	NodeID string
	// Logger (default none).
	Logger hclog.Logger
	// Journal configures the partition journals.
	Journal journal.Options
	// MaxMessageBytes bounds one message (default 1 MiB).
	MaxMessageBytes int
	// Publish batching: a Raft entry takes at most MaxBatchMessages
	// messages (default 4096) and MaxBatchBytes bytes (default 4 MiB),
	// waiting at most Linger (default 0: take what is queued) for more;
	// PipelineDepth entries per partition are in flight at once (default 4).
	MaxBatchMessages int
	MaxBatchBytes    int
	Linger           time.Duration
	PipelineDepth    int
	// SyncLeaderLog makes the leader write its raft log before it
	// replicates, as hashicorp/raft does alone. By default the leader
	// writes in parallel with its followers (see writeBehind): the same
	// guarantee, one log write less on each commit's path.
	SyncLeaderLog bool
	// CommitEvery and CommitMaxDelay batch acks: they are committed when
	// CommitEvery are pending (default 1024) or the oldest has waited
	// CommitMaxDelay (default 20 ms).
	CommitEvery    int
	CommitMaxDelay time.Duration
	// RetentionInterval is how often retention limits are enforced
	// (default 1 minute).
	RetentionInterval time.Duration
	// DefaultGroup configures the groups Fetch creates.
	DefaultGroup fsm.GroupConfig
	// SnapshotThreshold is the number of Raft entries between snapshots
	// (default 8192); TrailingLogs the entries kept behind a snapshot
	// (default 10240).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// SnapshotInterval is how often Raft checks SnapshotThreshold
	// (default 10 s).
	SnapshotInterval time.Duration

	// RaftAddr is the host:port Raft listens on for its peers. Empty (and
	// no StreamLayer): a single node whose Raft traffic stays in memory;
	// it cannot grow into a cluster until restarted with an address.
	RaftAddr string
	// RaftAdvertise is the address peers dial (default RaftAddr).
	RaftAdvertise string
	// StreamLayer carries Raft traffic instead of TCP on RaftAddr (tests
	// use cluster/faultnet); its Addr is the advertised address.
	StreamLayer raft.StreamLayer
	// Peers are the voters a new data directory bootstraps with, this node
	// among them; every node of a new cluster gets the same list. Empty: a
	// new directory bootstraps as a single voter. An existing directory
	// ignores it: membership then changes only through Join and Remove.
	Peers []Peer
	// NoBootstrap leaves a new data directory without any configuration:
	// the node waits to be added to a running cluster (AddLearner on its
	// leader) instead of electing itself.
	NoBootstrap bool
	// HeartbeatTimeout and ElectionTimeout of Raft when it has peers
	// (default 500 ms each; a single voter elects itself at once).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration

	// The scrubber (scrub.go) verifies every sealed segment once after
	// start and then every ScrubInterval (default 24 h; negative: only
	// once), reading at most ScrubBytesPerSecond (default 64 MiB/s), and
	// repairs damaged segments from peers.
	ScrubInterval       time.Duration
	ScrubBytesPerSecond int64
}

// Peer is one server of a cluster: its node id and Raft address.
type Peer struct {
	ID, Addr string
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, errors.New("cluster: Config.Dir is required")
	}
	if c.NodeID == "" {
		c.NodeID = "node1"
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = fsm.DefaultMaxMessageBytes
	}
	if c.MaxBatchMessages == 0 {
		c.MaxBatchMessages = 4096
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 4 << 20
	}
	if c.PipelineDepth == 0 {
		c.PipelineDepth = 4
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = 8192
	}
	if c.SnapshotInterval <= 0 {
		c.SnapshotInterval = 10 * time.Second
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = 10240
	}
	if c.CommitEvery <= 0 {
		c.CommitEvery = 1024
	}
	if c.CommitMaxDelay <= 0 {
		c.CommitMaxDelay = 20 * time.Millisecond
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = time.Minute
	}
	if c.DefaultGroup.AckWait <= 0 {
		c.DefaultGroup.AckWait = 30 * time.Second
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 500 * time.Millisecond
	}
	if c.ElectionTimeout <= 0 {
		c.ElectionTimeout = 500 * time.Millisecond
	}
	if c.RaftAdvertise == "" {
		c.RaftAdvertise = c.RaftAddr
	}
	c.scrubDefaults()
	if (len(c.Peers) > 0 || c.NoBootstrap) && c.RaftAddr == "" && c.StreamLayer == nil {
		return c, errors.New("cluster: Peers and NoBootstrap need a RaftAddr")
	}
	if len(c.Peers) > 0 {
		seen, self := map[string]bool{}, false
		for _, p := range c.Peers {
			if p.ID == "" || p.Addr == "" || seen[p.ID] {
				return c, fmt.Errorf("cluster: bad or repeated peer %q=%q", p.ID, p.Addr)
			}
			seen[p.ID] = true
			self = self || p.ID == c.NodeID
		}
		if !self {
			return c, fmt.Errorf("cluster: node %q is not among its peers", c.NodeID)
		}
	}
	if c.MaxBatchBytes < c.MaxMessageBytes {
		return c, fmt.Errorf("cluster: MaxBatchBytes %d is below MaxMessageBytes %d", c.MaxBatchBytes, c.MaxMessageBytes)
	}
	if c.Journal.MaxBatchBytes == 0 {
		c.Journal.MaxBatchBytes = journal.DefaultMaxBatchBytes
	}
	// A publish entry becomes one journal record: the journal must take
	// the largest batch the batcher forms.
	c.Journal.MaxBatchBytes = max(c.Journal.MaxBatchBytes, c.MaxBatchBytes+c.MaxBatchMessages*64)
	return c, nil
}

// Node is one walmq node: the Raft group member, its state machine and the
// leader-side publish batching.
type Node struct {
	cfg  Config
	log  hclog.Logger
	raft *raft.Raft
	fsm  *fsm.FSM
	bolt *raftboltdb.BoltStore
	wlog *writeBehind // in front of bolt: the leader's log writes
	// raftp is raft once NewRaft has returned, for the log's writer.
	raftp atomic.Pointer[raft.Raft]
	snaps *snapstore.Store
	trans raft.Transport

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // batchers and their waiters

	// Background work that needs Raft (ack commits, retention) stops
	// first on Close.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
	acks     *acker
	scrub    *scrubber
	rr       atomic.Uint64 // where the next Fetch starts among partitions
	pubRR    atomic.Uint64 // the next partition for keyless messages

	// ready is set once this node leads and has applied every entry of
	// the terms before its own; writes and leases need it.
	ready atomic.Bool
	// readyCh is closed and replaced on every change of ready.
	readyMu sync.Mutex
	readyCh chan struct{}
	health  peerHealth
	// leaderWatch signals WatchLeader's subscribers on a leader change.
	leaderWatch leaderWatchers

	mu       sync.Mutex
	batchers map[partKey]*batcher
	closed   bool
	fatal    chan struct{} // closed when the state machine or the raft log fails
	fatalOne sync.Once
}

// Open starts a node in cfg.Dir. A new directory is bootstrapped as a
// single-voter Raft group; an existing one recovers: the state machine
// loads its latest snapshot's manifest, the journals recover their tails,
// and Raft replays the entries after the snapshot before Open returns.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger, batchers: map[partKey]*batcher{}, fatal: make(chan struct{}),
		readyCh: make(chan struct{})}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.bgCtx, n.bgCancel = context.WithCancel(context.Background())
	n.acks = newAcker(n)
	n.scrub = newScrubber(n)
	n.cfg.Journal.OnDamage = n.scrub.damaged
	if err := n.open(); err != nil {
		n.shutdown()
		return nil, err
	}
	n.scrub.start()
	n.bg.Add(3)
	go n.acks.run()
	go n.retentionLoop()
	go n.watchLeadership()
	if !n.clustered() || (len(cfg.Peers) == 0 && !cfg.NoBootstrap && n.singleVoter()) {
		if err := n.waitReady(ctx); err != nil {
			n.shutdown()
			return nil, err
		}
	}
	return n, nil
}

// fail marks the node failed: it must be closed.
func (n *Node) fail() { n.fatalOne.Do(func() { close(n.fatal) }) }

// singleVoter reports whether this node is the only voter.
func (n *Node) singleVoter() bool {
	servers := n.servers()
	voters := 0
	for _, s := range servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	return voters == 1 && slices.ContainsFunc(servers, func(s raft.Server) bool {
		return s.Suffrage == raft.Voter && string(s.ID) == n.cfg.NodeID
	})
}

// clustered reports whether Raft talks to peers over a network.
func (n *Node) clustered() bool { return n.cfg.RaftAddr != "" || n.cfg.StreamLayer != nil }

func (n *Node) open() error {
	cfg := n.cfg
	for _, d := range []string{"raft", "snapshots", "topics"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	var err error
	n.bolt, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft", "raft.db"),
		BoltOptions: &bolt.Options{Timeout: time.Second}})
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("%w: %s", ErrDirInUse, cfg.Dir)
	}
	if err != nil {
		return fmt.Errorf("cluster: open raft log: %w", err)
	}
	n.wlog = newWriteBehind(n.bolt, func() bool {
		r := n.raftp.Load()
		return !cfg.SyncLeaderLog && r != nil && r.State() == raft.Leader
	}, func(err error) {
		n.log.Error("raft log write failed; the node must stop", "error", err)
		n.fail()
	})
	n.snaps, err = snapstore.New(filepath.Join(cfg.Dir, "snapshots"), 2, cfg.Logger.Named("snapshots"))
	if err != nil {
		return fmt.Errorf("cluster: open snapshot store: %w", err)
	}
	n.snaps.SetFileCheck(fsm.CheckSnapshotFile) // never ship a damaged segment
	n.fsm, err = fsm.New(fsm.Options{
		Dir:             filepath.Join(cfg.Dir, "topics"),
		Journal:         cfg.Journal,
		MaxMessageBytes: cfg.MaxMessageBytes,
		Logger:          cfg.Logger.Named("fsm"),
		OnFatal:         func(error) { n.fail() },
		WaitDurable:     n.wlog.waitDurable,
	})
	if err != nil {
		return err
	}
	if err := n.loadLatestSnapshot(); err != nil {
		return err
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = cfg.Logger.Named("raft")
	rc.NoSnapshotRestoreOnStart = true
	// A buffered apply channel lets the batchers queue entries while the
	// leader loop writes the previous ones, which it then commits as one
	// group. A future still in that buffer at shutdown is never answered
	// (hashicorp/raft#498): shutdown therefore stops the batchers and
	// waits for their entries before it shuts Raft down.
	rc.BatchApplyCh = true
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	// Check often: the replay after a crash is bounded by what the last
	// snapshot left behind, and a snapshot costs a link per segment.
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	// Followers learn the commit index within CommitTimeout when the
	// leader is idle.
	rc.CommitTimeout = 5 * time.Millisecond
	var addr raft.ServerAddress
	if n.clustered() {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
		rc.ElectionTimeout = cfg.ElectionTimeout
		rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
		// Timeout bounds an RPC's I/O (snapshots get more in proportion
		// to their size): a partitioned peer's heartbeats fail after it,
		// which is what RemoveMember's quorum check sees.
		tc := &raft.NetworkTransportConfig{Stream: cfg.StreamLayer, MaxPool: 3, Timeout: 2 * time.Second,
			Logger: cfg.Logger.Named("raft-net"),
			// 1 turns off pipelined replication. With raft v1.7.3's
			// pipeline, a follower answering Success=false can leave the
			// leader's sender parked forever on an unbuffered channel: the
			// follower gets no more entries and Shutdown hangs (seen in
			// TestClusterFaults; described in grafana/pyroscope#5518). Each
			// AppendEntries still carries every entry queued, up to
			// MaxAppendEntries.
			MaxRPCsInFlight: 1}
		if tc.Stream == nil {
			tcp, err := newTCPStream(cfg.RaftAddr, cfg.RaftAdvertise)
			if err != nil {
				return err
			}
			tc.Stream = tcp
		}
		nt := raft.NewNetworkTransportWithConfig(tc)
		n.trans, addr = &clampTransport{Transport: nt, durable: n.wlog.durable}, nt.LocalAddr()
	} else {
		// One voter: nobody to wait for, so elect at once.
		rc.HeartbeatTimeout = 50 * time.Millisecond
		rc.ElectionTimeout = 50 * time.Millisecond
		rc.LeaderLeaseTimeout = 50 * time.Millisecond
		addr, n.trans = raft.NewInmemTransport(raft.ServerAddress(cfg.NodeID))
	}
	has, err := raft.HasExistingState(n.bolt, n.bolt, n.snaps)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	if !has && !cfg.NoBootstrap {
		conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: rc.LocalID, Address: addr}}}
		if len(cfg.Peers) > 0 {
			conf.Servers = nil
			for _, p := range cfg.Peers {
				conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
			}
		}
		if err := raft.BootstrapCluster(rc, n.bolt, n.bolt, n.snaps, n.trans, conf); err != nil {
			return fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	// The newest entries stay in memory: replication reads back every
	// entry it sends, and a bolt read costs a transaction.
	logs := newLogCache(n.wlog, 4096, 64<<20)
	n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.bolt, n.snaps, n.trans)
	if err != nil {
		return fmt.Errorf("cluster: start raft: %w", err)
	}
	n.raftp.Store(n.raft)
	return nil
}

// loadLatestSnapshot gives the state machine the manifest of the snapshot
// Raft will start from (the newest; with NoSnapshotRestoreOnStart Raft
// only sets its applied index to it).
func (n *Node) loadLatestSnapshot() error {
	metas, err := n.snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	_, rc, err := n.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("cluster: open snapshot %s: %w", metas[0].ID, err)
	}
	defer rc.Close()
	r, ok := snapstore.AsReader(rc)
	if !ok {
		return fmt.Errorf("cluster: snapshot store returned %T", rc)
	}
	if err := n.fsm.LoadLocal(r); err != nil {
		return fmt.Errorf("cluster: load snapshot %s: %w", metas[0].ID, err)
	}
	n.log.Info("loaded snapshot", "id", metas[0].ID, "index", metas[0].Index)
	return nil
}

// waitReady waits until this node leads and has applied every entry of
// its log, so that no read sees a state in the middle of the replay.
func (n *Node) waitReady(ctx context.Context) error {
	for {
		ready, ch := n.readyState()
		if ready {
			return n.Err()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: waiting for leadership and replay: %w", ctx.Err())
		case <-n.fatal:
			return n.Err()
		case <-ch:
		}
	}
}

// FSM is the node's state machine, for reads.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Raft is the node's Raft instance.
func (n *Node) Raft() *raft.Raft { return n.raft }

// IsLeader reports whether this node leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Failed is closed when the state machine or the raft log hit a storage
// error; Err says which. The node must then be closed.
func (n *Node) Failed() <-chan struct{} { return n.fatal }

// Err is the storage error that failed the node, if any: the state
// machine's, or else the raft log's (a failed write of the leader's own
// entries, which may never reach the state machine).
func (n *Node) Err() error {
	if err := n.fsm.Err(); err != nil {
		return err
	}
	if n.wlog != nil {
		return n.wlog.Err()
	}
	return nil
}

// Apply commits one command through Raft and returns the state machine's
// result. The context bounds the wait: when it expires after the entry was
// submitted, the outcome is unknown (ErrTimeout wrapping the context's
// error).
func (n *Node) Apply(ctx context.Context, cmd any) (any, error) {
	switch cmd.(type) {
	case *fsm.ResetGroup, *fsm.DeleteGroup, *fsm.DeleteTopic:
		// Acks made before these must not be committed after them, where
		// they would settle offsets of the reset or re-created group.
		if err := n.acks.flush(ctx); err != nil {
			return nil, err
		}
	}
	return n.propose(ctx, cmd)
}

// propose commits one command through Raft and returns the state
// machine's result.
func (n *Node) propose(ctx context.Context, cmd any) (any, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	if err := n.usable(); err != nil {
		return nil, err
	}
	f := n.raft.Apply(data, 0)
	return n.await(ctx, f)
}

func (n *Node) usable() error {
	select {
	case <-n.ctx.Done():
		return ErrClosed
	case <-n.fatal:
		return n.Err()
	default:
	}
	if !n.ready.Load() || n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	return nil
}

// await waits for an apply future and unpacks the state machine's answer.
func (n *Node) await(ctx context.Context, f raft.ApplyFuture) (any, error) {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return nil, raftError(err)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	case <-n.ctx.Done():
		return nil, fmt.Errorf("%w: node closing", ErrTimeout)
	}
	if err, ok := f.Response().(error); ok {
		return nil, err
	}
	return f.Response(), nil
}

func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Refused before it reached the log.
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		// In the log, not known to be committed: a later leader may
		// still commit it.
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// Status describes the node and its Raft group.
type Status struct {
	NodeID       string
	Role         string // leader, follower, candidate, shutdown
	Leader       string // the leader's id, "" if unknown
	Term         uint64
	AppliedIndex uint64
	Members      []Member
	// Damaged lists the damaged segments not yet repaired; SegmentsRepaired
	// and ScrubPasses count repairs and complete scrub passes since start.
	Damaged          []DamagedSegment
	SegmentsRepaired uint64
	ScrubPasses      uint64
}

// Member is one server of the Raft configuration.
type Member struct {
	ID, Address, Suffrage string
	ClientAddr            string // as announced; "" until then
	Leader                bool
	// Unreachable: the leader's heartbeats to it fail (leader's view).
	Unreachable bool
}

// Status reports the node's role, its leader and the members.
func (n *Node) Status() Status {
	_, leaderID := n.raft.LeaderWithID()
	st := Status{NodeID: n.cfg.NodeID, Role: strings.ToLower(n.raft.State().String()), Leader: string(leaderID),
		AppliedIndex: n.fsm.AppliedIndex()}
	if t, err := strconv.ParseUint(n.raft.Stats()["term"], 10, 64); err == nil {
		st.Term = t
	}
	st.Damaged, st.SegmentsRepaired, st.ScrubPasses = n.scrub.status()
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Members = append(st.Members, Member{ID: string(s.ID), Address: string(s.Address),
				Suffrage: strings.ToLower(s.Suffrage.String()), Leader: s.ID == leaderID,
				ClientAddr: n.fsm.ClientAddr(string(s.ID)), Unreachable: n.health.isFailing(s.ID)})
		}
	}
	return st
}

// Snapshot takes a Raft snapshot now.
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Close stops publishing (queued publishes get ErrClosed), shuts Raft down
// and closes the journals and the Raft log. In-flight entries either
// commit or fail; their callers are answered.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	return n.shutdown()
}

func (n *Node) shutdown() error {
	n.bgCancel()
	n.bg.Wait() // the acker commits what is pending before it returns
	// Stop taking publishes and let the entries in flight finish while
	// Raft still runs: a future still in raft's apply queue when it shuts
	// down is never answered (hashicorp/raft#498).
	n.cancel()
	n.wg.Wait()
	var err error
	if n.raft != nil && n.Err() == nil {
		// A snapshot now makes the next start replay nothing. It costs a
		// link per segment file.
		if serr := n.raft.Snapshot().Error(); serr != nil && !errors.Is(serr, raft.ErrNothingNewToSnapshot) {
			n.log.Warn("snapshot at shutdown failed", "error", serr)
		}
	}
	if n.raft != nil {
		err = n.raft.Shutdown().Error()
	}
	if n.fsm != nil {
		if cerr := n.fsm.Close(); err == nil {
			err = cerr
		}
	}
	if n.wlog != nil {
		if cerr := n.wlog.Close(); err == nil {
			err = cerr
		}
	}
	if n.bolt != nil {
		if cerr := n.bolt.Close(); err == nil {
			err = cerr
		}
	}
	if t, ok := n.trans.(io.Closer); ok {
		t.Close()
	}
	return err
}
