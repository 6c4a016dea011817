package transport_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/partition"
	"github.com/walmq/walmq/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	node   *cluster.Node
	srv    *transport.Server
	conn   *grpc.ClientConn
	api    pb.WalmqClient
	served chan error
}

func start(t *testing.T, opts transport.Options) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	node, err := cluster.Open(ctx, cluster.Config{Dir: t.TempDir(), MaxMessageBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Listen == "" && opts.Socket == "" {
		opts.Listen = "127.0.0.1:0"
	}
	srv, err := transport.NewServer(node, opts)
	if err != nil {
		node.Close()
		t.Fatal(err)
	}
	f := &fixture{node: node, srv: srv, served: make(chan error, 1)}
	go func() { f.served <- srv.Serve() }()
	target := "passthrough:///" + srv.TCPAddr().String()
	f.conn, err = grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	f.api = pb.NewWalmqClient(f.conn)
	t.Cleanup(func() {
		f.conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Stop(ctx)
		if err := <-f.served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		node.Close()
	})
	return f
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStatusCodes(t *testing.T) {
	f := start(t, transport.Options{MaxRequestBytes: 64 << 10})
	ctx := ctx10(t)
	if _, err := f.api.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "t", Config: &pb.TopicConfig{Partitions: 2}}); err != nil {
		t.Fatal(err)
	}
	p5 := int32(5)
	tests := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"bad topic name", func() error {
			_, err := f.api.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "bad/name"})
			return err
		}, codes.InvalidArgument},
		{"topic exists", func() error {
			_, err := f.api.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "t"})
			return err
		}, codes.AlreadyExists},
		{"unknown topic", func() error {
			_, err := f.api.Publish(ctx, &pb.PublishRequest{Topic: "nope", Messages: []*pb.Message{{Payload: []byte("x")}}})
			return err
		}, codes.NotFound},
		{"partition out of range", func() error {
			_, err := f.api.Publish(ctx, &pb.PublishRequest{Topic: "t", Partition: &p5, Messages: []*pb.Message{{Payload: []byte("x")}}})
			return err
		}, codes.InvalidArgument},
		{"message too large", func() error {
			_, err := f.api.Publish(ctx, &pb.PublishRequest{Topic: "t", Messages: []*pb.Message{{Payload: make([]byte, 1001)}}})
			return err
		}, codes.InvalidArgument},
		{"request over the size limit", func() error {
			_, err := f.api.Publish(ctx, &pb.PublishRequest{Topic: "t", Messages: []*pb.Message{{Payload: make([]byte, 100<<10)}}})
			return err
		}, codes.ResourceExhausted},
		{"empty publish", func() error {
			_, err := f.api.Publish(ctx, &pb.PublishRequest{Topic: "t"})
			return err
		}, codes.InvalidArgument},
		{"ack of an offset not delivered", func() error {
			if _, err := f.api.CreateGroup(ctx, &pb.CreateGroupRequest{Topic: "t", Group: "g"}); err != nil {
				return err
			}
			_, err := f.api.Ack(ctx, &pb.AckRequest{Refs: []*pb.Ref{{Group: "g", Topic: "t", Offset: 3}}})
			return err
		}, codes.FailedPrecondition},
		{"unknown group", func() error {
			_, err := f.api.DescribeGroup(ctx, &pb.DescribeGroupRequest{Topic: "t", Group: "nope"})
			return err
		}, codes.NotFound},
		{"fetch of zero", func() error {
			_, err := f.api.Fetch(ctx, &pb.FetchRequest{Topic: "t", Group: "g"})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(tc.call()); got != tc.code {
				t.Fatalf("code %v, want %v", got, tc.code)
			}
		})
	}
	// The node still serves, and nothing was stored.
	d, err := f.api.DescribeTopic(ctx, &pb.DescribeTopicRequest{Name: "t"})
	if err != nil || d.GetTopic().GetPartitions()[0].GetNextOffset() != 0 || d.GetTopic().GetPartitions()[1].GetNextOffset() != 0 {
		t.Fatalf("after bad requests: %v %v", d, err)
	}
	h, err := healthpb.NewHealthClient(f.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", h, err)
	}
}

func TestErrorsRoundTrip(t *testing.T) {
	for _, sentinel := range []error{fsm.ErrTopicNotFound, fsm.ErrGroupNotFound, fsm.ErrTopicExists, fsm.ErrInvalidName,
		fsm.ErrPartitionRange, fsm.ErrMessageTooLarge, partition.ErrNotPending, cluster.ErrNotLeader, cluster.ErrTimeout, fsm.ErrFailed} {
		wrapped := errors.Join(sentinel, errors.New("detail"))
		back := transport.FromStatus(transport.ToStatus(wrapped))
		if !errors.Is(back, sentinel) {
			t.Errorf("%v came back as %v", sentinel, back)
		}
	}
	if err := transport.FromStatus(status.Error(codes.Unavailable, "connection refused")); !errors.Is(err, transport.ErrUnavailable) {
		t.Errorf("unavailable: %v", err)
	}
}

// TestClientGoneMidStream: a publisher that disconnects with batches in
// flight leaves the node serving, its queued batches stored, and no
// goroutine behind (TestMain checks).
func TestClientGoneMidStream(t *testing.T) {
	f := start(t, transport.Options{})
	ctx := ctx10(t)
	f.api.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "t"})
	sctx, cancel := context.WithCancel(ctx)
	st, err := f.api.PublishStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	p0 := int32(0)
	for i := 0; i < 200; i++ {
		if err := st.Send(&pb.PublishRequest{Seq: uint64(i), Topic: "t", Partition: &p0, Messages: []*pb.Message{{Payload: []byte("x")}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel() // gone, without reading the rest
	// The node keeps serving.
	r, err := f.api.Publish(ctx, &pb.PublishRequest{Topic: "t", Partition: &p0, Messages: []*pb.Message{{Payload: []byte("after")}}})
	if err != nil {
		t.Fatal(err)
	}
	if off := r.GetAcks()[0].GetOffset(); off < 1 || off > 200 {
		t.Fatalf("offset after the stream %d", off)
	}
}

func TestListenErrors(t *testing.T) {
	f := start(t, transport.Options{})
	node := f.node
	// A port in use.
	if _, err := transport.NewServer(node, transport.Options{Listen: f.srv.TCPAddr().String()}); err == nil {
		t.Fatal("listened on a port in use")
	}
	// A socket another server serves on is refused; a stale one replaced.
	sock := filepath.Join(t.TempDir(), "w.sock")
	s1, err := transport.NewServer(node, transport.Options{Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s1.Serve() }()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	if _, err := transport.NewServer(node, transport.Options{Socket: sock}); !errors.Is(err, transport.ErrSocketInUse) {
		t.Fatalf("second server on a live socket: %v", err)
	}
	s1.Stop(context.Background())
	<-served
	// A stale socket file (nobody listening) is replaced.
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	s2, err := transport.NewServer(node, transport.Options{Socket: sock})
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	go func() { served <- s2.Serve() }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := pb.NewWalmqClient(conn).Status(ctx10(t), &pb.StatusRequest{}); err != nil {
		t.Fatalf("status over the socket: %v", err)
	}
	conn.Close()
	s2.Stop(context.Background())
	<-served
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after Stop: %v", err)
	}
}
