package transport

import (
	"context"
	"fmt"
	"time"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/cluster"
)

// JoinMember implements the API: the server joins as a non-voter; unless
// asked to stay one, it is promoted once it has applied the leader's log
// as of the join (it reports its applied index in Status, at the client
// address it announces).
func (s *Server) JoinMember(ctx context.Context, r *pb.JoinMemberRequest) (*pb.JoinMemberResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.JoinMember); ok {
		return resp, err
	}
	if err := s.node.AddLearner(ctx, r.GetId(), r.GetRaftAddress()); err != nil {
		return nil, ToStatus(err)
	}
	if r.GetNonVoter() {
		return &pb.JoinMemberResponse{}, nil
	}
	target := s.node.FSM().AppliedIndex()
	s.log.Info("member joining: waiting for it to catch up", "id", r.GetId(), "index", target)
	if err := s.waitCaughtUp(ctx, r.GetId(), target); err != nil {
		return nil, ToStatus(fmt.Errorf("%w: %s joined as a non-voter but has not caught up (join again to promote it): %w",
			cluster.ErrTimeout, r.GetId(), err))
	}
	if err := s.node.Promote(ctx, r.GetId()); err != nil {
		return nil, ToStatus(err)
	}
	s.log.Info("member promoted to voter", "id", r.GetId())
	return &pb.JoinMemberResponse{}, nil
}

// waitCaughtUp polls the member's own status until it has applied index.
func (s *Server) waitCaughtUp(ctx context.Context, id string, index uint64) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := "it has not announced its client address"
	for {
		var member pb.WalmqClient
		if addr := s.node.FSM().ClientAddr(id); addr != "" {
			c, err := s.fwd.client(addr, s.opts.MaxRequestBytes)
			if err != nil {
				return err
			}
			member = c
		}
		if member != nil {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := member.Status(sctx, &pb.StatusRequest{})
			cancel()
			if err == nil && st.GetNodeId() != id {
				// The address it announced reaches another node (a
				// loopback or socket address on another host?).
				return fmt.Errorf("the client address %s announced by %s reaches %s", s.node.FSM().ClientAddr(id), id, st.GetNodeId())
			}
			if err == nil && st.GetAppliedIndex() >= index {
				return nil
			}
			if err == nil {
				last = fmt.Sprintf("it has applied %d of %d", st.GetAppliedIndex(), index)
			} else {
				last = err.Error()
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", last, ctx.Err())
		case <-t.C:
		}
	}
}

// RemoveMember implements the API.
func (s *Server) RemoveMember(ctx context.Context, r *pb.RemoveMemberRequest) (*pb.RemoveMemberResponse, error) {
	if resp, ok, err := forwardMoving(s, ctx, r, pb.WalmqClient.RemoveMember); ok {
		return resp, err
	}
	return &pb.RemoveMemberResponse{}, ToStatus(s.node.RemoveMember(ctx, r.GetId(), s.followsMe))
}

// followsMe asks member id, at the client address it announced, whom it
// follows: it counts as live for a removal only if it answers within a
// second that this node leads.
func (s *Server) followsMe(ctx context.Context, id string) bool {
	addr := s.node.FSM().ClientAddr(id)
	if addr == "" {
		return false
	}
	c, err := s.fwd.client(addr, s.opts.MaxRequestBytes)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := c.Status(ctx, &pb.StatusRequest{})
	return err == nil && st.GetNodeId() == id && st.GetLeader() == s.node.NodeID()
}

// TransferLeader implements the API.
func (s *Server) TransferLeader(ctx context.Context, r *pb.TransferLeaderRequest) (*pb.TransferLeaderResponse, error) {
	if resp, ok, err := forwardMoving(s, ctx, r, pb.WalmqClient.TransferLeader); ok {
		return resp, err
	}
	id, err := s.node.TransferLeadership(ctx, r.GetId())
	if err != nil {
		return nil, ToStatus(err)
	}
	return &pb.TransferLeaderResponse{Leader: id}, nil
}

// AnnounceMember implements the API (nodes call it).
func (s *Server) AnnounceMember(ctx context.Context, r *pb.AnnounceMemberRequest) (*pb.AnnounceMemberResponse, error) {
	if resp, ok, err := forward(s, ctx, r, pb.WalmqClient.AnnounceMember); ok {
		return resp, err
	}
	if r.GetId() == "" || r.GetClientAddress() == "" {
		return nil, ToStatus(fmt.Errorf("%w: announce needs an id and an address", cluster.ErrInvalidArgument))
	}
	return &pb.AnnounceMemberResponse{}, ToStatus(s.node.Announce(ctx, r.GetId(), r.GetClientAddress()))
}

// Checksum implements the API. It is served by this node, never
// forwarded: it digests this replica. With upto given, it first waits
// (within the request's deadline) until the partition holds that much.
func (s *Server) Checksum(ctx context.Context, r *pb.ChecksumRequest) (*pb.ChecksumResponse, error) {
	f := s.node.FSM()
	n, err := f.PartitionCount(r.GetTopic())
	for wait := time.Now().Add(10 * time.Second); err != nil && len(r.GetUpto()) > 0 && time.Now().Before(wait) && ctx.Err() == nil; {
		// Asked for offsets this replica has not applied yet: its topic
		// may not exist yet either.
		time.Sleep(20 * time.Millisecond)
		n, err = f.PartitionCount(r.GetTopic())
	}
	if err != nil {
		return nil, ToStatus(err)
	}
	parts := r.GetPartitions()
	if len(parts) == 0 {
		for i := range n {
			parts = append(parts, uint32(i))
		}
	}
	if len(r.GetUpto()) > 0 && len(r.GetUpto()) != len(parts) {
		return nil, ToStatus(fmt.Errorf("%w: %d upto values for %d partitions", cluster.ErrInvalidArgument, len(r.GetUpto()), len(parts)))
	}
	out := &pb.ChecksumResponse{NodeId: s.node.NodeID()}
	for k, pi := range parts {
		var upto uint64
		if len(r.GetUpto()) > 0 {
			upto = r.GetUpto()[k]
			p, err := f.Partition(r.GetTopic(), int(pi))
			if err != nil {
				return nil, ToStatus(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			for p.Watermark() < upto {
				if err := p.Wait(wctx, p.Watermark()); err != nil {
					break
				}
			}
			cancel()
			if w := p.Watermark(); w < upto {
				return nil, ToStatus(fmt.Errorf("%w: partition %d holds offsets below %d, not yet %d", cluster.ErrTimeout, pi, w, upto))
			}
		}
		d, err := f.Digest(r.GetTopic(), int(pi), upto)
		if err != nil {
			return nil, ToStatus(err)
		}
		out.Partitions = append(out.Partitions, &pb.PartitionChecksum{Partition: pi, First: d.First, Upto: d.Upto,
			Crc32C: d.CRC32C, Messages: d.Messages})
	}
	out.AppliedIndex = f.AppliedIndex()
	return out, nil
}
