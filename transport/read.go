package transport

import (
	"context"
	"fmt"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/cluster"
)

// Limits of one Read.
const (
	defaultReadMax = 1000
	maxReadMax     = 10000
)

// Read implements the API. It is served by this node, never forwarded:
// it reads this replica.
func (s *Server) Read(ctx context.Context, r *pb.ReadRequest) (*pb.ReadResponse, error) {
	max := int(r.GetMax())
	switch {
	case max == 0:
		max = defaultReadMax
	case max > maxReadMax:
		return nil, ToStatus(fmt.Errorf("%w: max %d, the limit is %d", cluster.ErrInvalidArgument, max, maxReadMax))
	}
	wait := min(durationOf(r.GetWait()), maxFetchWait)
	res, err := s.node.Read(ctx, r.GetTopic(), int(r.GetPartition()), r.GetOffset(), max, s.opts.MaxRequestBytes/2, wait)
	if err != nil {
		return nil, ToStatus(err)
	}
	out := &pb.ReadResponse{NodeId: s.node.NodeID(), Partition: r.GetPartition(), FirstOffset: res.First,
		NextOffset: res.Next, Records: make([]*pb.Record, len(res.Messages))}
	for i, m := range res.Messages {
		pm := &pb.Message{Key: m.Key, Payload: m.Payload, Id: m.ID, TimestampUnixNano: m.Timestamp}
		for _, h := range m.Headers {
			pm.Headers = append(pm.Headers, &pb.Header{Key: h.Key, Value: h.Value})
		}
		out.Records[i] = &pb.Record{Offset: m.Offset, Message: pm}
	}
	return out, nil
}
