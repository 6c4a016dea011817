package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/walmq/walmq"
	"github.com/walmq/walmq/cmd/internal/proctest"
)

func dial(t *testing.T, addr string) *walmq.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := walmq.Dial(ctx, addr, walmq.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serves checks that a node answers at addr.
func serves(t *testing.T, addr string) {
	t.Helper()
	c := dial(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil || st.Role != "leader" {
		t.Fatalf("status at %s: %+v, %v", addr, st, err)
	}
	c.Close()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// startNode starts a walmq-node process on data, 127.0.0.1 and sock.
func startNode(t *testing.T, data, sock string, extra ...string) *proctest.Node {
	t.Helper()
	args := append([]string{"--data", data, "--listen", "127.0.0.1:0", "--socket", sock}, extra...)
	return proctest.Start(t, nodeBin, proctest.Env(), args...)
}

// runNode runs a walmq-node process that is expected to exit by itself.
func runNode(t *testing.T, args ...string) proctest.Result {
	t.Helper()
	return proctest.Run(t, proctest.StartTimeout, proctest.Env(), nil, nodeBin, args...)
}

func TestPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "n.sock")
	r := runNode(t, "--data", data, "--listen", l.Addr().String(), "--socket", sock)
	want := "walmq-node: cannot listen on " + l.Addr().String() + ": address already in use"
	if r.Code != 1 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and %q", r.Code, r.Stderr, want)
	}
	if exists(data) || exists(sock) {
		t.Fatalf("a failed start left behind the data directory (%v) or the socket (%v)", exists(data), exists(sock))
	}
}

func TestSocketInUse(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "n.sock")
	a := startNode(t, filepath.Join(dir, "a"), sock)

	other := filepath.Join(dir, "b")
	r := runNode(t, "--data", other, "--listen", "127.0.0.1:0", "--socket", sock)
	want := "walmq-node: cannot listen on unix socket " + sock + ": another process serves on it"
	if r.Code != 1 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and %q", r.Code, r.Stderr, want)
	}
	if exists(other) {
		t.Fatal("a failed start left its data directory behind")
	}
	serves(t, "unix://"+sock)
	serves(t, a.Addr)
	if code := a.Stop(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, a.Log())
	}
}

func TestDataDirInUse(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	a := startNode(t, data, filepath.Join(dir, "a.sock"))
	c := dial(t, a.Addr)
	if err := c.CreateTopic(context.Background(), "kept", walmq.TopicConfig{}); err != nil {
		t.Fatal(err)
	}

	r := runNode(t, "--data", data, "--listen", "127.0.0.1:0", "--socket", filepath.Join(dir, "b.sock"))
	if r.Code != 1 || !strings.Contains(r.Stderr, "data directory "+data+" is in use by another process") {
		t.Fatalf("exit %d, stderr:\n%s", r.Code, r.Stderr)
	}
	if _, err := c.DescribeTopic(context.Background(), "kept"); err != nil {
		t.Fatalf("the first node, after a second one tried its directory: %v", err)
	}
}

// TestSIGTERM stops a node while a client publishes into it: it exits 0,
// removes its socket, and every publish it acknowledged is there after a
// restart.
func TestSIGTERM(t *testing.T) {
	dir := t.TempDir()
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "n.sock")
	n := startNode(t, data, sock)
	ctx := context.Background()
	c, err := walmq.Dial(ctx, "unix://"+sock, walmq.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic(ctx, "t", walmq.TopicConfig{}); err != nil {
		t.Fatal(err)
	}

	var (
		mu     sync.Mutex
		acked  = map[string]uint64{}
		failed int
	)
	sem := make(chan struct{}, 64)
	signalled := false
	for i := 0; ; i++ {
		mu.Lock()
		done := len(acked)
		mu.Unlock()
		if !signalled && done >= 2000 {
			n.Signal(t, syscall.SIGTERM)
			signalled = true
		}
		if signalled && (i%1000 == 0 || n.Exited()) {
			break // stop publishing soon after the signal
		}
		sem <- struct{}{}
		payload := fmt.Sprintf("m-%d", i)
		err := c.PublishAsync(ctx, "t", 0, []walmq.Message{{Payload: []byte(payload)}}, func(acks []walmq.PublishAck, err error) {
			mu.Lock()
			if err != nil {
				failed++
			} else {
				acked[payload] = acks[0].Offset
			}
			mu.Unlock()
			<-sem
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	c.Close() // waits for the answers of every publish sent
	if code := n.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, n.Log())
	}
	if exists(sock) {
		t.Fatal("the socket file is still there after a graceful stop")
	}
	if !strings.Contains(n.Log(), "walmq-node: stopped") {
		t.Fatalf("no \"stopped\" in the log:\n%s", n.Log())
	}
	t.Logf("%d publishes acknowledged, %d failed", len(acked), failed)

	m := startNode(t, data, sock)
	c = dial(t, m.Addr)
	got := map[string]uint64{}
	for {
		ds, err := c.Fetch(ctx, "verify", "t", 1000, 500*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if len(ds) == 0 {
			break
		}
		for _, d := range ds {
			got[string(d.Payload)] = d.Offset
		}
	}
	for p, off := range acked {
		if g, ok := got[p]; !ok || g != off {
			t.Fatalf("%s acknowledged at offset %d, after the restart: %d, %v", p, off, g, ok)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunEnv runs a node in this process, configured from the
// environment, with one flag that overrides it.
func TestRunEnv(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{
		"WALMQ_DATA":      filepath.Join(dir, "envdata"),
		"WALMQ_LISTEN":    "127.0.0.1:0",
		"WALMQ_SOCKET":    filepath.Join(dir, "env.sock"),
		"WALMQ_LOG_LEVEL": "debug",
	}
	flagSock := filepath.Join(dir, "flag.sock")
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--socket", flagSock}, func(k string) string { return env[k] }, &logs)
	}()

	deadline := time.Now().Add(proctest.StartTimeout)
	for !strings.Contains(logs.String(), "walmq-node: listening") {
		select {
		case err := <-done:
			t.Fatalf("run ended: %v\n%s", err, logs.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("not listening after %v:\n%s", proctest.StartTimeout, logs.String())
		}
	}
	if !exists(filepath.Join(env["WALMQ_DATA"], "raft")) {
		t.Errorf("no data in %s", env["WALMQ_DATA"])
	}
	if exists(env["WALMQ_SOCKET"]) {
		t.Errorf("served on the environment's socket, not the flag's")
	}
	if !strings.Contains(logs.String(), "[DEBUG]") {
		t.Errorf("WALMQ_LOG_LEVEL=debug: no debug lines in the log")
	}
	serves(t, "unix://"+flagSock)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	if exists(flagSock) {
		t.Fatal("the socket is still there after run returned")
	}
}

func TestRunUsage(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"--log-level", "loud"}, func(string) string { return "" }, &stderr)
	if err == nil || !strings.Contains(stderr.String(), `invalid --log-level "loud"`) {
		t.Fatalf("run: %v, stderr %q", err, stderr.String())
	}
	// The binary exits 2 on a bad command line, after the usage.
	r := runNode(t, "--bogus")
	if r.Code != 2 || !strings.Contains(r.Stderr, "flag provided but not defined: -bogus") || !strings.Contains(r.Stderr, "Usage: walmq-node") {
		t.Fatalf("exit %d, stderr:\n%s", r.Code, r.Stderr)
	}
}
