package walmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/transport"
)

// DefaultAddr is where a node listens by default.
const DefaultAddr = "127.0.0.1:7420"

// DialOptions configure a Client.
type DialOptions struct {
	// MaxBatch bounds the messages PublishAsync sends in one request
	// (default 1000).
	MaxBatch int
	// Linger is how long PublishAsync waits for more messages before
	// sending a batch that is not full (default 0: send what is queued).
	Linger time.Duration
	// MaxRequestBytes bounds one request or response (default 64 MiB).
	MaxRequestBytes int
	// RetryFor is how long Publish and PublishTo keep retrying through a
	// leader change or the loss of the node they talk to (default 15 s,
	// from the first failure; negative: no retries). A publish refused
	// before any of it was stored (no leader) is always retried; one whose outcome is unknown (the
	// connection or the leadership was lost while it committed) only when
	// every message has an ID, so that the topic's dedup window turns a
	// second copy into a duplicate ack. PublishAsync does not retry: it
	// reports each batch's error, and the caller retries with the same
	// IDs, in the order it wants.
	RetryFor time.Duration
	// AutoID gives every published message without an ID a unique one
	// (this client's random prefix and a counter), so that every publish
	// can be retried. IDs cost memory in the topic's dedup table for its
	// dedup window.
	AutoID bool
}

// Client is a Broker on a remote node, over gRPC: the same interface as
// the embedded broker.
type Client struct {
	opts DialOptions
	conn *grpc.ClientConn
	api  pb.WalmqClient

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	idPrefix string // AutoID's; "" when off
	idSeq    atomic.Uint64

	// With a list of nodes: the resolver feeding the channel, and the
	// addresses, leader first (see avoidCurrent).
	res       *manual.Resolver
	addrs     []string
	wd        *watcher             // the calls in flight (client_watch.go); nil with one address
	excluded  map[string]time.Time // addresses left out of the list, until when (avoidMu)
	avoidMu   sync.Mutex
	lastAvoid time.Time
	resDone   bool

	mu        sync.Mutex
	queues    map[queueKey]*pubQueue
	stream    *pubStream
	closed    bool
	flushWG   sync.WaitGroup
	streamsWG sync.WaitGroup
}

var _ Broker = (*Client)(nil)

// Dial connects to a node at addr: "host:port", "unix:///path/to.sock" for
// a unix socket, or a comma-separated list of host:port addresses of a
// cluster's nodes. It returns once a node answers. A single address talks
// to that node only (a follower forwards what it cannot serve). With a
// list, the client starts with the leader, learns the client addresses the
// members announced, and when the node it talks to goes away it moves to
// the next one that answers.
func Dial(ctx context.Context, addr string, opts DialOptions) (*Client, error) {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1000
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 64 << 20
	}
	if opts.RetryFor == 0 {
		opts.RetryFor = 15 * time.Second
	}
	var addrs []string
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w: no address to dial", ErrInvalidArgument)
	}
	if len(addrs) > 1 {
		for _, a := range addrs {
			if strings.HasPrefix(a, "unix:") {
				return nil, fmt.Errorf("%w: a list of nodes takes host:port addresses, not %s", ErrInvalidArgument, a)
			}
		}
	}
	var self atomic.Pointer[Client] // for the interceptor, once dialed
	interceptors := []grpc.UnaryClientInterceptor{retryInterceptor(opts.RetryFor, func() {
		if c := self.Load(); c != nil {
			c.avoidCurrent()
		}
	})}
	var wd *watcher
	if len(addrs) > 1 {
		wd = newWatcher()
		interceptors = append(interceptors, wd.interceptor()) // each try
	}
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(opts.MaxRequestBytes), grpc.MaxCallSendMsgSize(opts.MaxRequestBytes)),
		grpc.WithChainUnaryInterceptor(interceptors...),
		// A node that stops answering (paused, or cut off without a
		// reset) is noticed by keepalive, at best within 12 s: gRPC pings
		// at most every 10 s. A client of a cluster also watches its calls
		// (client_watch.go) and moves on within about 2 s.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 2 * time.Second, PermitWithoutStream: true})}
	if wd != nil {
		dialOpts = append(dialOpts, grpc.WithContextDialer(wd.dialer), grpc.WithStatsHandler(wd))
	}
	var (
		target string
		res    *manual.Resolver
	)
	if len(addrs) == 1 {
		// One node, and only it: what it cannot serve it forwards.
		target = transport.DialTarget(addrs[0])
	} else {
		// A static list, tried in order by pick_first: the channel moves
		// to the next address when the one it uses fails.
		res = manual.NewBuilderWithScheme("walmq")
		res.InitialState(resolver.State{Addresses: resolverAddrs(addrs)})
		target = "walmq:///cluster"
	}
	withRes := func(r *manual.Resolver) []grpc.DialOption {
		if r == nil {
			return dialOpts
		}
		return append(dialOpts[:len(dialOpts):len(dialOpts)], grpc.WithResolvers(r))
	}
	conn, err := grpc.NewClient(target, withRes(res)...)
	if err != nil {
		return nil, fmt.Errorf("walmq: dial %s: %w", addr, err)
	}
	c := &Client{opts: opts, conn: conn, api: pb.NewWalmqClient(conn), queues: map[queueKey]*pubQueue{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	st, err := c.api.Status(ctx, &pb.StatusRequest{}, grpc.WaitForReady(len(addrs) > 1))
	if err != nil {
		conn.Close()
		c.cancel()
		return nil, fmt.Errorf("walmq: dial %s: %w", addr, transport.FromStatus(err))
	}
	if res != nil {
		// The leader first (a follower would forward every request to
		// it), then the addresses given, then the other members'.
		var ordered []string
		known := map[string]bool{}
		add := func(a string) {
			if a != "" && !known[a] && !strings.HasPrefix(a, "unix:") {
				known[a] = true
				ordered = append(ordered, a)
			}
		}
		for _, m := range st.GetMembers() {
			if m.GetLeader() {
				add(m.GetClientAddress())
			}
		}
		for _, a := range addrs {
			add(a)
		}
		for _, m := range st.GetMembers() {
			add(m.GetClientAddress())
		}
		if ordered[0] != addrs[0] {
			// pick_first keeps a connection it has: start over with the
			// leader first.
			conn.Close()
			res = manual.NewBuilderWithScheme("walmq")
			res.InitialState(resolver.State{Addresses: resolverAddrs(ordered)})
			if conn, err = grpc.NewClient(target, withRes(res)...); err != nil {
				c.cancel()
				return nil, fmt.Errorf("walmq: dial %s: %w", addr, err)
			}
			c.conn, c.api = conn, pb.NewWalmqClient(conn)
		} else {
			res.UpdateState(resolver.State{Addresses: resolverAddrs(ordered)})
		}
		c.res, c.addrs, c.wd = res, ordered, wd
		c.streamsWG.Add(1)
		go c.watch()
	}
	self.Store(c)
	if opts.AutoID {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			conn.Close()
			c.cancel()
			return nil, err
		}
		c.idPrefix = hex.EncodeToString(b[:]) + "-"
	}
	return c, nil
}

func resolverAddrs(addrs []string) []resolver.Address {
	out := make([]resolver.Address, len(addrs))
	for i, a := range addrs {
		out[i] = resolver.Address{Addr: a}
	}
	return out
}

// withIDs gives messages without an ID one of this client's, when AutoID
// is on; it copies msgs rather than changing the caller's slice.
func (c *Client) withIDs(msgs []Message) []Message {
	if c.idPrefix == "" {
		return msgs
	}
	var out []Message
	for i := range msgs {
		if msgs[i].ID != "" {
			continue
		}
		if out == nil {
			out = append([]Message(nil), msgs...)
		}
		out[i].ID = c.nextID()
	}
	if out == nil {
		return msgs
	}
	return out
}

// nextID is a new AutoID.
func (c *Client) nextID() string {
	return c.idPrefix + strconv.FormatUint(c.idSeq.Add(1), 36)
}

// retryable reports whether a failed publish of msgs may be sent again:
// always when it was refused before being stored, and when its outcome is
// unknown only if every message has an ID (a stored copy then makes the
// retry a duplicate ack, within the topic's dedup window).
func retryable(err error, msgs []Message) bool {
	if errors.Is(err, ErrNotLeader) {
		return true
	}
	if !errors.Is(err, ErrTimeout) && !errors.Is(err, transport.ErrUnavailable) && !errors.Is(err, ErrClosed) {
		return false
	}
	for i := range msgs {
		if msgs[i].ID == "" {
			return false
		}
	}
	return true
}

// publishRetry sends req until it succeeds, fails for good, ctx is done or
// RetryFor has passed.
func (c *Client) publishRetry(ctx context.Context, req *pb.PublishRequest, msgs []Message) ([]PublishAck, error) {
	// The first try is bounded by ctx alone; the retries by RetryFor from
	// the first failure, and they wait for a node that answers.
	r, err := c.api.Publish(ctx, req)
	if err == nil {
		return acksFrom(r), nil
	}
	err = wrap(err)
	// Once one try's outcome is unknown, the publish's is, whatever later
	// tries answer: a refusal of a retry says nothing of the first copy.
	unknown := !errors.Is(err, ErrNotLeader)
	deadline := time.Now().Add(c.opts.RetryFor)
	backoff := 20 * time.Millisecond
	for {
		if c.opts.RetryFor < 0 || !retryable(err, msgs) || ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			if unknown && errors.Is(err, ErrNotLeader) {
				return nil, fmt.Errorf("%w: an earlier try's outcome is unknown; the last try: %v", ErrTimeout, err)
			}
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
		actx, cancel := context.WithDeadline(ctx, deadline)
		r, err = c.api.Publish(actx, req, grpc.WaitForReady(true))
		cancel()
		if err == nil {
			return acksFrom(r), nil
		}
		err = wrap(err)
		unknown = unknown || !errors.Is(err, ErrNotLeader)
		if errors.Is(err, ErrNotLeader) {
			c.avoidCurrent()
		}
	}
}

// Close sends what PublishAsync queued, waits for the answers, and closes
// the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.flushWG.Wait()
	c.mu.Lock()
	s := c.stream
	c.stream = nil
	c.mu.Unlock()
	if s != nil {
		s.finish()
	}
	c.cancel()
	c.streamsWG.Wait()
	c.avoidMu.Lock()
	c.resDone = true
	c.avoidMu.Unlock()
	return c.conn.Close()
}

func wrap(err error) error { return transport.FromStatus(err) }

// NodeStatus is a node's view of itself and its Raft group.
type NodeStatus struct {
	NodeID       string
	Role         string
	Leader       string
	Term         uint64
	AppliedIndex uint64
	Members      []NodeMember
	// Damaged lists the node's damaged journal segments not yet repaired
	// (their damaged records are refused); SegmentsRepaired and ScrubPasses
	// count repairs from peers and complete scrub passes since it started.
	Damaged          []DamagedSegment
	SegmentsRepaired uint64
	ScrubPasses      uint64
}

// NodeMember is one server of the Raft group: its id, Raft address and
// suffrage, whether it leads, and the client address it announced ("" until
// it has).
type NodeMember struct {
	ID, Address, Suffrage string
	Leader                bool
	ClientAddr            string
}

// Status reports the node's role, leader, term, applied index and members.
func (c *Client) Status(ctx context.Context) (NodeStatus, error) {
	r, err := c.api.Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return NodeStatus{}, wrap(err)
	}
	st := NodeStatus{NodeID: r.GetNodeId(), Role: r.GetRole(), Leader: r.GetLeader(), Term: r.GetTerm(), AppliedIndex: r.GetAppliedIndex()}
	for _, m := range r.GetMembers() {
		st.Members = append(st.Members, NodeMember{ID: m.GetId(), Address: m.GetAddress(), Suffrage: m.GetSuffrage(), Leader: m.GetLeader(),
			ClientAddr: m.GetClientAddress()})
	}
	for _, d := range r.GetDamagedSegments() {
		st.Damaged = append(st.Damaged, DamagedSegment{Topic: d.GetTopic(), Partition: int(d.GetPartition()), Segment: d.GetSegment(),
			Position: d.GetPosition(), Reason: d.GetReason(), First: d.GetFirstOffset(), Next: d.GetNextOffset()})
	}
	st.SegmentsRepaired, st.ScrubPasses = r.GetSegmentsRepaired(), r.GetScrubPasses()
	return st, nil
}

func topicConfigPB(cfg TopicConfig) (*pb.TopicConfig, error) {
	if cfg.Partitions < 0 || cfg.Partitions > math.MaxInt32 {
		return nil, fmt.Errorf("%w: partitions %d", ErrInvalidConfig, cfg.Partitions)
	}
	out := &pb.TopicConfig{Partitions: int32(cfg.Partitions), MaxBytes: cfg.MaxBytes}
	if cfg.MaxAge != 0 {
		out.MaxAge = durationpb.New(cfg.MaxAge)
	}
	if cfg.DedupWindow != 0 {
		out.DedupWindow = durationpb.New(max(cfg.DedupWindow, 0))
	}
	return out, nil
}

// CreateTopic implements Broker.
func (c *Client) CreateTopic(ctx context.Context, name string, cfg TopicConfig) error {
	pc, err := topicConfigPB(cfg)
	if err != nil {
		return err
	}
	_, err = c.api.CreateTopic(ctx, &pb.CreateTopicRequest{Name: name, Config: pc})
	return wrap(err)
}

// UpdateTopic implements Broker.
func (c *Client) UpdateTopic(ctx context.Context, name string, cfg TopicConfig) error {
	pc, err := topicConfigPB(cfg)
	if err != nil {
		return err
	}
	_, err = c.api.UpdateTopic(ctx, &pb.UpdateTopicRequest{Name: name, Config: pc})
	return wrap(err)
}

// DeleteTopic implements Broker.
func (c *Client) DeleteTopic(ctx context.Context, name string) error {
	_, err := c.api.DeleteTopic(ctx, &pb.DeleteTopicRequest{Name: name})
	return wrap(err)
}

func topicInfoFrom(t *pb.TopicInfo) TopicInfo {
	cfg := t.GetConfig()
	ti := TopicInfo{Name: t.GetName(), Groups: t.GetGroups(), Config: TopicConfig{Partitions: int(cfg.GetPartitions()),
		MaxAge: cfg.GetMaxAge().AsDuration(), MaxBytes: cfg.GetMaxBytes(), DedupWindow: cfg.GetDedupWindow().AsDuration()}}
	for _, p := range t.GetPartitions() {
		ti.Partitions = append(ti.Partitions, PartitionInfo{Partition: int(p.GetPartition()), FirstOffset: p.GetFirstOffset(),
			NextOffset: p.GetNextOffset(), Bytes: p.GetBytes(), Segments: int(p.GetSegments())})
	}
	return ti
}

// Topics implements Broker.
func (c *Client) Topics(ctx context.Context) ([]TopicInfo, error) {
	r, err := c.api.ListTopics(ctx, &pb.ListTopicsRequest{})
	if err != nil {
		return nil, wrap(err)
	}
	out := make([]TopicInfo, 0, len(r.GetTopics()))
	for _, t := range r.GetTopics() {
		out = append(out, topicInfoFrom(t))
	}
	return out, nil
}

// DescribeTopic implements Broker.
func (c *Client) DescribeTopic(ctx context.Context, name string) (TopicInfo, error) {
	r, err := c.api.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: name})
	if err != nil {
		return TopicInfo{}, wrap(err)
	}
	return topicInfoFrom(r.GetTopic()), nil
}

func messagesPB(msgs []Message) []*pb.Message {
	return appendPB(make([]*pb.Message, 0, len(msgs)), msgs)
}

// appendPB appends msgs to out as wire messages (one allocation for all
// of them, and one for all headers of each message).
func appendPB(out []*pb.Message, msgs []Message) []*pb.Message {
	arr := make([]pb.Message, len(msgs))
	for i := range msgs {
		m, pm := &msgs[i], &arr[i]
		pm.Key, pm.Payload, pm.Id = m.Key, m.Payload, m.ID
		if len(m.Headers) > 0 {
			hs := make([]pb.Header, len(m.Headers))
			pm.Headers = make([]*pb.Header, len(m.Headers))
			for j, h := range m.Headers {
				hs[j].Key, hs[j].Value = h.Key, h.Value
				pm.Headers[j] = &hs[j]
			}
		}
		if !m.Timestamp.IsZero() {
			pm.TimestampUnixNano = m.Timestamp.UnixNano()
		}
		out = append(out, pm)
	}
	return out
}

// wireSize estimates a wire message's bytes, for the batch limits.
func wireSize(m *pb.Message) int {
	sz := len(m.Key) + len(m.Payload) + len(m.Id) + 16
	for _, h := range m.Headers {
		sz += len(h.Key) + len(h.Value) + 8
	}
	return sz
}

func acksFrom(r *pb.PublishResponse) []PublishAck {
	if rs := r.GetRanges(); len(rs) > 0 {
		n := 0
		for _, rg := range rs {
			n += int(rg.GetCount())
		}
		out := make([]PublishAck, 0, n)
		for _, rg := range rs {
			for k := range uint64(rg.GetCount()) {
				out = append(out, PublishAck{Partition: int(rg.GetPartition()), Offset: rg.GetFirstOffset() + k})
			}
		}
		return out
	}
	as := r.GetAcks()
	out := make([]PublishAck, len(as))
	for i, a := range as {
		out[i] = PublishAck{Partition: int(a.GetPartition()), Offset: a.GetOffset(), Duplicate: a.GetDuplicate()}
	}
	return out
}

// Publish implements Broker.
func (c *Client) Publish(ctx context.Context, topic string, msgs ...Message) ([]PublishAck, error) {
	msgs = c.withIDs(msgs)
	return c.publishRetry(ctx, &pb.PublishRequest{Topic: topic, Messages: messagesPB(msgs), AckRanges: true}, msgs)
}

// PublishTo implements Broker.
func (c *Client) PublishTo(ctx context.Context, topic string, partition int, msgs ...Message) ([]PublishAck, error) {
	p := int32(partition)
	if partition < 0 || int(p) != partition {
		return nil, fmt.Errorf("%w: partition %d", ErrPartitionRange, partition)
	}
	msgs = c.withIDs(msgs)
	return c.publishRetry(ctx, &pb.PublishRequest{Topic: topic, Partition: &p, Messages: messagesPB(msgs), AckRanges: true}, msgs)
}

// CreateGroup implements Broker.
func (c *Client) CreateGroup(ctx context.Context, topic, group string, cfg GroupConfig) error {
	pc := &pb.GroupConfig{MaxDeliver: int32(cfg.MaxDeliver), DeadLetterTopic: cfg.DeadLetterTopic}
	if cfg.StartAt == StartLatest {
		pc.StartAt = pb.StartAt_START_AT_LATEST
	}
	if cfg.AckWait != 0 {
		pc.AckWait = durationpb.New(cfg.AckWait)
	}
	_, err := c.api.CreateGroup(ctx, &pb.CreateGroupRequest{Topic: topic, Group: group, Config: pc})
	return wrap(err)
}

// DeleteGroup implements Broker.
func (c *Client) DeleteGroup(ctx context.Context, topic, group string) error {
	_, err := c.api.DeleteGroup(ctx, &pb.DeleteGroupRequest{Topic: topic, Group: group})
	return wrap(err)
}

// Groups implements Broker.
func (c *Client) Groups(ctx context.Context, topic string) ([]string, error) {
	r, err := c.api.ListGroups(ctx, &pb.ListGroupsRequest{Topic: topic})
	if err != nil {
		return nil, wrap(err)
	}
	return r.GetGroups(), nil
}

// DescribeGroup implements Broker.
func (c *Client) DescribeGroup(ctx context.Context, topic, group string) (GroupInfo, error) {
	r, err := c.api.DescribeGroup(ctx, &pb.DescribeGroupRequest{Topic: topic, Group: group})
	if err != nil {
		return GroupInfo{}, wrap(err)
	}
	gc := r.GetConfig()
	gi := GroupInfo{Topic: topic, Group: group, Config: GroupConfig{AckWait: gc.GetAckWait().AsDuration(),
		MaxDeliver: int(gc.GetMaxDeliver()), DeadLetterTopic: gc.GetDeadLetterTopic()}}
	for _, p := range r.GetPartitions() {
		gi.Partitions = append(gi.Partitions, GroupPartitionInfo{Partition: int(p.GetPartition()), AckFloor: p.GetAckFloor(),
			EndOffset: p.GetEndOffset(), Lag: p.GetLag(), Pending: int(p.GetPending())})
	}
	return gi, nil
}

// ResetGroup implements Broker.
func (c *Client) ResetGroup(ctx context.Context, topic, group string, to ResetTo) error {
	req := &pb.ResetGroupRequest{Topic: topic, Group: group}
	if to.Time.IsZero() {
		req.To = &pb.ResetGroupRequest_Offset{Offset: to.Offset}
	} else {
		req.To = &pb.ResetGroupRequest_Time{Time: timestamppb.New(to.Time)}
	}
	_, err := c.api.ResetGroup(ctx, req)
	return wrap(err)
}

func deliveriesFrom(r *pb.FetchResponse) []Delivery {
	ds := r.GetDeliveries()
	out := make([]Delivery, len(ds))
	for i, d := range ds {
		m := d.GetMessage()
		out[i] = Delivery{
			Ref:        Ref{Group: r.GetGroup(), Topic: r.GetTopic(), Partition: int(d.GetPartition()), Offset: d.GetOffset()},
			Key:        m.GetKey(),
			Payload:    m.GetPayload(),
			ID:         m.GetId(),
			Timestamp:  time.Unix(0, m.GetTimestampUnixNano()),
			Deliveries: d.GetDeliveries(),
		}
		for _, h := range m.GetHeaders() {
			out[i].Headers = append(out[i].Headers, Header{Key: h.GetKey(), Value: h.GetValue()})
		}
	}
	return out
}

// Fetch implements Broker.
func (c *Client) Fetch(ctx context.Context, group, topic string, maxMsgs int, wait time.Duration) ([]Delivery, error) {
	if dl, ok := ctx.Deadline(); ok {
		// Let the node answer "nothing" before the deadline rather than
		// race it.
		wait = max(min(wait, time.Until(dl)-fetchMargin), 0)
	}
	r, err := c.api.Fetch(ctx, &pb.FetchRequest{Group: group, Topic: topic, Max: int32(min(maxMsgs, 1<<30)), Wait: durationpb.New(wait)})
	if err != nil {
		// As the embedded broker: the context's own error. Its deadline may
		// have passed a moment before the context notices.
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl.Add(-fetchMargin)) {
			return nil, context.DeadlineExceeded
		}
		return nil, wrap(err)
	}
	return deliveriesFrom(r), nil
}

// Read implements Broker: it reads the replica of the node the client
// talks to now.
func (c *Client) Read(ctx context.Context, topic string, partition int, offset uint64, maxMsgs int, wait time.Duration) (ReadResult, error) {
	if maxMsgs <= 0 {
		return ReadResult{}, fmt.Errorf("%w: max %d must be positive", ErrInvalidArgument, maxMsgs)
	}
	if partition < 0 {
		return ReadResult{}, fmt.Errorf("%w: partition %d", ErrPartitionRange, partition)
	}
	if dl, ok := ctx.Deadline(); ok {
		wait = max(min(wait, time.Until(dl)-fetchMargin), 0)
	}
	r, err := c.api.Read(ctx, &pb.ReadRequest{Topic: topic, Partition: uint32(partition), Offset: offset,
		Max: uint32(min(maxMsgs, 1<<31)), Wait: durationpb.New(wait)})
	if err != nil {
		if ctx.Err() != nil {
			return ReadResult{}, ctx.Err()
		}
		return ReadResult{}, wrap(err)
	}
	out := ReadResult{NodeID: r.GetNodeId(), FirstOffset: r.GetFirstOffset(), NextOffset: r.GetNextOffset(),
		Records: make([]Record, len(r.GetRecords()))}
	for i, rec := range r.GetRecords() {
		m := rec.GetMessage()
		out.Records[i] = Record{Partition: partition, Offset: rec.GetOffset(), Key: m.GetKey(), Payload: m.GetPayload(),
			ID: m.GetId(), Timestamp: time.Unix(0, m.GetTimestampUnixNano())}
		for _, h := range m.GetHeaders() {
			out.Records[i].Headers = append(out.Records[i].Headers, Header{Key: h.GetKey(), Value: h.GetValue()})
		}
	}
	return out, nil
}

// fetchMargin is how long before a caller's deadline a Fetch's wait ends.
const fetchMargin = 20 * time.Millisecond

// Subscribe streams batches of deliveries to handle until ctx is done or
// handle returns an error. Deliveries must be settled as with Fetch.
func (c *Client) Subscribe(ctx context.Context, group, topic string, max int, handle func([]Delivery) error) error {
	st, err := c.api.Subscribe(ctx, &pb.SubscribeRequest{Group: group, Topic: topic, Max: int32(max)})
	if err != nil {
		return wrap(err)
	}
	for {
		r, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return wrap(err)
		}
		if err := handle(deliveriesFrom(r)); err != nil {
			return err
		}
	}
}

func refsPB(refs []Ref) []*pb.Ref {
	out := make([]*pb.Ref, len(refs))
	for i, r := range refs {
		out[i] = &pb.Ref{Group: r.Group, Topic: r.Topic, Partition: int32(r.Partition), Offset: r.Offset}
	}
	return out
}

// Ack implements Broker. Refs of one group and topic, the usual case, go
// in the compact form: offsets listed by partition.
func (c *Client) Ack(ctx context.Context, refs ...Ref) error {
	_, err := c.api.Ack(ctx, ackRequest(refs))
	return wrap(err)
}

// idempotent are the calls that may be repeated after an unknown outcome:
// reads (a Read repeated elsewhere reads that node's replica), a fetch (a
// lease the lost node granted is dropped with it), and
// acks and nacks (settling an offset twice is settling it once).
var idempotent = map[string]bool{
	pb.Walmq_ListTopics_FullMethodName: true, pb.Walmq_DescribeTopic_FullMethodName: true,
	pb.Walmq_ListGroups_FullMethodName: true, pb.Walmq_DescribeGroup_FullMethodName: true,
	pb.Walmq_Fetch_FullMethodName: true, pb.Walmq_Ack_FullMethodName: true, pb.Walmq_Nack_FullMethodName: true,
	pb.Walmq_Read_FullMethodName: true,
}

// retryInterceptor repeats a unary call, for up to retryFor, when the
// cluster has no leader (the call was refused: nothing happened), and an
// idempotent call also when its node went away or its outcome is unknown
// (ErrTimeout: e.g. the leader a follower forwarded it to stopped leading;
// a timeout of the caller's own context is not repeated). Publish has its
// own loop (Client.publishRetry); Status and the per-node calls are not
// repeated.
func retryInterceptor(retryFor time.Duration, refused func()) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if retryFor <= 0 || method == pb.Walmq_Publish_FullMethodName || method == pb.Walmq_Status_FullMethodName ||
			method == pb.Walmq_Checksum_FullMethodName {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		var deadline time.Time // RetryFor from the first failure
		backoff := 20 * time.Millisecond
		unknown := false // some try of a settling call may have taken effect
		for {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if err == nil {
				return nil
			}
			if deadline.IsZero() {
				deadline = time.Now().Add(retryFor)
			}
			werr := transport.FromStatus(err)
			if settles[method] && (errors.Is(werr, ErrTimeout) || errors.Is(werr, transport.ErrUnavailable)) {
				unknown = true // this try may have taken effect
			}
			if errors.Is(werr, ErrNotLeader) {
				refused()
			}
			again := errors.Is(werr, ErrNotLeader) ||
				(idempotent[method] && (errors.Is(werr, transport.ErrUnavailable) || errors.Is(werr, ErrTimeout)))
			if !again || ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
				return keepUnknown(unknown, err)
			}
			select {
			case <-ctx.Done():
				return keepUnknown(unknown, err)
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 500*time.Millisecond)
		}
	}
}

// settles are the retried calls that change state: once a try's outcome
// is unknown, a later try's refusal (nothing pending, not the leader)
// says nothing of the earlier one.
var settles = map[string]bool{pb.Walmq_Ack_FullMethodName: true, pb.Walmq_Nack_FullMethodName: true}

// keepUnknown reports err as an unknown outcome when an earlier try's
// was (as publishRetry does).
func keepUnknown(unknown bool, err error) error {
	if !unknown || errors.Is(transport.FromStatus(err), ErrTimeout) {
		return err
	}
	return status.Error(codes.DeadlineExceeded, "walmq: an earlier try's outcome is unknown; the last try: "+status.Convert(err).Message())
}

func ackRequest(refs []Ref) *pb.AckRequest {
	if len(refs) == 0 {
		return &pb.AckRequest{}
	}
	req := &pb.AckRequest{Group: refs[0].Group, Topic: refs[0].Topic}
	byPart := map[int]*pb.PartitionOffsets{}
	for _, r := range refs {
		if r.Group != req.Group || r.Topic != req.Topic {
			return &pb.AckRequest{Refs: refsPB(refs)}
		}
		po := byPart[r.Partition]
		if po == nil {
			po = &pb.PartitionOffsets{Partition: int32(r.Partition)}
			byPart[r.Partition] = po
			req.Offsets = append(req.Offsets, po)
		}
		po.Offsets = append(po.Offsets, r.Offset)
	}
	return req
}

// Nack implements Broker.
func (c *Client) Nack(ctx context.Context, delay time.Duration, refs ...Ref) error {
	_, err := c.api.Nack(ctx, &pb.NackRequest{Refs: refsPB(refs), Delay: durationpb.New(delay)})
	return wrap(err)
}

// Term implements Broker.
func (c *Client) Term(ctx context.Context, reason string, refs ...Ref) error {
	_, err := c.api.Term(ctx, &pb.TermRequest{Refs: refsPB(refs), Reason: reason})
	return wrap(err)
}

// ---- the asynchronous producer ----

type queueKey struct {
	topic string
	part  int
}

// pubQueue holds the messages PublishAsync queued for one partition, in
// their wire form, until a flusher sends them.
type pubQueue struct {
	msgs     []*pb.Message
	dones    []queuedDone
	flushing bool
}

// queuedDone is one PublishAsync call: its n messages and their bytes.
type queuedDone struct {
	n, bytes int
	done     func([]PublishAck, error)
}

// PublishAsync implements Broker: messages are queued and sent in batches
// of up to MaxBatch on one stream, in the order queued.
func (c *Client) PublishAsync(ctx context.Context, topic string, partition int, msgs []Message, done func([]PublishAck, error)) error {
	if len(msgs) == 0 {
		return ErrEmptyPublish
	}
	if partition < 0 {
		return fmt.Errorf("%w: partition %d", ErrPartitionRange, partition)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	k := queueKey{topic, partition}
	q := c.queues[k]
	if q == nil {
		q = &pubQueue{}
		c.queues[k] = q
	}
	from := len(q.msgs)
	q.msgs = appendPB(q.msgs, msgs)
	bytes := 0
	for i, m := range q.msgs[from:] {
		if c.idPrefix != "" && msgs[i].ID == "" {
			m.Id = c.nextID()
		}
		bytes += wireSize(m)
	}
	q.dones = append(q.dones, queuedDone{len(msgs), bytes, done})
	start := !q.flushing
	q.flushing = true
	if start {
		c.flushWG.Add(1)
	}
	c.mu.Unlock()
	if start {
		go c.flush(k, q)
	}
	return nil
}

// flush sends a queue's messages in batches until it is empty.
func (c *Client) flush(k queueKey, q *pubQueue) {
	defer c.flushWG.Done()
	if c.opts.Linger > 0 {
		time.Sleep(c.opts.Linger)
	}
	for {
		c.mu.Lock()
		if len(q.msgs) == 0 {
			q.flushing = false
			c.mu.Unlock()
			return
		}
		// Take whole PublishAsync calls, up to MaxBatch messages and half
		// the request limit in bytes (at least one call).
		n, calls, bytes := 0, 0, 0
		for calls < len(q.dones) {
			k, sz := q.dones[calls].n, q.dones[calls].bytes
			if calls > 0 && (n+k > c.opts.MaxBatch || bytes+sz > c.opts.MaxRequestBytes/2) {
				break
			}
			n, bytes = n+k, bytes+sz
			calls++
		}
		msgs := q.msgs[:n:n]
		dones := q.dones[:calls:calls]
		q.msgs = q.msgs[n:]
		q.dones = q.dones[calls:]
		c.mu.Unlock()
		p := int32(k.part)
		req := &pb.PublishRequest{Topic: k.topic, Partition: &p, Messages: msgs, AckRanges: true}
		c.send(req, func(acks []PublishAck, err error) {
			off := 0
			for _, d := range dones {
				if err != nil {
					d.done(nil, err)
				} else {
					d.done(acks[off:off+d.n], nil)
				}
				off += d.n
			}
		})
	}
}

// pubStream is the client's PublishStream: requests are sent in order
// and answered by seq.
type pubStream struct {
	c       *Client
	st      pb.Walmq_PublishStreamClient
	cancel  context.CancelCauseFunc // ends the stream (the watchdog's errStalled)
	untrack func()                  // stops the watchdog's watch
	// sent: when each pending batch was handed to the transport;
	// answered: when the last answer came (the watchdog's stall test).
	sent     map[uint64]time.Time
	answered time.Time
	sendMu   sync.Mutex
	mu       sync.Mutex
	seq      uint64
	pending  map[uint64]func([]PublishAck, error)
	err      error
	done     chan struct{}
	retired  bool // no new batches: see retire
}

// send sends one request on the stream (opening it if needed); done gets
// the outcome. A broken stream fails every request in flight on it.
func (c *Client) send(req *pb.PublishRequest, done func([]PublishAck, error)) {
	for {
		s, err := c.pubStream()
		if err != nil {
			done(nil, err)
			return
		}
		if s.send(req, done) {
			return
		}
		// The stream was retired between pubStream and send: take the
		// next one.
	}
}

// send sends req on the stream unless it was retired (false).
func (s *pubStream) send(req *pb.PublishRequest, done func([]PublishAck, error)) bool {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.retired {
		s.mu.Unlock()
		return false
	}
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		done(nil, err)
		return true
	}
	s.seq++
	seq := s.seq
	req.Seq = seq
	s.pending[seq] = done
	s.mu.Unlock()
	if err := s.st.Send(req); err != nil {
		// The receive loop sees the stream end and fails what is pending.
		s.c.dropStream(s)
		return true
	}
	s.mu.Lock()
	if _, ok := s.pending[seq]; ok {
		s.sent[seq] = time.Now()
	}
	s.mu.Unlock()
	return true
}

func (c *Client) pubStream() (*pubStream, error) {
	c.mu.Lock()
	s := c.stream
	c.mu.Unlock()
	if s != nil {
		return s, nil
	}
	c.waitReady()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != nil {
		return c.stream, nil
	}
	sctx, cancel := context.WithCancelCause(c.ctx)
	s = &pubStream{c: c, cancel: cancel, untrack: func() {}, pending: map[uint64]func([]PublishAck, error){},
		sent: map[uint64]time.Time{}, done: make(chan struct{})}
	if c.wd != nil {
		// Watched until its receive loop ends, retired or not.
		sctx, s.untrack = c.wd.track(sctx, &watchedCall{cancel: cancel, stream: s})
	}
	st, err := c.api.PublishStream(sctx)
	if err != nil {
		s.untrack()
		cancel(nil)
		return nil, wrap(err)
	}
	s.st = st
	c.stream = s
	c.streamsWG.Add(1)
	go s.recv()
	return s, nil
}

// avoidCurrent moves the channel off the node it talks to when that node
// knows no leader (cut off from the others, it refuses everything while
// they elect one): the node is left out of the address list for a while,
// so pick_first connects to the next one. At most every 2 s.
func (c *Client) avoidCurrent() {
	if c.res == nil {
		return
	}
	c.avoidMu.Lock()
	if c.resDone || time.Since(c.lastAvoid) < 2*time.Second {
		c.avoidMu.Unlock()
		return
	}
	c.lastAvoid = time.Now()
	c.avoidMu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, 500*time.Millisecond)
	defer cancel()
	var p peer.Peer // the address the channel is connected to
	st, err := c.api.Status(ctx, &pb.StatusRequest{}, grpc.Peer(&p))
	if err != nil || st.GetLeader() != "" || p.Addr == nil {
		// Unreachable (the channel moves by itself), or it knows a leader
		// (it forwards, or leads and will take writes in a moment).
		return
	}
	c.exclude(c.wd.listedAddr(p.Addr.String()))
}

// waitReady waits, up to RetryFor, until the channel has a node that
// answers: after losing one, it moves on to the next address.
func (c *Client) waitReady() {
	if c.opts.RetryFor <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.RetryFor)
	defer cancel()
	c.conn.Connect()
	for st := c.conn.GetState(); st != connectivity.Ready; st = c.conn.GetState() {
		if !c.conn.WaitForStateChange(ctx, st) {
			return
		}
	}
}

func (c *Client) dropStream(s *pubStream) {
	c.mu.Lock()
	if c.stream == s {
		c.stream = nil
	}
	c.mu.Unlock()
}

func (s *pubStream) recv() {
	defer s.c.streamsWG.Done()
	defer s.cancel(nil)
	defer s.untrack()
	defer close(s.done)
	for {
		r, err := s.st.Recv()
		if err != nil {
			s.c.dropStream(s)
			s.mu.Lock()
			if errors.Is(err, errEOF) {
				err = nil
			}
			switch {
			case err == nil:
				err = fmt.Errorf("%w: publish stream closed", ErrClosed)
			case errors.Is(context.Cause(s.st.Context()), errStalled):
				err = fmt.Errorf("%w: publish stream ended: %v (outcome unknown)", ErrTimeout, errStalled)
			default:
				err = fmt.Errorf("%w: publish stream broke, outcome unknown: %w", ErrTimeout, wrap(err))
			}
			s.err = err
			pending := s.pending
			s.pending, s.sent = nil, nil
			s.mu.Unlock()
			for _, done := range pending {
				done(nil, err)
			}
			return
		}
		s.mu.Lock()
		done := s.pending[r.GetSeq()]
		delete(s.pending, r.GetSeq())
		delete(s.sent, r.GetSeq())
		s.answered = time.Now()
		s.mu.Unlock()
		if done == nil {
			continue
		}
		if r.GetError() != "" {
			err := wrap(statusError(r.GetCode(), r.GetError()))
			if codes.Code(r.GetCode()) == codes.Unavailable {
				// The node stopped leading, or the leader a follower
				// forwards this stream to did: later batches go on a new
				// stream (to wherever serves now) while this one drains.
				s.retire()
			}
			done(nil, err)
			if errors.Is(err, ErrNotLeader) {
				s.c.avoidCurrent()
			}
		} else {
			done(acksFrom(r), nil)
		}
	}
}

// stalled reports whether a batch sent stallAfter ago is unanswered and
// nothing has been answered since.
func (s *pubStream) stalled(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.answered) <= stallAfter {
		return false
	}
	for _, at := range s.sent {
		if now.Sub(at) > stallAfter {
			return true
		}
	}
	return false
}

// retire stops new batches from using this stream and closes its sending
// side; the answers in flight still arrive.
func (s *pubStream) retire() {
	s.c.dropStream(s)
	s.mu.Lock()
	already := s.retired
	s.retired = true
	s.mu.Unlock()
	if !already {
		go func() {
			s.sendMu.Lock()
			defer s.sendMu.Unlock()
			s.st.CloseSend()
		}()
	}
}

// finish closes the sending side and waits for every answer.
func (s *pubStream) finish() {
	s.sendMu.Lock()
	s.st.CloseSend()
	s.sendMu.Unlock()
	<-s.done
}

var errEOF = io.EOF

// statusError rebuilds the status error a stream response reported.
func statusError(code int32, msg string) error { return status.Error(codes.Code(code), msg) }
