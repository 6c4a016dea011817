package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/walmq/walmq"
	"github.com/walmq/walmq/transport"
)

// stopTimeout bounds the graceful stop: requests still running after it
// are cut off.
const stopTimeout = 10 * time.Second

// run runs a node configured by args and env until ctx is done, then stops
// it gracefully. Logs go to stderr. It returns nil after a clean stop, an
// error wrapping errUsage for a bad command line (the usage was printed),
// flag.ErrHelp for -h, or the error that ended the node.
func run(ctx context.Context, args []string, env func(string) string, stderr io.Writer) error {
	cfg, err := loadConfig(args, env, stderr)
	if err != nil {
		return err
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "walmq-node", Level: cfg.LogLevel, Output: stderr})
	return serve(ctx, cfg, log)
}

// serve opens the broker, serves it until ctx is done or the node fails,
// and shuts down. A start that fails leaves nothing behind: no listener,
// no socket file, and no data directory if this call created it.
func serve(ctx context.Context, cfg config, log hclog.Logger) (err error) {
	created, err := makeDir(cfg.DataDir)
	if err != nil {
		return err
	}
	unlock, err := lockDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	started := false
	defer func() {
		if !started && created {
			os.RemoveAll(cfg.DataDir)
		}
	}()

	scrub := cfg.ScrubInterval
	if scrub == 0 {
		scrub = -1 // only the pass after the start
	}
	b, err := walmq.Open(cfg.DataDir, walmq.Options{Logger: log, NodeID: cfg.NodeID, RaftAddr: cfg.RaftAddr,
		RaftAdvertise: cfg.RaftAdvertise, Peers: cfg.Peers, NoBootstrap: cfg.Join != "",
		SegmentBytes: cfg.SegmentBytes, ScrubInterval: scrub, SyncLeaderLog: cfg.SyncLeaderLog})
	if err != nil {
		return fmt.Errorf("open broker in %s: %w", cfg.DataDir, err)
	}
	srv, err := transport.NewServer(b.Node(), transport.Options{Listen: cfg.Listen, Socket: cfg.Socket,
		Advertise: cfg.Advertise, Logger: log.Named("transport")})
	if err != nil {
		b.Close()
		return listenError(cfg, err)
	}
	started = true
	where := []any{"node", cfg.NodeID, "data", cfg.DataDir}
	if cfg.RaftAddr != "" {
		where = append(where, "raft", cfg.RaftAddr)
	}
	if a := srv.TCPAddr(); a != nil {
		where = append(where, "tcp", a.String())
	}
	if cfg.Socket != "" {
		where = append(where, "socket", cfg.Socket)
	}
	log.Info("listening", where...)

	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	joinCtx, stopJoin := context.WithCancel(ctx)
	joined := make(chan struct{})
	go func() {
		defer close(joined)
		if cfg.Join != "" {
			joinCluster(joinCtx, cfg, b.Node(), log)
		}
	}()
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-served:
		served <- runErr // for the wait below
		runErr = fmt.Errorf("serve: %w", runErr)
		log.Error("serving failed, shutting down", "error", runErr)
	case <-b.Node().Failed():
		runErr = fmt.Errorf("node failed: %w", b.Node().Err())
		log.Error("node failed, shutting down", "error", runErr)
	}
	stopJoin()
	<-joined
	stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	srv.Stop(stopCtx)
	cancel()
	<-served
	if err := b.Close(); err != nil {
		return errors.Join(runErr, fmt.Errorf("close broker: %w", err))
	}
	if runErr == nil {
		log.Info("stopped")
	}
	return runErr
}

// listenError says in plain words why the server could not listen.
func listenError(cfg config, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("cannot listen on %s: address already in use (another process serves there; choose another address with --listen)", cfg.Listen)
	case errors.Is(err, transport.ErrSocketInUse):
		return fmt.Errorf("cannot listen on unix socket %s: another process serves on it (choose another path with --socket)", cfg.Socket)
	}
	return err
}

// makeDir creates dir if needed and reports whether it did.
func makeDir(dir string) (created bool, err error) {
	if _, err := os.Stat(dir); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	return true, nil
}

// lockDir takes an exclusive lock on the data directory so that a second
// node started on it fails at once with a clear message (the Raft log's
// own lock would make it wait forever). The lock goes with the process.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another process (another walmq-node?)", dir)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
