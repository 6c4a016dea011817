package main

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/transport"
)

// joinCluster asks the member at cfg.Join to add this node, until it is a
// voter of the configuration or ctx is done. The leader adds it as a
// non-voter, waits until it has caught up, then promotes it.
func joinCluster(ctx context.Context, cfg config, node *cluster.Node, log hclog.Logger) {
	conn, err := grpc.NewClient(transport.DialTarget(cfg.Join), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Error("join: bad address", "join", cfg.Join, "error", err)
		return
	}
	defer conn.Close()
	raftAddr := cfg.RaftAdvertise
	if raftAddr == "" {
		raftAddr = cfg.RaftAddr
	}
	for attempt := 0; ; attempt++ {
		if isVoter(node) {
			if attempt > 0 {
				log.Info("joined the cluster as a voter", "via", cfg.Join)
			}
			return
		}
		if attempt == 0 {
			log.Info("joining the cluster: waiting to catch up before promotion", "via", cfg.Join)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		_, err := pb.NewWalmqClient(conn).JoinMember(cctx, &pb.JoinMemberRequest{Id: cfg.NodeID, RaftAddress: raftAddr})
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			log.Warn("join failed; retrying", "via", cfg.Join, "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func isVoter(n *cluster.Node) bool {
	for _, m := range n.Status().Members {
		if m.ID == n.NodeID() && m.Suffrage == "voter" {
			return true
		}
	}
	return false
}
