package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/walmq/walmq"
	"github.com/walmq/walmq/internal/freeport"
)

// buildNode builds walmq-node into dir and returns the binary's path. The
// package is named by its import path, so any directory of the module
// works as the current one.
func buildNode(ctx context.Context, dir, tags string) (string, error) {
	bin := filepath.Join(dir, "walmq-node")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", tags, "-o", bin, "github.com/walmq/walmq/cmd/walmq-node")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build walmq-node: %w\n%s", err, out)
	}
	return bin, nil
}

// pickAddr gives the nodes' private addresses (freeport.Addr: outside the
// kernel's ephemeral range, once per process); a variable for the test of
// a port taken before its node binds it.
var pickAddr = freeport.Addr

// The nodes' journal segment size and scrub interval.
const (
	segmentBytes  = 16 << 10
	scrubInterval = 5 * time.Second
)

// Node states.
const (
	running = "running"
	killed  = "killed" // by the harness
	paused  = "paused" // SIGSTOP
	exited  = "exited" // by itself: crashed
)

// node is one walmq-node process and what it needs to be restarted.
type node struct {
	endpoint
	dir  string   // its directory in the run directory: data/ and node.log
	args []string // the command line, the same on every start

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	state  string
	starts int
	// expectExit is set before the harness kills the process: an exit
	// without it is a crash.
	expectExit atomic.Bool
}

// Cluster is three (or more) walmq-node processes on 127.0.0.1 whose
// traffic between each other goes through the harness's Net.
type Cluster struct {
	bin   string
	nodes []*node
	byID  map[string]*node
	net   *Net
	admin map[string]*walmq.Client // one per node, talking to it only
	logf  func(format string, args ...any)

	crashMu sync.Mutex
	crashes []string // nodes that exited by themselves, and how
}

// StartCluster starts n nodes under dir and waits until they answer and
// have a leader. On error everything started is stopped. A node that
// finds one of its ports taken (by a process outside the harness, between
// the harness's check and its bind) makes it start the cluster again, afresh,
// on other ports.
func StartCluster(ctx context.Context, bin, dir string, n int, logf func(string, ...any)) (*Cluster, error) {
	const attempts = 3
	for attempt := 1; ; attempt++ {
		c, err := startCluster(ctx, bin, dir, n, logf)
		if err == nil || !errors.Is(err, errPortTaken) || attempt == attempts {
			return c, err
		}
		logf("%v; starting the cluster again on other ports", err)
		for i := range n {
			if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("n%d", i+1))); err != nil {
				return nil, err
			}
		}
	}
}

// errPortTaken marks a node's start that failed because a port it was
// given was taken.
var errPortTaken = errors.New("port taken")

func startCluster(ctx context.Context, bin, dir string, n int, logf func(string, ...any)) (_ *Cluster, err error) {
	c := &Cluster{bin: bin, byID: map[string]*node{}, admin: map[string]*walmq.Client{}, logf: logf}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	var eps []*endpoint
	for i := range n {
		nd := &node{dir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), state: killed}
		nd.id = fmt.Sprintf("n%d", i+1)
		if nd.raft, err = pickAddr(); err != nil {
			return nil, err
		}
		if nd.api, err = pickAddr(); err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, nd)
		c.byID[nd.id] = nd
		eps = append(eps, &nd.endpoint)
	}
	if c.net, err = NewNet(eps); err != nil {
		return nil, err
	}
	var peers []string
	for _, nd := range c.nodes {
		peers = append(peers, nd.id+"="+nd.publicRaft)
	}
	for _, nd := range c.nodes {
		// Raft listens on its private address and tells the others to
		// dial the proxy's; so does the client address it announces.
		nd.args = []string{"--node-id", nd.id, "--data", filepath.Join(nd.dir, "data"),
			"--listen", nd.api, "--socket", "", "--advertise", nd.publicAPI,
			"--raft-addr", nd.raft, "--raft-advertise", nd.publicRaft,
			"--peers", strings.Join(peers, ","),
			// Small segments, so that a run seals many (the bit-flip fault
			// damages a sealed one), scrubbed often, so that damage is found
			// and repaired within a run.
			"--segment-bytes", strconv.Itoa(segmentBytes), "--scrub-interval", scrubInterval.String()}
		if err := os.MkdirAll(nd.dir, 0o755); err != nil {
			return nil, err
		}
		if err := c.start(nd); err != nil {
			return nil, err
		}
	}
	for _, nd := range c.nodes {
		cl, err := c.dialNode(ctx, nd)
		if err != nil {
			return nil, err
		}
		c.admin[nd.id] = cl
	}
	if _, err := c.WaitHealthy(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	return c, nil
}

// IDs are the node ids, in order.
func (c *Cluster) IDs() []string {
	var ids []string
	for _, nd := range c.nodes {
		ids = append(ids, nd.id)
	}
	return ids
}

// ClientAddrs lists the nodes' public client addresses, starting with
// first's: the workload's clients reach the nodes through the harness's
// proxies (the "client" links), which the nemesis can cut.
func (c *Cluster) ClientAddrs(first string) string {
	addrs := []string{c.PublicAddr(first)}
	for _, nd := range c.nodes {
		if nd.id != first {
			addrs = append(addrs, nd.publicAPI)
		}
	}
	return strings.Join(addrs, ",")
}

// PublicAddr is node id's client address behind the harness's proxies.
func (c *Cluster) PublicAddr(id string) string { return c.byID[id].publicAPI }

// DataDir is node id's data directory.
func (c *Cluster) DataDir(id string) string { return filepath.Join(c.byID[id].dir, "data") }

// DirectAddr is node id's own client address: the harness's checks use
// it, so that no fault of the network stands in their way.
func (c *Cluster) DirectAddr(id string) string { return c.byID[id].api }

// start starts nd's process; its output is appended to node.log.
func (c *Cluster) start(nd *node) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.state != killed {
		return fmt.Errorf("%s: start: it is %s", nd.id, nd.state)
	}
	logf, err := os.OpenFile(filepath.Join(nd.dir, "node.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	nd.starts++
	fmt.Fprintf(logf, "=== jepsen-lite: start %d of %s: %s %s\n", nd.starts, nd.id, c.bin, strings.Join(nd.args, " "))
	cmd := exec.Command(c.bin, nd.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a Ctrl-C reaches the harness only
	// (which kills the nodes); and killed if the harness dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start: %w", nd.id, err)
	}
	nd.cmd, nd.state = cmd, running
	nd.expectExit.Store(false)
	waited := make(chan struct{})
	nd.exited = waited
	go func() {
		err := cmd.Wait()
		if !nd.expectExit.Load() {
			c.crashMu.Lock()
			c.crashes = append(c.crashes, fmt.Sprintf("%s (pid %d) exited by itself: %v; see %s",
				nd.id, cmd.Process.Pid, err, filepath.Join(nd.dir, "node.log")))
			c.crashMu.Unlock()
			c.logf("%s exited by itself: %v", nd.id, err)
		}
		close(waited)
	}()
	c.net.SetPid(nd.id, cmd.Process.Pid)
	return nil
}

// dialNode returns a client of nd alone, once it answers.
func (c *Cluster) dialNode(ctx context.Context, nd *node) (*walmq.Client, error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		cl, err := walmq.Dial(dctx, nd.api, walmq.DialOptions{RetryFor: -1})
		cancel()
		if err == nil {
			return cl, nil
		}
		select {
		case <-nd.exited:
			last := lastLine(filepath.Join(nd.dir, "node.log"))
			if strings.Contains(last, "address already in use") {
				return nil, fmt.Errorf("%s exited at start: %s: %w", nd.id, last, errPortTaken)
			}
			return nil, fmt.Errorf("%s exited at start: %s", nd.id, last)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("%s does not answer: %w", nd.id, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lastLine returns the last line of a file, for error messages.
func lastLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// signal sends sig to nd, which must be in state from; it is then in to.
func (c *Cluster) signal(id string, sig syscall.Signal, from, to string) error {
	nd := c.byID[id]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.state != from {
		return fmt.Errorf("%s is %s, not %s", id, nd.state, from)
	}
	if sig == syscall.SIGKILL {
		nd.expectExit.Store(true)
	}
	if err := nd.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", id, sig, err)
	}
	nd.state = to
	if sig == syscall.SIGKILL {
		<-nd.exited
		c.net.SetPid(id, 0)
	}
	return nil
}

// Kill kills node id with SIGKILL and waits for it to exit.
func (c *Cluster) Kill(id string) error { return c.signal(id, syscall.SIGKILL, running, killed) }

// KillPaused kills node id, paused, with SIGKILL and waits for it to exit.
func (c *Cluster) KillPaused(id string) error { return c.signal(id, syscall.SIGKILL, paused, killed) }

// Pause stops node id with SIGSTOP.
func (c *Cluster) Pause(id string) error { return c.signal(id, syscall.SIGSTOP, running, paused) }

// Resume continues node id, paused, with SIGCONT.
func (c *Cluster) Resume(id string) error { return c.signal(id, syscall.SIGCONT, paused, running) }

// Restart starts node id again, killed, with the same command line.
func (c *Cluster) Restart(id string) error { return c.start(c.byID[id]) }

// State is node id's state: running, killed, paused or exited.
func (c *Cluster) State(id string) string {
	nd := c.byID[id]
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.state == running {
		select {
		case <-nd.exited:
			return exited
		default:
		}
	}
	return nd.state
}

// Revive brings every node back to running: resumes the paused ones and
// restarts the killed ones (and those that exited).
func (c *Cluster) Revive() error {
	var errs []error
	for _, nd := range c.nodes {
		switch c.State(nd.id) {
		case paused:
			errs = append(errs, c.Resume(nd.id))
		case killed:
			errs = append(errs, c.Restart(nd.id))
		case exited:
			nd.mu.Lock()
			nd.state = killed
			nd.mu.Unlock()
			errs = append(errs, c.Restart(nd.id))
		}
	}
	return errors.Join(errs...)
}

// status asks node id for its status, within a second.
func (c *Cluster) status(ctx context.Context, id string) (walmq.NodeStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.admin[id].Status(ctx)
}

// Leader returns the node that says it leads, among the running ones (the
// one with the highest term if several do), or "" if none does.
func (c *Cluster) Leader(ctx context.Context) string {
	var (
		leader string
		term   uint64
	)
	for _, nd := range c.nodes {
		if c.State(nd.id) != running {
			continue
		}
		st, err := c.status(ctx, nd.id)
		if err == nil && st.Role == "leader" && st.Term >= term {
			leader, term = st.NodeID, st.Term
		}
	}
	return leader
}

// WaitLeader waits up to timeout for a leader.
func (c *Cluster) WaitLeader(ctx context.Context, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		if l := c.Leader(ctx); l != "" || time.Now().After(deadline) || ctx.Err() != nil {
			return l
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitHealthy waits up to timeout until every node answers, one leads,
// and all of them name it as their leader; it returns the leader.
func (c *Cluster) WaitHealthy(ctx context.Context, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		leader, why := c.healthy(ctx)
		if why == "" {
			return leader, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("cluster not healthy after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Cluster) healthy(ctx context.Context) (leader, why string) {
	for _, nd := range c.nodes {
		st, err := c.status(ctx, nd.id)
		switch {
		case err != nil:
			return "", fmt.Sprintf("%s: %v", nd.id, err)
		case st.Leader == "":
			return "", nd.id + " knows no leader"
		case leader != "" && st.Leader != leader:
			return "", fmt.Sprintf("%s follows %s, others %s", nd.id, st.Leader, leader)
		}
		leader = st.Leader
		for _, m := range st.Members {
			if m.ID == leader && m.ClientAddr == "" {
				return "", "the leader has not announced its client address"
			}
		}
	}
	if st, err := c.status(ctx, leader); err != nil || st.Role != "leader" {
		return "", leader + " is named leader but does not lead"
	}
	return leader, ""
}

// Crashes lists the nodes that exited without being killed.
func (c *Cluster) Crashes() []string {
	c.crashMu.Lock()
	defer c.crashMu.Unlock()
	return append([]string(nil), c.crashes...)
}

// Close kills every node (paused ones too), closes the clients and the
// network. The data directories and logs stay.
func (c *Cluster) Close() {
	for _, nd := range c.nodes {
		nd.mu.Lock()
		if nd.cmd != nil && nd.state != killed {
			nd.expectExit.Store(true)
			nd.cmd.Process.Signal(syscall.SIGKILL)
			<-nd.exited
			nd.state = killed
		}
		nd.mu.Unlock()
	}
	for _, cl := range c.admin {
		cl.Close()
	}
	if c.net != nil {
		c.net.Close()
	}
}
