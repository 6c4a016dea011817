package walmq_test

import (
	"context"
	"testing"
	"time"

	"github.com/walmq/walmq"
	"github.com/walmq/walmq/transport"
)

// testBroker is a Broker plus the two controls the tests need to make
// batched work happen now.
type testBroker interface {
	walmq.Broker
	CommitAcks(context.Context) error
	EnforceRetention(context.Context) error
}

// opener opens a broker on a data directory; closing it closes everything
// it started.
type opener func(t testing.TB, dir string, opts walmq.Options) testBroker

// forEachEnv runs a test against both implementations of Broker: the
// embedded broker, and a Client over gRPC to a node serving that broker.
func forEachEnv(t *testing.T, test func(*testing.T, opener)) {
	t.Run("embedded", func(t *testing.T) { test(t, openEmbedded) })
	t.Run("grpc", func(t *testing.T) { test(t, openRemote) })
}

func openEmbedded(t testing.TB, dir string, opts walmq.Options) testBroker {
	t.Helper()
	b, err := walmq.Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return b
}

// openBroker is the embedded opener, for tests that need only it.
func openBroker(t testing.TB, dir string, opts walmq.Options) *walmq.Embedded {
	return openEmbedded(t, dir, opts).(*walmq.Embedded)
}

// remote is a Client to a node serving an embedded broker on 127.0.0.1.
type remote struct {
	*walmq.Client
	e      *walmq.Embedded
	srv    *transport.Server
	served chan error
}

func openRemote(t testing.TB, dir string, opts walmq.Options) testBroker {
	t.Helper()
	e := openBroker(t, dir, opts)
	srv, err := transport.NewServer(e.Node(), transport.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	r := &remote{e: e, srv: srv, served: make(chan error, 1)}
	go func() { r.served <- srv.Serve() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r.Client, err = walmq.Dial(ctx, srv.TCPAddr().String(), walmq.DialOptions{}); err != nil {
		r.stop()
		t.Fatal(err)
	}
	return r
}

func (r *remote) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.srv.Stop(ctx)
	<-r.served
	return r.e.Close()
}

func (r *remote) Close() error {
	err := r.Client.Close()
	if serr := r.stop(); err == nil {
		err = serr
	}
	return err
}

func (r *remote) CommitAcks(ctx context.Context) error       { return r.e.CommitAcks(ctx) }
func (r *remote) EnforceRetention(ctx context.Context) error { return r.e.EnforceRetention(ctx) }
