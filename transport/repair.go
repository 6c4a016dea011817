package transport

import (
	"bytes"
	"context"
	"errors"
	"io"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/cluster"
)

// recordsBatch is how many bytes of records one ReadRecords response
// carries at most (a larger record goes alone).
const recordsBatch = 1 << 20

// ReadRecords implements the API (nodes call it to repair a damaged
// segment). It is served by this node, never forwarded: it streams this
// replica's records, each checked before it is sent; a damaged one ends
// the stream with DataLoss.
func (s *Server) ReadRecords(r *pb.ReadRecordsRequest, stream pb.Walmq_ReadRecordsServer) error {
	out := &pb.ReadRecordsResponse{}
	size := 0
	flush := func() error {
		if len(out.Records) == 0 {
			return nil
		}
		err := stream.Send(out)
		out, size = &pb.ReadRecordsResponse{}, 0
		return err
	}
	err := s.node.ReadRecords(stream.Context(), r.GetTopic(), int(r.GetPartition()), r.GetFrom(), r.GetTo(), func(rec []byte) error {
		if size > 0 && size+len(rec) > recordsBatch {
			if err := flush(); err != nil {
				return err
			}
		}
		out.Records = append(out.Records, bytes.Clone(rec))
		size += len(rec)
		return nil
	})
	if err != nil {
		return ToStatus(err)
	}
	return flush()
}

// peerRecords fetches records from other nodes with ReadRecords, over the
// connections the server keeps for forwarding: the node's cluster.PeerRecords.
type peerRecords struct{ s *Server }

var _ cluster.PeerRecords = peerRecords{}

func (p peerRecords) Records(ctx context.Context, _, addr, topic string, part int, from, to uint64, fn func(rec []byte) error) error {
	c, err := p.s.fwd.client(addr, p.s.opts.MaxRequestBytes)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.ReadRecords(ctx, &pb.ReadRecordsRequest{Topic: topic, Partition: uint32(part), From: from, To: to})
	if err != nil {
		return FromStatus(err)
	}
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return FromStatus(err)
		}
		for _, rec := range resp.GetRecords() {
			if err := fn(rec); err != nil {
				return err
			}
		}
	}
}

func damagedOut(ds []cluster.DamagedSegment) []*pb.DamagedSegment {
	var out []*pb.DamagedSegment
	for _, d := range ds {
		out = append(out, &pb.DamagedSegment{Topic: d.Topic, Partition: uint32(d.Partition), Segment: d.Segment,
			Position: d.Position, Reason: d.Reason, FirstOffset: d.First, NextOffset: d.Next})
	}
	return out
}
