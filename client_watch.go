package walmq

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/walmq/walmq/api/walmq/v1"
)

// A node that stops answering without closing its connections (a paused
// process, a host cut off without a reset) leaves the calls in flight on
// it hanging: gRPC's keepalive would notice, but a client may not ping
// more often than every 10 s. A client of a cluster (a list of nodes)
// therefore watches its calls itself. When one has waited stallAfter past
// what it asked for (a fetch's wait), the watchdog asks the node it talks
// to for its status; if that does not answer within probeTimeout, the
// node is left out of the address list for a while (the channel moves to
// the next node) and every call in flight on it ends with an unknown
// outcome (ErrTimeout), which Publish (with message ids), the idempotent
// calls and PublishAsync's callers retry elsewhere. A call still waiting
// on a node the channel has already left is ended the same way.
const (
	stallAfter   = time.Second
	probeTimeout = 500 * time.Millisecond
	watchEvery   = 250 * time.Millisecond
)

// errStalled is the cause of the calls the watchdog ends.
var errStalled = errors.New("the node stopped answering")

// watcher tracks the calls in flight of a client of a cluster.
type watcher struct {
	cur atomic.Pointer[string] // the address of the last connection dialed

	mu    sync.Mutex
	seq   uint64
	calls map[uint64]*watchedCall
}

type watchedCall struct {
	start  time.Time
	budget time.Duration // how long it may wait by design (a fetch's wait)
	addr   string        // the current address when it started
	cancel context.CancelCauseFunc
}

func newWatcher() *watcher { return &watcher{calls: map[uint64]*watchedCall{}} }

// dialer dials addr and records it as the current address.
func (w *watcher) dialer(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err == nil {
		w.cur.Store(&addr)
	}
	return conn, err
}

func (w *watcher) current() string {
	if p := w.cur.Load(); p != nil {
		return *p
	}
	return ""
}

// track registers a call whose context cancel ends; the returned func
// unregisters it.
func (w *watcher) track(budget time.Duration, cancel context.CancelCauseFunc) func() {
	w.mu.Lock()
	w.seq++
	id := w.seq
	w.calls[id] = &watchedCall{start: time.Now(), budget: budget, addr: w.current(), cancel: cancel}
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		delete(w.calls, id)
		w.mu.Unlock()
	}
}

// overdue lists the calls that have waited stallAfter past their budget.
func (w *watcher) overdue(now time.Time) []*watchedCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*watchedCall
	for _, c := range w.calls {
		if now.Sub(c.start) > c.budget+stallAfter {
			out = append(out, c)
		}
	}
	return out
}

// unwatched are the calls the watchdog leaves alone: its own probe, and
// those that wait by design for longer than a stall (a checksum waits for
// the node to hold a range; a raw-record stream runs as long as a repair).
var unwatched = map[string]bool{
	pb.Walmq_Status_FullMethodName:      true,
	pb.Walmq_Checksum_FullMethodName:    true,
	pb.Walmq_ReadRecords_FullMethodName: true,
}

// budgetOf is how long a request may wait by design.
func budgetOf(req any) time.Duration {
	switch r := req.(type) {
	case *pb.FetchRequest:
		return r.GetWait().AsDuration()
	case *pb.ReadRequest:
		return r.GetWait().AsDuration()
	}
	return 0
}

// interceptor watches each unary call (each try: it runs inside the retry
// interceptor). A call the watchdog ends fails with DeadlineExceeded: an
// unknown outcome (ErrTimeout).
func (w *watcher) interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if unwatched[method] {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		cctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		untrack := w.track(budgetOf(req), cancel)
		err := invoker(cctx, method, req, reply, cc, opts...)
		untrack()
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(cctx), errStalled) {
			return status.Error(codes.DeadlineExceeded, "walmq: "+errStalled.Error()+" (outcome unknown)")
		}
		return err
	}
}

// watch runs the watchdog until the client closes.
func (c *Client) watch() {
	defer c.streamsWG.Done()
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.checkStalls()
	}
}

// checkStalls probes the node when a call or the publish stream is
// overdue, and ends what waits on a node that does not answer, or on one
// the channel has left.
func (c *Client) checkStalls() {
	now := time.Now()
	overdue := c.wd.overdue(now)
	c.mu.Lock()
	s := c.stream
	c.mu.Unlock()
	streamStalled := s != nil && s.stalled(now)
	if len(overdue) == 0 && !streamStalled {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, probeTimeout)
	var p peer.Peer
	_, err := c.api.Status(ctx, &pb.StatusRequest{}, grpc.Peer(&p))
	cancel()
	if c.ctx.Err() != nil {
		return
	}
	if err == nil {
		// The node answers: a call is slow, or it waits on a connection
		// the channel has left (then it never ends by itself).
		if p.Addr == nil {
			return
		}
		for _, oc := range overdue {
			if oc.addr != "" && oc.addr != p.Addr.String() {
				oc.cancel(errStalled)
			}
		}
		return
	}
	if status.Code(err) != codes.DeadlineExceeded {
		return // refused or unreachable: gRPC sees that by itself
	}
	stuck := c.wd.current()
	if stuck != "" {
		c.exclude(stuck)
	}
	for _, oc := range overdue {
		oc.cancel(errStalled)
	}
	if streamStalled {
		s.cancel(errStalled)
	}
}
