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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

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
// node does not lead).
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
	return c, metadata.AppendToOutgoingContext(ctx, forwardedKey, s.node.NodeID()), nil
}

// forward calls the leader with a unary request when this node must not
// serve it; ok reports whether it did (then resp, err are the answer).
func forward[Req, Resp any](s *Server, ctx context.Context, r Req,
	call func(pb.WalmqClient, context.Context, Req, ...grpc.CallOption) (Resp, error)) (resp Resp, ok bool, err error) {
	c, fctx, err := s.leader(ctx)
	if err != nil {
		return resp, true, ToStatus(err)
	}
	if c == nil {
		return resp, false, nil
	}
	resp, err = call(c, fctx, r)
	return resp, true, err
}

// forwardPublishStream pipes a publish stream to the leader.
func (s *Server) forwardPublishStream(c pb.WalmqClient, ctx context.Context, stream pb.Walmq_PublishStreamServer) error {
	ctx, cancel := context.WithCancel(ctx)
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

// forwardSubscribe pipes a subscription from the leader.
func (s *Server) forwardSubscribe(c pb.WalmqClient, ctx context.Context, r *pb.SubscribeRequest, stream pb.Walmq_SubscribeServer) error {
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
