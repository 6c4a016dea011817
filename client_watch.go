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
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	pb "github.com/walmq/walmq/api/walmq/v1"
)

// A node that stops answering without closing its connections (a paused
// process, a host cut off without a reset) leaves the calls in flight on
// it hanging: gRPC's keepalive would notice, but a client may not ping
// more often than every 10 s. A client of a cluster (a list of nodes)
// therefore watches its calls itself. A unary call is overdue once it has
// waited stallAfter past what it asked for (a fetch's wait) since its
// request was sent; a publish stream once a batch sent stallAfter ago is
// unanswered and nothing has been answered since. Then the watchdog asks
// the node the channel talks to for its status. If that does not answer
// within probeTimeout, the node is left out of the address list for a
// while (the channel moves to the next one) and the overdue calls and
// streams on it end with an unknown outcome (ErrTimeout), which Publish
// (with message ids), the idempotent calls and PublishAsync's callers
// retry elsewhere. An overdue call or stream on a connection the channel
// has already left is ended the same way. One on a node that answers the
// probe is left alone: that node is slow, not gone.
const (
	stallAfter   = time.Second
	probeTimeout = 500 * time.Millisecond
	watchEvery   = 250 * time.Millisecond
)

// errStalled is the cause of the calls the watchdog ends.
var errStalled = errors.New("the node stopped answering")

// watcher tracks the calls in flight of a client of a cluster, and which
// listed address each connection it dialed is.
type watcher struct {
	mu     sync.Mutex
	calls  map[*watchedCall]struct{}
	listed map[string]string // remote socket address -> the listed address dialed
}

// watchedCall is a unary call or a publish stream being watched. addr is
// the remote socket address of the connection it went out on (empty until
// its headers are sent); sent when its request was (unary calls).
type watchedCall struct {
	budget time.Duration // how long it may wait by design (a fetch's wait)
	cancel context.CancelCauseFunc
	stream *pubStream // a publish stream (its own stall test), or nil
	addr   atomic.Pointer[string]
	sent   atomic.Int64 // unix nanos; 0 before the request is sent
}

func (wc *watchedCall) remote() string {
	if p := wc.addr.Load(); p != nil {
		return *p
	}
	return ""
}

func newWatcher() *watcher {
	return &watcher{calls: map[*watchedCall]struct{}{}, listed: map[string]string{}}
}

// dialer dials a listed address and remembers which it was, by the
// connection's remote address (what peers and stats report).
func (w *watcher) dialer(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err == nil {
		w.mu.Lock()
		w.listed[conn.RemoteAddr().String()] = addr
		w.mu.Unlock()
	}
	return conn, err
}

// listedAddr is the listed address a connection to remote was dialed as.
func (w *watcher) listedAddr(remote string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.listed[remote]
}

type watchKey struct{}

// track registers wc; the returned context carries it to the stats
// handler, and the func unregisters it.
func (w *watcher) track(ctx context.Context, wc *watchedCall) (context.Context, func()) {
	w.mu.Lock()
	w.calls[wc] = struct{}{}
	w.mu.Unlock()
	return context.WithValue(ctx, watchKey{}, wc), func() {
		w.mu.Lock()
		delete(w.calls, wc)
		w.mu.Unlock()
	}
}

// overdue lists the calls and streams that have waited too long.
func (w *watcher) overdue(now time.Time) []*watchedCall {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*watchedCall
	for wc := range w.calls {
		if wc.stream != nil {
			if wc.stream.stalled(now) {
				out = append(out, wc)
			}
			continue
		}
		if sent := wc.sent.Load(); sent != 0 && now.Sub(time.Unix(0, sent)) > wc.budget+stallAfter {
			out = append(out, wc)
		}
	}
	return out
}

// TagRPC, HandleRPC, TagConn and HandleConn make the watcher a
// stats.Handler: it learns the connection each watched call goes out on,
// and when its request was sent.
func (w *watcher) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (w *watcher) HandleRPC(ctx context.Context, s stats.RPCStats) {
	wc, _ := ctx.Value(watchKey{}).(*watchedCall)
	if wc == nil {
		return
	}
	switch s := s.(type) {
	case *stats.OutHeader:
		if s.Client && s.RemoteAddr != nil {
			a := s.RemoteAddr.String()
			wc.addr.Store(&a)
		}
	case *stats.OutPayload:
		if s.Client && wc.stream == nil {
			wc.sent.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
}

func (w *watcher) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (w *watcher) HandleConn(context.Context, stats.ConnStats)                       {}

// unwatched are the calls the watchdog leaves alone: its own probe, and a
// checksum, which waits for the node to hold a range.
var unwatched = map[string]bool{
	pb.Walmq_Status_FullMethodName:   true,
	pb.Walmq_Checksum_FullMethodName: true,
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
		wctx, untrack := w.track(cctx, &watchedCall{budget: budgetOf(req), cancel: cancel})
		err := invoker(wctx, method, req, reply, cc, opts...)
		untrack()
		if status.Code(err) == codes.Canceled && ctx.Err() == nil && errors.Is(context.Cause(cctx), errStalled) {
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

// checkStalls probes the node when a call or a publish stream is overdue,
// and ends those that wait on a node that does not answer, or on a
// connection the channel has left.
func (c *Client) checkStalls() {
	overdue := c.wd.overdue(time.Now())
	if len(overdue) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, probeTimeout)
	var p peer.Peer
	_, err := c.api.Status(ctx, &pb.StatusRequest{}, grpc.Peer(&p))
	cancel()
	if c.ctx.Err() != nil || p.Addr == nil {
		return // the channel has no connection yet: nothing to judge
	}
	probed := p.Addr.String()
	answered := err == nil
	if !answered && status.Code(err) != codes.DeadlineExceeded {
		return // refused or reset: gRPC notices that by itself
	}
	if !answered {
		c.exclude(c.wd.listedAddr(probed))
	}
	for _, wc := range overdue {
		switch a := wc.remote(); {
		case a == "":
			// Not on a connection yet: waiting for one is not a stall.
		case a == probed && answered:
			// Its node answers: slow, not gone.
		default:
			wc.cancel(errStalled)
		}
	}
}

// exclude leaves a listed address out of the channel's address list for
// excludeFor, so pick_first moves to the next node; each exclusion
// expires on its own, and with every address excluded all are listed.
func (c *Client) exclude(addr string) {
	if addr == "" {
		return
	}
	c.avoidMu.Lock()
	defer c.avoidMu.Unlock()
	if c.resDone {
		return
	}
	if c.excluded == nil {
		c.excluded = map[string]time.Time{}
	}
	c.excluded[addr] = time.Now().Add(excludeFor)
	c.updateAddrsLocked()
	time.AfterFunc(excludeFor, func() {
		c.avoidMu.Lock()
		defer c.avoidMu.Unlock()
		if !c.resDone {
			c.updateAddrsLocked()
		}
	})
}

// excludeFor is how long an address the client left stays out of its
// list.
const excludeFor = 10 * time.Second

// updateAddrsLocked gives the resolver the listed addresses not
// excluded now (all of them when every one is). avoidMu is held.
func (c *Client) updateAddrsLocked() {
	now := time.Now()
	var addrs []string
	for _, a := range c.addrs {
		if until, ok := c.excluded[a]; ok && now.Before(until) {
			continue
		}
		delete(c.excluded, a)
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		addrs = c.addrs
	}
	c.res.UpdateState(resolver.State{Addresses: resolverAddrs(addrs)})
}
