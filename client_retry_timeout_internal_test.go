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
