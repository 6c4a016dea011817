// Package proctest runs walmq's binaries as real processes for the tests
// of cmd/: it builds them once, starts nodes, and waits for them to
// listen.
package proctest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build builds the main packages pkgs (import paths) into dir, with the
// race detector if race is set (so that the binaries share the test
// build's cache and are race-checked too).
func Build(dir string, race bool, pkgs ...string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, pkgs...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Env is the environment for a child process: this one's without any
// WALMQ_ variable, plus extra ("NAME=value"). A binary built with the race
// detector is told not to sleep a second at exit (its default).
func Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WALMQ_") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	gorace := "atexit_sleep_ms=0"
	if v := os.Getenv("GORACE"); v != "" {
		gorace = v + " " + gorace
	}
	return append(append(env, "GORACE="+gorace), extra...)
}

// StartTimeout bounds how long a node may take to listen.
const StartTimeout = 30 * time.Second

// Node is a walmq-node process.
type Node struct {
	Cmd  *exec.Cmd
	Addr string // the TCP address it serves on, from its log
	log  *logBuffer
	done chan struct{}
	err  error // of Wait, once done is closed
}

var listeningRE = regexp.MustCompile(`walmq-node: listening:.* tcp=(\S+)`)

// Start runs the walmq-node binary bin with args and env (see Env) and
// waits until it logs that it listens. The node is stopped when the test
// ends, if it still runs.
func Start(t testing.TB, bin string, env []string, args ...string) *Node {
	t.Helper()
	n, err := StartErr(bin, env, args...)
	if n != nil {
		t.Cleanup(func() {
			if !n.Exited() {
				n.Stop(t)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// StartErr is Start without a test: it returns the node (nil if it could
// not be started) and an error if it did not come to listen.
func StartErr(bin string, env []string, args ...string) (*Node, error) {
	n := &Node{log: &logBuffer{changed: make(chan struct{}, 1)}, done: make(chan struct{})}
	n.Cmd = exec.Command(bin, args...)
	n.Cmd.Env = env
	n.Cmd.Stderr = n.log
	n.Cmd.Stdout = n.log
	if err := n.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		n.err = n.Cmd.Wait()
		close(n.done)
	}()
	deadline := time.After(StartTimeout)
	for {
		if m := listeningRE.FindStringSubmatch(n.log.String()); m != nil {
			n.Addr = m[1]
			return n, nil
		}
		select {
		case <-n.log.changed:
		case <-n.done:
			if m := listeningRE.FindStringSubmatch(n.log.String()); m != nil {
				n.Addr = m[1]
				return n, nil
			}
			return n, fmt.Errorf("walmq-node exited before listening (%v); its log:\n%s", n.err, n.log.String())
		case <-deadline:
			return n, fmt.Errorf("walmq-node did not listen within %v; its log:\n%s", StartTimeout, n.log.String())
		}
	}
}

// Log is what the node wrote so far.
func (n *Node) Log() string { return n.log.String() }

// Exited reports whether the process has ended.
func (n *Node) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to end and returns its exit
// code (-1 if a signal ended it).
func (n *Node) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-n.done:
	case <-time.After(timeout):
		n.Cmd.Process.Kill()
		<-n.done
		t.Fatalf("walmq-node did not exit within %v; its log:\n%s", timeout, n.Log())
	}
	return n.Cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM and returns the exit code.
func (n *Node) Stop(t testing.TB) int {
	t.Helper()
	n.Signal(t, syscall.SIGTERM)
	return n.Wait(t, 20*time.Second)
}

// Kill sends SIGKILL and waits for the process to end.
func (n *Node) Kill(t testing.TB) {
	t.Helper()
	n.Signal(t, syscall.SIGKILL)
	n.Wait(t, 10*time.Second)
}

// Signal sends sig to the process.
func (n *Node) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(n.Cmd.Process.Pid, sig); err != nil && !n.Exited() {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// Result is the outcome of a command run to completion.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs bin with args, stdin and env to completion (at most timeout).
func Run(t testing.TB, timeout time.Duration, env []string, stdin []byte, bin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: did not end within %v\nstderr: %s", filepath.Base(bin), strings.Join(args, " "), timeout, stderr.String())
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
}

// logBuffer collects a process's output and signals each write.
type logBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	b.buf.Write(p)
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
