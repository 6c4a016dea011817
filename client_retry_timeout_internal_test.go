package walmq

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/walmq/walmq/api/walmq/v1"
	"github.com/walmq/walmq/transport"
)

// TestRetryInterceptorUnknownOutcome: an idempotent call whose outcome is
// unknown (ErrTimeout, as when the leader a follower forwarded it to
// stopped leading) is repeated; a call that is not idempotent is not.
func TestRetryInterceptorUnknownOutcome(t *testing.T) {
	unknown := transport.ToStatus(fmt.Errorf("%w: forwarded to n2, which stopped leading", ErrTimeout))
	for _, tc := range []struct {
		method string
		tries  int
		ok     bool
	}{
		{pb.Walmq_Ack_FullMethodName, 2, true},
		{pb.Walmq_DescribeTopic_FullMethodName, 2, true},
		{pb.Walmq_CreateTopic_FullMethodName, 1, false},
	} {
		t.Run(tc.method, func(t *testing.T) {
			calls := 0
			invoke := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				calls++
				if calls == 1 {
					return unknown
				}
				return nil
			}
			err := retryInterceptor(time.Second, func() {})(context.Background(), tc.method, nil, nil, nil, invoke)
			if calls != tc.tries || (err == nil) != tc.ok {
				t.Fatalf("%d tries, %v; want %d tries, ok %v", calls, err, tc.tries, tc.ok)
			}
			if !tc.ok && !errors.Is(transport.FromStatus(err), ErrTimeout) {
				t.Fatalf("got %v; want ErrTimeout", err)
			}
		})
	}
}

// TestRetryInterceptorKeepsAckUnknown: an Ack whose first try's outcome is
// unknown may have settled its offsets; a retry then refused (nothing
// pending any more) must not be reported as a refusal but as unknown.
// A read's later answer stands as it is.
func TestRetryInterceptorKeepsAckUnknown(t *testing.T) {
	unknown := transport.ToStatus(ErrTimeout)
	notPending := transport.ToStatus(fmt.Errorf("%w: offset 3", ErrNotPending))
	for _, tc := range []struct {
		method string
		want   error
	}{
		{pb.Walmq_Ack_FullMethodName, ErrTimeout},
		{pb.Walmq_Nack_FullMethodName, ErrTimeout},
		{pb.Walmq_DescribeTopic_FullMethodName, ErrNotPending},
	} {
		t.Run(tc.method, func(t *testing.T) {
			calls := 0
			invoke := func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
				calls++
				if calls == 1 {
					return unknown
				}
				return notPending
			}
			err := retryInterceptor(time.Second, func() {})(context.Background(), tc.method, nil, nil, nil, invoke)
			if calls != 2 || !errors.Is(transport.FromStatus(err), tc.want) {
				t.Fatalf("%d tries, %v; want 2 tries and %v", calls, err, tc.want)
			}
		})
	}
}
