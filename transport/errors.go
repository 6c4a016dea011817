package transport

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/fsm"
	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/partition"
)

// ErrUnavailable: the node cannot be reached, or answered Unavailable for a
// reason no other error names.
var ErrUnavailable = errors.New("walmq: node unavailable")

// The one place where walmq errors meet gRPC status codes. The server maps
// an error to its code with the sentinel's text first in the message; the
// client maps the code and that text back to the same sentinel, so
// errors.Is works across the wire.
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{fsm.ErrTopicNotFound, codes.NotFound},
	{fsm.ErrGroupNotFound, codes.NotFound},
	{fsm.ErrTopicExists, codes.AlreadyExists},
	{fsm.ErrGroupExists, codes.AlreadyExists},
	{fsm.ErrInvalidName, codes.InvalidArgument},
	{fsm.ErrInvalidConfig, codes.InvalidArgument},
	{fsm.ErrPartitionRange, codes.InvalidArgument},
	{fsm.ErrMessageTooLarge, codes.InvalidArgument},
	{fsm.ErrEmptyPublish, codes.InvalidArgument},
	{fsm.ErrBadCommand, codes.InvalidArgument},
	{cluster.ErrInvalidArgument, codes.InvalidArgument},
	{cluster.ErrUnknownMember, codes.NotFound},
	{cluster.ErrQuorum, codes.FailedPrecondition},
	{partition.ErrNotPending, codes.FailedPrecondition},
	{journal.ErrOffsetTruncated, codes.OutOfRange},
	{journal.ErrCorrupt, codes.DataLoss},
	{cluster.ErrNotLeader, codes.Unavailable},
	{cluster.ErrClosed, codes.Unavailable},
	{cluster.ErrTimeout, codes.DeadlineExceeded},
	{fsm.ErrFailed, codes.Internal},
}

// ToStatus converts an error of the broker into a gRPC status error.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			msg := err.Error()
			if !strings.HasPrefix(msg, e.err.Error()) {
				msg = e.err.Error() + ": " + msg
			}
			return status.Error(e.code, msg)
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// FromStatus converts a gRPC status error back into an error that wraps
// the walmq sentinel it came from, when there is one.
func FromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	for _, e := range errorCodes {
		if st.Code() == e.code && strings.HasPrefix(st.Message(), e.err.Error()) {
			rest := strings.TrimPrefix(strings.TrimPrefix(st.Message(), e.err.Error()), ": ")
			if rest == "" {
				return e.err
			}
			return fmt.Errorf("%w: %s", e.err, rest)
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Errorf("%w: %s", ErrUnavailable, st.Message())
	case codes.DeadlineExceeded:
		return fmt.Errorf("%w: %s", cluster.ErrTimeout, st.Message())
	case codes.Canceled:
		return fmt.Errorf("%w: %s", context.Canceled, st.Message())
	}
	return err
}
