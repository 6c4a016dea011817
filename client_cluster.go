package walmq

import (
	"context"
	"fmt"
	"math"

	pb "github.com/walmq/walmq/api/walmq/v1"
)

// JoinMember adds the server id, whose Raft listens on raftAddr, to the
// cluster. It joins as a non-voter; unless nonVoter is set, the leader
// promotes it to voter once it has caught up with the log as of the join,
// and JoinMember returns then. Bound the wait with ctx: catching up may
// take long on a large log. Joining a member already there at that
// address only promotes it (when nonVoter is not set).
func (c *Client) JoinMember(ctx context.Context, id, raftAddr string, nonVoter bool) error {
	_, err := c.api.JoinMember(ctx, &pb.JoinMemberRequest{Id: id, RaftAddress: raftAddr, NonVoter: nonVoter})
	return wrap(err)
}

// RemoveMember removes the server id from the cluster. The leader refuses
// to remove a voter when the voters left that answer it could not form a
// quorum.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	_, err := c.api.RemoveMember(ctx, &pb.RemoveMemberRequest{Id: id})
	return wrap(err)
}

// TransferLeader hands leadership to the voter id, or to the most current
// voter when id is empty, and returns the new leader's id.
func (c *Client) TransferLeader(ctx context.Context, id string) (newLeader string, err error) {
	r, err := c.api.TransferLeader(ctx, &pb.TransferLeaderRequest{Id: id})
	if err != nil {
		return "", wrap(err)
	}
	return r.GetLeader(), nil
}

// ChecksumResult is one node's digest of partitions of a topic: the node
// that answered (Checksum is served by the node dialled, never forwarded)
// and its applied Raft index when it answered.
type ChecksumResult struct {
	NodeID       string
	AppliedIndex uint64
	Partitions   []PartitionChecksum
}

// PartitionChecksum digests the messages a partition retains in offsets
// [First, Upto): Messages of them, with CRC32C (Castagnoli) over each one's
// offset, timestamp, key, id, headers and payload in offset order.
// Replicas that applied the same entries have equal digests.
type PartitionChecksum struct {
	Partition   int
	First, Upto uint64
	CRC32C      uint32
	Messages    uint64
}

// Checksum digests partitions of topic on the node dialled: partitions
// (every partition of the topic when empty), each below its upto value
// (upto[i] for partitions[i], or for partition i when partitions is
// empty). The node first waits, within ctx, until it holds that far. An
// upto of 0, or an empty upto, digests up to what the node holds now.
func (c *Client) Checksum(ctx context.Context, topic string, partitions []int, upto []uint64) (ChecksumResult, error) {
	req := &pb.ChecksumRequest{Topic: topic, Upto: upto}
	for _, p := range partitions {
		if p < 0 || p > math.MaxUint32 {
			return ChecksumResult{}, fmt.Errorf("%w: partition %d", ErrPartitionRange, p)
		}
		req.Partitions = append(req.Partitions, uint32(p))
	}
	if len(partitions) > 0 && len(upto) > 0 && len(upto) != len(partitions) {
		return ChecksumResult{}, fmt.Errorf("%w: %d upto values for %d partitions", ErrInvalidArgument, len(upto), len(partitions))
	}
	r, err := c.api.Checksum(ctx, req)
	if err != nil {
		return ChecksumResult{}, wrap(err)
	}
	out := ChecksumResult{NodeID: r.GetNodeId(), AppliedIndex: r.GetAppliedIndex()}
	for _, p := range r.GetPartitions() {
		out.Partitions = append(out.Partitions, PartitionChecksum{Partition: int(p.GetPartition()), First: p.GetFirst(),
			Upto: p.GetUpto(), CRC32C: p.GetCrc32C(), Messages: p.GetMessages()})
	}
	return out, nil
}
