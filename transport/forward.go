package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/cluster"
)

// forwardedKey marks a request a follower forwarded to the leader: the
// leader serves it or refuses it, never forwards it again.
const forwardedKey = "walmq-forwarded-by"

// forwarder keeps one client connection per leader address.
type forwarder struct {
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	closed bool
}

// DialTarget turns a client address ("host:port" or "unix:///path") into a
// gRPC target.
func DialTarget(addr string) string {
	if strings.HasPrefix(addr, "unix:") {
		return addr
	}
	return "passthrough:///" + addr
}

func (f *forwarder) client(addr string, maxBytes int) (pb.WalmqClient, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, cluster.ErrClosed
	}
	if c, ok := f.conns[addr]; ok {
		return pb.NewWalmqClient(c), nil
	}
	c, err := grpc.NewClient(DialTarget(addr), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxBytes), grpc.MaxCallSendMsgSize(maxBytes)))
	if err != nil {
		return nil, fmt.Errorf("transport: leader at %s: %w", addr, err)
	}
	if f.conns == nil {
		f.conns = map[string]*grpc.ClientConn{}
	}
	f.conns[addr] = c
	return pb.NewWalmqClient(c), nil
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

func forwarded(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	return ok && len(md.Get(forwardedKey)) > 0
}

// leader returns a client of the leader and the context to call it with
// when this node is a follower and the request must go to the leader; a
// nil client when the request is served here (this node leads, or the
// request was already forwarded once: then it is refused here if this
// node does not lead). The context names the leader (whileLeader).
func (s *Server) leader(ctx context.Context) (pb.WalmqClient, context.Context, error) {
	if s.node.IsLeader() || forwarded(ctx) {
		return nil, ctx, nil
	}
	id, addr := s.node.LeaderClientAddr()
	switch {
	case id == "":
		return nil, ctx, fmt.Errorf("%w: no leader known", cluster.ErrNotLeader)
	case id == s.node.NodeID():
		return nil, ctx, nil // leading, but not yet ready: refused here
	case addr == "":
		return nil, ctx, fmt.Errorf("%w: the leader %s has not announced its client address yet", cluster.ErrNotLeader, id)
	}
	c, err := s.fwd.client(addr, s.opts.MaxRequestBytes)
	if err != nil {
		return nil, ctx, err
	}
	ctx = context.WithValue(ctx, forwardedToKey{}, id)
	return c, metadata.AppendToOutgoingContext(ctx, forwardedKey, s.node.NodeID()), nil
}

// forwardedToKey is the context key of the leader id a call is forwarded
// to.
type forwardedToKey struct{}

// errStoppedLeading is why a forwarded call was cut short: the leader it
// went to is no longer the one this node follows. The leader may have
// stored the write before it lost touch, so its outcome is unknown.
type errStoppedLeading struct{ id string }

func (e errStoppedLeading) Error() string {
	return fmt.Sprintf("forwarded to %s, which stopped leading", e.id)
}

// recheckLeader is how often a forwarded call reads the leader again,
// should a leader change go unsignalled.
const recheckLeader = 500 * time.Millisecond

// whileLeader derives the context of a call forwarded to the leader named
// in ctx (by leader): it is canceled, with errStoppedLeading as its cause,
// as soon as this node observes another leader or none, so that a call to
// a leader that was paused or cut off ends when the others elect a new one
// rather than at the client's deadline. stop releases it (and its
// goroutine, which also ends with ctx).
func (s *Server) whileLeader(ctx context.Context) (context.Context, func()) {
	id, _ := ctx.Value(forwardedToKey{}).(string)
	ctx, cancel := context.WithCancelCause(ctx)
	if id == "" {
		return ctx, func() { cancel(nil) }
	}
	changed, unwatch := s.node.WatchLeader()
	// Read the leader after subscribing: a change since leader() read it
	// is seen here, a later one is signalled.
	if cur, _ := s.node.LeaderClientAddr(); cur != id {
		unwatch()
		cancel(errStoppedLeading{id})
		return ctx, func() { cancel(nil) }
	}
	go func() {
		defer unwatch()
		// Raft drops an observation its observer's buffer has no room
		// for: the leader is also read again every recheckLeader.
		t := time.NewTicker(recheckLeader)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-t.C:
			}
			if cur, _ := s.node.LeaderClientAddr(); cur != id {
				cancel(errStoppedLeading{id})
				return
			}
		}
	}()
	return ctx, func() { cancel(nil) }
}

// leaderLost turns the error of a call made under fctx (from whileLeader
// on ctx) into an unknown outcome when the call failed because its leader
// stopped leading: ErrTimeout, DeadlineExceeded on the wire, which clients
// may retry (a publish with message ids, an idempotent call). It is not
// ErrNotLeader: that says nothing was stored, and the old leader may have
// committed the write before it lost touch. Any other error, or one after
// ctx itself ended, is returned as is.
func leaderLost(ctx, fctx context.Context, err error) error {
	var lost errStoppedLeading
	if err == nil || ctx.Err() != nil || !errors.As(context.Cause(fctx), &lost) {
		return err
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Canceled {
		return err // the leader's own answer, which came first
	}
	return ToStatus(fmt.Errorf("%w: %w", cluster.ErrTimeout, lost))
}

// forward calls the leader with a unary request when this node must not
// serve it; ok reports whether it did (then resp, err are the answer).
func forward[Req, Resp any](s *Server, ctx context.Context, r Req,
	call func(pb.WalmqClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (resp Resp, ok bool, err error) {
	return forwardCall(s, ctx, r, call, true)
}

// forwardMoving is forward for the calls that move the leadership
// themselves (a transfer, the removal of the leader): the move is their
// success, so it does not end them.
func forwardMoving[Req, Resp any](s *Server, ctx context.Context, r Req,
	call func(pb.WalmqClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (resp Resp, ok bool, err error) {
	return forwardCall(s, ctx, r, call, false)
}

func forwardCall[Req, Resp any](s *Server, ctx context.Context, r Req,
	call func(pb.WalmqClient, context.Context, Req, ...grpc.CallOption) (Resp, error), watch bool) (resp Resp, ok bool, err error) {
	c, fctx, err := s.leader(ctx)
	if err != nil {
		return resp, true, ToStatus(err)
	}
	if c == nil {
		return resp, false, nil
	}
	if !watch {
		resp, err = call(c, fctx, r)
		return resp, true, err
	}
	lctx, stop := s.whileLeader(fctx)
	defer stop()
	resp, err = call(c, lctx, r)
	return resp, true, leaderLost(ctx, lctx, err)
}

// forwardPublishStream pipes a publish stream to the leader. When that
// leader stops leading, the stream ends with an unknown outcome for the
// batches not answered yet (leaderLost).
func (s *Server) forwardPublishStream(c pb.WalmqClient, fctx context.Context, stream pb.Walmq_PublishStreamServer) (err error) {
	lctx, stop := s.whileLeader(fctx)
	defer stop()
	defer func() { err = leaderLost(stream.Context(), lctx, err) }()
	ctx, cancel := context.WithCancel(lctx)
	defer cancel()
	up, err := c.PublishStream(ctx)
	if err != nil {
		return err
	}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				if errors.Is(err, io.EOF) {
					up.CloseSend()
				} else {
					cancel()
				}
				return
			}
			if err := up.Send(r); err != nil {
				return // up.Recv below reports why
			}
		}
	}()
	for {
		resp, err := up.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// forwardSubscribe pipes a subscription from the leader, until that
// leader stops leading (leaderLost: the client subscribes again).
func (s *Server) forwardSubscribe(c pb.WalmqClient, fctx context.Context, r *pb.SubscribeRequest, stream pb.Walmq_SubscribeServer) (err error) {
	ctx, stop := s.whileLeader(fctx)
	defer stop()
	defer func() { err = leaderLost(stream.Context(), ctx, err) }()
	up, err := c.Subscribe(ctx, r)
	if err != nil {
		return err
	}
	for {
		resp, err := up.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// announce keeps this node's client address in the replicated state, so
// that followers can forward to it when it leads: the leader records its
// own, a follower sends its own to the leader.
func (s *Server) announce(addr string) {
	defer s.bgWG.Done()
	wait := 50 * time.Millisecond
	for {
		select {
		case <-s.bgCtx.Done():
			return
		case <-time.After(wait):
		}
		id := s.node.NodeID()
		if s.node.FSM().ClientAddr(id) == addr {
			wait = 2 * time.Second
			continue
		}
		wait = 250 * time.Millisecond
		ctx, cancel := context.WithTimeout(s.bgCtx, 5*time.Second)
		err := s.announceOnce(ctx, id, addr)
		cancel()
		if err != nil {
			s.log.Debug("announce client address", "error", err)
		} else {
			s.log.Info("announced client address", "address", addr)
		}
	}
}

func (s *Server) announceOnce(ctx context.Context, id, addr string) error {
	if s.node.IsLeader() {
		return s.node.Announce(ctx, id, addr)
	}
	c, fctx, err := s.leader(ctx)
	if err != nil {
		return err
	}
	if c == nil {
		return cluster.ErrNotLeader
	}
	_, err = c.AnnounceMember(fctx, &pb.AnnounceMemberRequest{Id: id, ClientAddress: addr})
	return err
}
