package fsm

import "errors"

// The errors a command can be refused with. They are walmq's public error
// vocabulary: the root package re-exports them and transport maps them to
// gRPC status codes. Every replica refuses the same command the same way,
// and a refused command changes nothing.
var (
	ErrInvalidName     = errors.New("walmq: invalid name")
	ErrInvalidConfig   = errors.New("walmq: invalid configuration")
	ErrTopicNotFound   = errors.New("walmq: topic not found")
	ErrTopicExists     = errors.New("walmq: topic already exists")
	ErrPartitionRange  = errors.New("walmq: partition out of range")
	ErrGroupNotFound   = errors.New("walmq: consumer group not found")
	ErrGroupExists     = errors.New("walmq: consumer group already exists")
	ErrMessageTooLarge = errors.New("walmq: message too large")
	ErrEmptyPublish    = errors.New("walmq: publish without messages")
	ErrBadCommand      = errors.New("walmq: malformed command")

	// ErrFailed means the state machine hit a storage error while applying
	// a committed entry. The node stops: it never skips an entry.
	ErrFailed = errors.New("walmq: state machine failed")
)
