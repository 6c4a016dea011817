package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/walmq/walmq/cmd/internal/proctest"
)

// race is set by race_test.go when the tests run with -race; the
// binaries are then built with it too.
var race bool

// Paths of the binaries TestMain builds.
var walmqBin, nodeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "walmq-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := proctest.Build(dir, race, "github.com/walmq/walmq/cmd/walmq", "github.com/walmq/walmq/cmd/walmq-node"); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	walmqBin, nodeBin = filepath.Join(dir, "walmq"), filepath.Join(dir, "walmq-node")
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testNode is a walmq-node process serving on 127.0.0.1 and a socket in
// a temporary directory.
type testNode struct {
	*proctest.Node
	data, socket string
}

// startNode starts a node on data (a new directory if ""), serving on a
// free port of 127.0.0.1 and on a socket in a temporary directory.
func startNode(t *testing.T, data string) *testNode {
	t.Helper()
	if data == "" {
		data = filepath.Join(t.TempDir(), "data")
	}
	sock := filepath.Join(t.TempDir(), "n.sock")
	n := proctest.Start(t, nodeBin, proctest.Env(), "--data", data, "--listen", "127.0.0.1:0", "--socket", sock)
	return &testNode{Node: n, data: data, socket: sock}
}

// restart starts a node on the same data directory and socket.
func (n *testNode) restart(t *testing.T) *testNode {
	t.Helper()
	m := proctest.Start(t, nodeBin, proctest.Env(), "--data", n.data, "--listen", "127.0.0.1:0", "--socket", n.socket)
	return &testNode{Node: m, data: n.data, socket: n.socket}
}

// cli runs walmq with args against server and stdin, to completion.
func cli(t *testing.T, server string, stdin string, args ...string) proctest.Result {
	t.Helper()
	return proctest.Run(t, 60*time.Second, proctest.Env(), []byte(stdin), walmqBin, append([]string{"--server", server}, args...)...)
}

// mustCLI is cli for a command that must succeed.
func mustCLI(t *testing.T, server string, stdin string, args ...string) string {
	t.Helper()
	r := cli(t, server, stdin, args...)
	if r.Code != 0 {
		t.Fatalf("walmq %s: exit %d\nstderr: %s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r.Stdout
}

// lines splits output into its lines.
func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
