package transport

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
)

// ErrSocketInUse: another process serves on the unix socket path.
var ErrSocketInUse = errors.New("walmq: socket in use")

// Options configure a Server.
type Options struct {
	// Listen is the TCP address to serve on ("" for none).
	Listen string
	// Socket is the unix socket path to serve on ("" for none). It is
	// created with mode 0600; a stale socket file is replaced.
	Socket string
	// MaxRequestBytes bounds one request (default 64 MiB).
	MaxRequestBytes int
	// Logger (default none).
	Logger hclog.Logger
	// Advertise is the client address other nodes forward requests to
	// when this node leads (default: the TCP address served on, if it is
	// not a wildcard one; else unix://<Socket>).
	Advertise string
}

// Server serves the walmq gRPC API of one node on TCP and a unix socket,
// with the standard health service and server reflection.
type Server struct {
	pb.UnimplementedWalmqServer
	node   *cluster.Node
	opts   Options
	log    hclog.Logger
	grpc   *grpc.Server
	health *health.Server
	lis    []net.Listener
	tcp    net.Addr

	serveWG  sync.WaitGroup
	stopOnce sync.Once

	fwd      forwarder
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bgWG     sync.WaitGroup
}

// NewServer listens on the configured addresses; Serve starts serving.
// A port in use or a socket another process serves on is an error, and
// nothing is left listening.
func NewServer(node *cluster.Node, opts Options) (*Server, error) {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	s := &Server{node: node, opts: opts, log: opts.Logger}
	if opts.Listen != "" {
		l, err := net.Listen("tcp", opts.Listen)
		if err != nil {
			return nil, fmt.Errorf("transport: listen on %s: %w", opts.Listen, err)
		}
		s.lis = append(s.lis, l)
		s.tcp = l.Addr()
	}
	if opts.Socket != "" {
		l, err := listenUnix(opts.Socket)
		if err != nil {
			s.closeListeners()
			return nil, err
		}
		s.lis = append(s.lis, l)
	}
	if len(s.lis) == 0 {
		return nil, errors.New("transport: nothing to listen on: give a TCP address or a socket path")
	}
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(opts.MaxRequestBytes),
		grpc.MaxSendMsgSize(opts.MaxRequestBytes),
		// The Go client pings every 2 s to notice a node that stopped
		// answering; allow it (the default refuses pings under 5 min).
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	)
	pb.RegisterWalmqServer(s.grpc, s)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.bgCtx, s.bgCancel = context.WithCancel(context.Background())
	node.SetPeerRecords(peerRecords{s}) // repairs of damaged segments ask the other nodes (repair.go)
	if adv := s.advertise(); adv != "" {
		s.bgWG.Add(1)
		go s.announce(adv)
	}
	return s, nil
}

// advertise is the client address other nodes reach this one at.
func (s *Server) advertise() string {
	if s.opts.Advertise != "" {
		return s.opts.Advertise
	}
	if t, ok := s.tcp.(*net.TCPAddr); ok && !t.IP.IsUnspecified() {
		return t.String()
	}
	if s.opts.Socket != "" {
		if abs, err := filepath.Abs(s.opts.Socket); err == nil {
			return "unix://" + abs
		}
	}
	return ""
}

// listenUnix listens on a unix socket with mode 0600, replacing a stale
// socket file but refusing one another process still serves on.
func listenUnix(path string) (net.Listener, error) {
	if _, err := os.Stat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrSocketInUse, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("transport: remove stale socket: %w", err)
		}
	}
	old := umask(0o177)
	l, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("transport: chmod %s: %w", path, err)
	}
	return l, nil
}

func (s *Server) closeListeners() {
	for _, l := range s.lis {
		l.Close()
	}
}

// TCPAddr is the TCP address served on, or nil.
func (s *Server) TCPAddr() net.Addr { return s.tcp }

// Serve serves on every listener until Stop. It returns the first error
// of a listener that failed for another reason than Stop.
func (s *Server) Serve() error {
	errs := make(chan error, len(s.lis))
	for _, l := range s.lis {
		s.serveWG.Add(1)
		go func() {
			defer s.serveWG.Done()
			if err := s.grpc.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				errs <- err
			}
		}()
	}
	s.serveWG.Wait()
	close(errs)
	return <-errs
}

// Stop stops taking requests and waits for those in flight (publishes
// get their answers) until ctx is done, then cuts the rest off.
func (s *Server) Stop(ctx context.Context) {
	s.stopOnce.Do(func() {
		s.bgCancel()
		s.bgWG.Wait()
		s.health.Shutdown()
		done := make(chan struct{})
		go func() {
			s.grpc.GracefulStop()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			s.grpc.Stop()
			<-done
		}
		s.fwd.close()
		if s.opts.Socket != "" {
			os.Remove(s.opts.Socket)
		}
	})
}

func durationOf(d *durationpb.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.AsDuration()
}

func topicConfigIn(c *pb.TopicConfig) fsm.TopicConfig {
	out := fsm.TopicConfig{Partitions: int(c.GetPartitions()), MaxAge: durationOf(c.GetMaxAge()), MaxBytes: c.GetMaxBytes()}
	if out.Partitions == 0 {
		out.Partitions = 1
	}
	switch dw := c.GetDedupWindow(); {
	case dw == nil:
		out.DedupWindow = DefaultDedupWindow
	case dw.AsDuration() > 0:
		out.DedupWindow = dw.AsDuration()
	}
	return out
}

// DefaultDedupWindow is the dedup window of a topic created without one.
const DefaultDedupWindow = 2 * time.Minute

func topicConfigOut(c fsm.TopicConfig) *pb.TopicConfig {
	return &pb.TopicConfig{Partitions: int32(c.Partitions), MaxAge: durationpb.New(c.MaxAge), MaxBytes: c.MaxBytes,
		DedupWindow: durationpb.New(c.DedupWindow)}
}

// CreateTopic implements the API.
func (s *Server) CreateTopic(ctx context.Context, r *pb.CreateTopicRequest) (*pb.CreateTopicResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.CreateTopic); ok {
		return resp, err
	}
	if !fsm.ValidName(r.GetName()) {
		return nil, ToStatus(fmt.Errorf("%w: topic %q", fsm.ErrInvalidName, r.GetName()))
	}
	_, err := s.node.Apply(ctx, &fsm.CreateTopic{Name: r.GetName(), Config: topicConfigIn(r.GetConfig())})
	return &pb.CreateTopicResponse{}, ToStatus(err)
}

// UpdateTopic implements the API.
func (s *Server) UpdateTopic(ctx context.Context, r *pb.UpdateTopicRequest) (*pb.UpdateTopicResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.UpdateTopic); ok {
		return resp, err
	}
	_, err := s.node.Apply(ctx, &fsm.UpdateTopic{Name: r.GetName(), Config: topicConfigIn(r.GetConfig())})
	return &pb.UpdateTopicResponse{}, ToStatus(err)
}

// DeleteTopic implements the API.
func (s *Server) DeleteTopic(ctx context.Context, r *pb.DeleteTopicRequest) (*pb.DeleteTopicResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.DeleteTopic); ok {
		return resp, err
	}
	_, err := s.node.Apply(ctx, &fsm.DeleteTopic{Name: r.GetName()})
	return &pb.DeleteTopicResponse{}, ToStatus(err)
}

func (s *Server) topicInfo(name string) (*pb.TopicInfo, error) {
	t, err := s.node.FSM().Topic(name)
	if err != nil {
		return nil, err
	}
	out := &pb.TopicInfo{Name: t.Name, Config: topicConfigOut(t.Config), Groups: slices.Sorted(maps.Keys(t.Groups))}
	for i, p := range t.Partitions {
		out.Partitions = append(out.Partitions, &pb.PartitionInfo{Partition: int32(i), FirstOffset: p.First,
			NextOffset: p.Next, Bytes: p.Bytes, Segments: int32(p.Segments)})
	}
	return out, nil
}

// ListTopics implements the API.
func (s *Server) ListTopics(ctx context.Context, r *pb.ListTopicsRequest) (*pb.ListTopicsResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.ListTopics); ok {
		return resp, err
	}
	if err := s.node.VerifyLeader(ctx); err != nil {
		return nil, ToStatus(err)
	}
	out := &pb.ListTopicsResponse{}
	for _, name := range s.node.FSM().TopicNames() {
		if ti, err := s.topicInfo(name); err == nil {
			out.Topics = append(out.Topics, ti)
		}
	}
	return out, nil
}

// DescribeTopic implements the API.
func (s *Server) DescribeTopic(ctx context.Context, r *pb.DescribeTopicRequest) (*pb.DescribeTopicResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.DescribeTopic); ok {
		return resp, err
	}
	if err := s.node.VerifyLeader(ctx); err != nil {
		return nil, ToStatus(err)
	}
	ti, err := s.topicInfo(r.GetName())
	if err != nil {
		return nil, ToStatus(err)
	}
	return &pb.DescribeTopicResponse{Topic: ti}, nil
}

func messagesIn(ms []*pb.Message) []journal.Message {
	out := make([]journal.Message, len(ms))
	for i, m := range ms {
		out[i] = journal.Message{Key: m.GetKey(), ID: m.GetId(), Payload: m.GetPayload()}
		if len(m.GetHeaders()) > 0 {
			out[i].Headers = make([]journal.Header, len(m.GetHeaders()))
			for j, h := range m.GetHeaders() {
				out[i].Headers[j] = journal.Header{Key: h.GetKey(), Value: h.GetValue()}
			}
		}
		out[i].Timestamp = m.GetTimestampUnixNano()
	}
	return out
}

// publish routes one request's messages to partitions and calls done once
// with the acks in message order or the first error. Messages of one
// partition are queued with the node in request order.
func (s *Server) publish(ctx context.Context, r *pb.PublishRequest, done func(*pb.PublishResponse, error)) {
	msgs := messagesIn(r.GetMessages())
	if len(msgs) == 0 {
		done(nil, fsm.ErrEmptyPublish)
		return
	}
	n, err := s.node.FSM().PartitionCount(r.GetTopic())
	if err != nil {
		done(nil, err)
		return
	}
	if r.Partition != nil {
		p := int(r.GetPartition())
		if p < 0 || p >= n {
			done(nil, fmt.Errorf("%w: partition %d of %q (it has %d)", fsm.ErrPartitionRange, p, r.GetTopic(), n))
			return
		}
		// One partition: its result is the response, in message order.
		if err := s.node.PublishAsync(ctx, r.GetTopic(), p, msgs, func(res *fsm.PublishResult, err error) {
			if err != nil {
				done(nil, err)
				return
			}
			done(acksOut(r, res.Partitions, res.Offsets, res.Duplicate), nil)
		}); err != nil {
			done(nil, err)
		}
		return
	}
	keys := make([][]byte, len(msgs))
	for i := range msgs {
		keys[i] = msgs[i].Key
	}
	byPart, order := s.node.Route(keys, n)
	parts := make([]int, len(msgs))
	offs := make([]uint64, len(msgs))
	dups := make([]bool, len(msgs))
	var mu sync.Mutex
	left := len(order)
	var errs []error
	finish := func(idx []int, res *fsm.PublishResult, err error) {
		mu.Lock()
		errs = append(errs, err)
		if err == nil {
			for k, i := range idx {
				parts[i], offs[i], dups[i] = res.Partitions[k], res.Offsets[k], res.Duplicate[k]
			}
		}
		left--
		last := left == 0
		mu.Unlock()
		if last {
			// Some partitions' parts may be stored while others were
			// refused: the outcome of the whole is then unknown.
			if err := cluster.JoinOutcomes(errs); err != nil {
				done(nil, err)
			} else {
				done(acksOut(r, parts, offs, dups), nil)
			}
		}
	}
	for _, p := range order {
		idx := byPart[p]
		part := msgs
		if len(idx) != len(msgs) {
			part = make([]journal.Message, len(idx))
			for k, i := range idx {
				part[k] = msgs[i]
			}
		}
		if err := s.node.PublishAsync(ctx, r.GetTopic(), p, part, func(res *fsm.PublishResult, err error) {
			finish(idx, res, err)
		}); err != nil {
			finish(idx, nil, err)
		}
	}
}

// acksOut is the response to r whose messages were stored at parts[i],
// offs[i] (dups[i]: a duplicate, there before): ack ranges when the client
// reads them and no message is a duplicate, else an ack per message.
func acksOut(r *pb.PublishRequest, parts []int, offs []uint64, dups []bool) *pb.PublishResponse {
	out := &pb.PublishResponse{}
	if r.GetAckRanges() && !slices.Contains(dups, true) {
		for i := range parts {
			if n := len(out.Ranges); n > 0 {
				last := out.Ranges[n-1]
				if last.Partition == int32(parts[i]) && last.FirstOffset+uint64(last.Count) == offs[i] {
					last.Count++
					continue
				}
			}
			out.Ranges = append(out.Ranges, &pb.AckRange{Partition: int32(parts[i]), FirstOffset: offs[i], Count: 1})
		}
		return out
	}
	acks := make([]pb.PublishAck, len(parts))
	out.Acks = make([]*pb.PublishAck, len(parts))
	for i := range parts {
		a := &acks[i]
		a.Partition, a.Offset, a.Duplicate = int32(parts[i]), offs[i], dups[i]
		out.Acks[i] = a
	}
	return out
}

// Publish implements the API.
func (s *Server) Publish(ctx context.Context, r *pb.PublishRequest) (*pb.PublishResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.Publish); ok {
		return resp, err
	}
	type result struct {
		resp *pb.PublishResponse
		err  error
	}
	ch := make(chan result, 1)
	s.publish(ctx, r, func(resp *pb.PublishResponse, err error) { ch <- result{resp, err} })
	select {
	case res := <-ch:
		if res.err != nil {
			return nil, ToStatus(res.err)
		}
		res.resp.Seq = r.GetSeq()
		return res.resp, nil
	case <-ctx.Done():
		return nil, ToStatus(fmt.Errorf("%w: %w", cluster.ErrTimeout, ctx.Err()))
	}
}

// PublishStream implements the API. Requests are queued with the node in
// the order received; each answer is sent when its batch is durable. When
// the client goes away, batches already queued still complete.
func (s *Server) PublishStream(stream pb.Walmq_PublishStreamServer) error {
	ctx := stream.Context()
	if c, fctx, err := s.leader(ctx); err != nil || c != nil {
		if err != nil {
			return ToStatus(err)
		}
		return s.forwardPublishStream(c, fctx, stream)
	}
	out := make(chan *pb.PublishResponse, 64)
	var inflight sync.WaitGroup
	sendErr := make(chan error, 1)
	go func() {
		var failed bool
		for resp := range out {
			if failed {
				continue // keep draining so completions never block
			}
			if err := stream.Send(resp); err != nil {
				failed = true
				sendErr <- err
			}
		}
		close(sendErr)
	}()
	var recvErr error
	for {
		r, err := stream.Recv()
		if err != nil {
			recvErr = err
			break
		}
		inflight.Add(1)
		seq := r.GetSeq()
		s.publish(ctx, r, func(resp *pb.PublishResponse, err error) {
			if resp == nil {
				resp = &pb.PublishResponse{}
			}
			resp.Seq = seq
			if err != nil {
				st := status.Convert(ToStatus(err))
				resp.Code, resp.Error = int32(st.Code()), st.Message()
			}
			out <- resp
			inflight.Done()
		})
	}
	inflight.Wait()
	close(out)
	if err := <-sendErr; err != nil {
		return err
	}
	if errors.Is(recvErr, ioEOF) {
		return nil
	}
	return recvErr
}

func deliveriesOut(group, topic string, ds []cluster.Delivery) *pb.FetchResponse {
	out := &pb.FetchResponse{Group: group, Topic: topic, Deliveries: make([]*pb.Delivery, len(ds))}
	for i, d := range ds {
		m := &pb.Message{Key: d.Key, Payload: d.Payload, Id: d.ID, TimestampUnixNano: d.Timestamp}
		for _, h := range d.Headers {
			m.Headers = append(m.Headers, &pb.Header{Key: h.Key, Value: h.Value})
		}
		out.Deliveries[i] = &pb.Delivery{Partition: int32(d.Partition), Offset: d.Offset, Message: m, Deliveries: d.Deliveries}
	}
	return out
}

// maxFetchWait bounds how long one Fetch may wait.
const maxFetchWait = 5 * time.Minute

// Fetch implements the API.
func (s *Server) Fetch(ctx context.Context, r *pb.FetchRequest) (*pb.FetchResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.Fetch); ok {
		return resp, err
	}
	wait := min(durationOf(r.GetWait()), maxFetchWait)
	ds, err := s.node.Fetch(ctx, r.GetGroup(), r.GetTopic(), int(r.GetMax()), wait)
	if err != nil && ctx.Err() != nil {
		// The caller's deadline ended the wait: nothing came. The client
		// reports its own context's error if it is done too.
		return &pb.FetchResponse{}, nil
	}
	if err != nil {
		return nil, ToStatus(err)
	}
	return deliveriesOut(r.GetGroup(), r.GetTopic(), ds), nil
}

// Subscribe implements the API: it fetches and streams batches until the
// client cancels. Deliveries the client did not settle are delivered
// again after the group's AckWait.
func (s *Server) Subscribe(r *pb.SubscribeRequest, stream pb.Walmq_SubscribeServer) error {
	ctx := stream.Context()
	if c, fctx, err := s.leader(ctx); err != nil || c != nil {
		if err != nil {
			return ToStatus(err)
		}
		return s.forwardSubscribe(c, fctx, r, stream)
	}
	max := int(r.GetMax())
	if max <= 0 {
		max = 256
	}
	for ctx.Err() == nil {
		ds, err := s.node.Fetch(ctx, r.GetGroup(), r.GetTopic(), max, time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return ToStatus(err)
		}
		if len(ds) == 0 {
			continue
		}
		if err := stream.Send(deliveriesOut(r.GetGroup(), r.GetTopic(), ds)); err != nil {
			return err
		}
	}
	return nil
}

type refKey struct {
	group, topic string
	part         int
}

func groupRefs(refs []*pb.Ref) (map[refKey][]uint64, []refKey) {
	out := map[refKey][]uint64{}
	var order []refKey
	for _, r := range refs {
		k := refKey{r.GetGroup(), r.GetTopic(), int(r.GetPartition())}
		if _, ok := out[k]; !ok {
			order = append(order, k)
		}
		out[k] = append(out[k], r.GetOffset())
	}
	return out, order
}

// Ack implements the API.
func (s *Server) Ack(ctx context.Context, r *pb.AckRequest) (*pb.AckResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.Ack); ok {
		return resp, err
	}
	for _, po := range r.GetOffsets() {
		if err := s.node.Ack(r.GetGroup(), r.GetTopic(), int(po.GetPartition()), po.GetOffsets()); err != nil {
			return nil, ToStatus(err)
		}
	}
	m, order := groupRefs(r.GetRefs())
	for _, k := range order {
		if err := s.node.Ack(k.group, k.topic, k.part, m[k]); err != nil {
			return nil, ToStatus(err)
		}
	}
	return &pb.AckResponse{}, nil
}

// Nack implements the API.
func (s *Server) Nack(ctx context.Context, r *pb.NackRequest) (*pb.NackResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.Nack); ok {
		return resp, err
	}
	m, order := groupRefs(r.GetRefs())
	for _, k := range order {
		if err := s.node.Nack(k.group, k.topic, k.part, m[k], durationOf(r.GetDelay())); err != nil {
			return nil, ToStatus(err)
		}
	}
	return &pb.NackResponse{}, nil
}

// Term implements the API.
func (s *Server) Term(ctx context.Context, r *pb.TermRequest) (*pb.TermResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.Term); ok {
		return resp, err
	}
	if _, err := s.Ack(ctx, &pb.AckRequest{Refs: r.GetRefs()}); err != nil {
		return nil, err
	}
	for _, ref := range r.GetRefs() {
		s.log.Info("message terminated", "topic", ref.GetTopic(), "group", ref.GetGroup(),
			"partition", ref.GetPartition(), "offset", ref.GetOffset(), "reason", r.GetReason())
	}
	return &pb.TermResponse{}, nil
}

func groupConfigIn(c *pb.GroupConfig) (fsm.GroupConfig, bool) {
	out := fsm.GroupConfig{AckWait: durationOf(c.GetAckWait()), MaxDeliver: int(c.GetMaxDeliver()), DeadLetterTopic: c.GetDeadLetterTopic()}
	if out.AckWait == 0 {
		out.AckWait = 30 * time.Second
	}
	switch {
	case out.MaxDeliver == 0:
		out.MaxDeliver = 5
	case out.MaxDeliver < 0:
		out.MaxDeliver = 0
	}
	return out, c.GetStartAt() == pb.StartAt_START_AT_LATEST
}

// CreateGroup implements the API.
func (s *Server) CreateGroup(ctx context.Context, r *pb.CreateGroupRequest) (*pb.CreateGroupResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.CreateGroup); ok {
		return resp, err
	}
	cfg, latest := groupConfigIn(r.GetConfig())
	return &pb.CreateGroupResponse{}, ToStatus(s.node.CreateGroup(ctx, r.GetTopic(), r.GetGroup(), cfg, latest))
}

// DeleteGroup implements the API.
func (s *Server) DeleteGroup(ctx context.Context, r *pb.DeleteGroupRequest) (*pb.DeleteGroupResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.DeleteGroup); ok {
		return resp, err
	}
	_, err := s.node.Apply(ctx, &fsm.DeleteGroup{Topic: r.GetTopic(), Group: r.GetGroup()})
	return &pb.DeleteGroupResponse{}, ToStatus(err)
}

// ListGroups implements the API.
func (s *Server) ListGroups(ctx context.Context, r *pb.ListGroupsRequest) (*pb.ListGroupsResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.ListGroups); ok {
		return resp, err
	}
	if err := s.node.VerifyLeader(ctx); err != nil {
		return nil, ToStatus(err)
	}
	t, err := s.node.FSM().Topic(r.GetTopic())
	if err != nil {
		return nil, ToStatus(err)
	}
	return &pb.ListGroupsResponse{Groups: slices.Sorted(maps.Keys(t.Groups))}, nil
}

// DescribeGroup implements the API.
func (s *Server) DescribeGroup(ctx context.Context, r *pb.DescribeGroupRequest) (*pb.DescribeGroupResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.DescribeGroup); ok {
		return resp, err
	}
	if err := s.node.VerifyLeader(ctx); err != nil {
		return nil, ToStatus(err)
	}
	gi, err := s.node.DescribeGroup(r.GetTopic(), r.GetGroup())
	if err != nil {
		return nil, ToStatus(err)
	}
	out := &pb.DescribeGroupResponse{Topic: r.GetTopic(), Group: r.GetGroup(), Config: &pb.GroupConfig{
		AckWait: durationpb.New(gi.Config.AckWait), MaxDeliver: int32(gi.Config.MaxDeliver), DeadLetterTopic: gi.Config.DeadLetterTopic}}
	if gi.Config.MaxDeliver == 0 {
		out.Config.MaxDeliver = -1
	}
	for _, p := range gi.Partitions {
		out.Partitions = append(out.Partitions, &pb.GroupPartition{Partition: int32(p.Partition), AckFloor: p.AckFloor,
			EndOffset: p.EndOffset, Lag: p.Lag, Pending: int32(p.Pending)})
	}
	return out, nil
}

// ResetGroup implements the API.
func (s *Server) ResetGroup(ctx context.Context, r *pb.ResetGroupRequest) (*pb.ResetGroupResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.ResetGroup); ok {
		return resp, err
	}
	var at time.Time
	if ts := r.GetTime(); ts != nil {
		at = ts.AsTime()
	}
	return &pb.ResetGroupResponse{}, ToStatus(s.node.ResetGroup(ctx, r.GetTopic(), r.GetGroup(), r.GetOffset(), at))
}

// Status implements the API.
func (s *Server) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	st := s.node.Status()
	out := &pb.StatusResponse{NodeId: st.NodeID, Role: st.Role, Leader: st.Leader, Term: st.Term, AppliedIndex: st.AppliedIndex}
	for _, m := range st.Members {
		out.Members = append(out.Members, &pb.Member{Id: m.ID, Address: m.Address, Suffrage: m.Suffrage, Leader: m.Leader,
			ClientAddress: m.ClientAddr})
	}
	out.DamagedSegments, out.SegmentsRepaired, out.ScrubPasses = damagedOut(st.Damaged), st.SegmentsRepaired, st.ScrubPasses
	return out, nil
}
