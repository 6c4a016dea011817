package walmq

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/transport"
)

// scriptedAPI answers Publish with the errors of a script, then with the
// last one forever.
type scriptedAPI struct {
	pb.WalmqClient
	errs  []error
	calls int
}

func (s *scriptedAPI) Publish(context.Context, *pb.PublishRequest, ...grpc.CallOption) (*pb.PublishResponse, error) {
	err := s.errs[min(s.calls, len(s.errs)-1)]
	s.calls++
	if err == nil {
		return &pb.PublishResponse{Acks: []*pb.PublishAck{{Offset: 7, Duplicate: true}}}, nil
	}
	return nil, err
}

// TestPublishRetryKeepsUnknown: a publish whose first try's outcome is
// unknown, retried by id and then refused until RetryFor ends, must say
// "unknown", not "refused": jepsen-lite found a stored message reported as
// ErrNotLeader this way.
func TestPublishRetryKeepsUnknown(t *testing.T) {
	unknown := transport.ToStatus(ErrTimeout)
	refused := transport.ToStatus(ErrNotLeader)
	msgs := []Message{{ID: "a", Payload: []byte("x")}}
	for _, tc := range []struct {
		name  string
		errs  []error
		want  error
		notIs error
	}{
		{"refused, then refused", []error{refused}, ErrNotLeader, nil},
		{"unknown, then refused", []error{unknown, refused}, ErrTimeout, ErrNotLeader},
		{"refused, unknown, refused", []error{refused, unknown, refused}, ErrTimeout, ErrNotLeader},
		{"unknown, then stored", []error{unknown, nil}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := &scriptedAPI{errs: tc.errs}
			c := &Client{api: api, opts: DialOptions{RetryFor: 300 * time.Millisecond}}
			acks, err := c.publishRetry(context.Background(), &pb.PublishRequest{Topic: "t", Messages: messagesPB(msgs)}, msgs)
			if tc.want == nil {
				if err != nil || len(acks) != 1 || acks[0].Offset != 7 {
					t.Fatalf("got %v, %v; want the ack", acks, err)
				}
				return
			}
			if !errors.Is(err, tc.want) || (tc.notIs != nil && errors.Is(err, tc.notIs)) {
				t.Fatalf("got %v; want %v and not %v", err, tc.want, tc.notIs)
			}
			if api.calls < 2 {
				t.Fatalf("%d tries: no retry", api.calls)
			}
		})
	}
}
