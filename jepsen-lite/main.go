// Command jepsen-lite runs a three-node walmq cluster as real processes,
// publishes to it from several producers while a nemesis partitions,
// kills and pauses nodes, then reads everything back and checks that no
// acknowledged message was lost, nothing was duplicated or invented,
// order held, and every replica is the same. See README.md.
//
//	go run ./jepsen-lite --duration 30s --seed 1 --faults partition-leader,kill-leader,pause-leader
//
// Exit status: 0 valid, 1 invalid, 2 the harness could not run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/walmq/walmq"
)

// config is a run's command line.
type config struct {
	Out       string        `json:"run_dir"`
	Seed      int64         `json:"seed"`
	Duration  time.Duration `json:"duration"`
	Faults    []string      `json:"faults"`
	MaxFault  time.Duration `json:"max_fault"`
	Producers int           `json:"producers"`
	Consumers int           `json:"consumers"`
	Readers   bool          `json:"readers"`
	NodeBin   string        `json:"-"`
	NodeTags  string        `json:"node_tags,omitempty"`
	Check     string        `json:"-"`
}

// MarshalJSON writes the durations as text ("30s").
func (c config) MarshalJSON() ([]byte, error) {
	type plain config
	return json.Marshal(struct {
		plain
		Duration string `json:"duration"`
		MaxFault string `json:"max_fault"`
	}{plain(c), c.Duration.String(), c.MaxFault.String()})
}

func main() {
	os.Exit(mainExit(os.Args[1:], os.Stdout, os.Stderr))
}

func mainExit(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var res Result
	if cfg.Check != "" {
		res, err = recheck(cfg.Check)
	} else {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		res, err = runHarness(ctx, cfg, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "jepsen-lite: %v\n", err)
		return 2
	}
	WriteSummary(stdout, res)
	if !res.Valid {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("jepsen-lite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var faults string
	fs.StringVar(&cfg.Out, "out", "", "run directory: node data and logs, history.jsonl, final.json, results.json (default: a new temporary directory, kept)")
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed of the nemesis schedule (0: from the clock; the seed used is printed)")
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long the producers publish and the nemesis injects faults")
	fs.StringVar(&faults, "faults", strings.Join(allFaults, ","), "comma-separated faults: "+strings.Join(allFaults, ", ")+` ("" for none)`)
	fs.DurationVar(&cfg.MaxFault, "max-fault", 8*time.Second, "the longest a fault lasts (each lasts 2 s to this)")
	fs.IntVar(&cfg.Producers, "producers", 4, "concurrent producers")
	fs.IntVar(&cfg.Consumers, "consumers", 2, "members of the consumer group that fetch and ack (0: none; the group is drained at the end all the same)")
	fs.BoolVar(&cfg.Readers, "readers", true, "one reader per node, reading that node's replica of each partition from offset 0")
	fs.StringVar(&cfg.NodeBin, "node-bin", "", "a walmq-node binary to run (default: build ./cmd/walmq-node)")
	fs.StringVar(&cfg.NodeTags, "node-tags", "", `build tags for walmq-node, e.g. "walmq_planted_bug" (a node with a planted bug, to see the checker fail)`)
	fs.StringVar(&cfg.Check, "check", "", "only check the run in this directory again (its history.jsonl and final.json)")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jepsen-lite: unexpected argument %q\n", fs.Arg(0))
		return cfg, errors.New("usage")
	}
	var err error
	if cfg.Faults, err = parseFaults(faults); err != nil {
		fmt.Fprintf(stderr, "jepsen-lite: %v\n", err)
		return cfg, err
	}
	if cfg.Producers < 1 || cfg.Consumers < 0 || cfg.Duration <= 0 || cfg.MaxFault < minHold {
		fmt.Fprintf(stderr, "jepsen-lite: --producers and --duration must be positive, --consumers not negative, --max-fault at least %v\n", minHold)
		return cfg, errors.New("usage")
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano() % 1_000_000
	}
	return cfg, nil
}

// report is results.json.
type report struct {
	Config       config   `json:"config"`
	Result       Result   `json:"result"`
	Crashes      []string `json:"crashes,omitempty"`
	Unattributed int64    `json:"unattributed_connections"`
}

// runHarness runs one test and returns the checker's verdict, with node
// crashes added to its problems. Every process it started is killed when
// it returns.
func runHarness(ctx context.Context, cfg config, logw io.Writer) (Result, error) {
	logf := func(format string, args ...any) { fmt.Fprintf(logw, "jepsen-lite: "+format+"\n", args...) }
	var err error
	if cfg.Out == "" {
		if cfg.Out, err = os.MkdirTemp("", "jepsen-lite-"); err != nil {
			return Result{}, err
		}
	} else if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return Result{}, err
	}
	if entries, _ := os.ReadDir(cfg.Out); len(entries) > 0 {
		return Result{}, fmt.Errorf("run directory %s is not empty", cfg.Out)
	}
	logf("run directory %s, seed %d, %v, faults %s (2 s to %v each), %d producers, %d consumers, readers %v", cfg.Out, cfg.Seed,
		cfg.Duration, strings.Join(cfg.Faults, ","), cfg.MaxFault, cfg.Producers, cfg.Consumers, cfg.Readers)

	bin := cfg.NodeBin
	if bin == "" {
		tmp, err := os.MkdirTemp("", "jepsen-lite-bin-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(tmp)
		logf("building walmq-node")
		if bin, err = buildNode(ctx, tmp, cfg.NodeTags); err != nil {
			return Result{}, err
		}
	}

	hist, err := NewHistory(filepath.Join(cfg.Out, "history.jsonl"), cfg.Seed)
	if err != nil {
		return Result{}, err
	}
	defer hist.Close()

	logf("starting 3 nodes")
	c, err := StartCluster(ctx, bin, cfg.Out, 3, logf)
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	if err := setup(ctx, c); err != nil {
		return Result{}, err
	}

	// The workload: every client but the readers' is given all three
	// public addresses, its home node first; homes rotate so that clients
	// talk to different nodes.
	var clients []*walmq.Client
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	dial := func(addrs string, retryFor time.Duration) (*walmq.Client, error) {
		cl, err := walmq.Dial(ctx, addrs, walmq.DialOptions{RetryFor: retryFor})
		if err == nil {
			clients = append(clients, cl)
		}
		return cl, err
	}
	ids := c.IDs()
	var runners []func(context.Context, <-chan struct{})
	for i := range cfg.Producers {
		home := ids[i%len(ids)]
		cl, err := dial(c.ClientAddrs(home), 5*time.Second)
		if err != nil {
			return Result{}, fmt.Errorf("producer %d: %w", i, err)
		}
		runners = append(runners, (&producer{name: fmt.Sprintf("p%d", i), node: home, client: cl, hist: hist}).run)
	}
	for i := range cfg.Consumers {
		home := ids[(i+1)%len(ids)]
		cl, err := dial(c.ClientAddrs(home), 5*time.Second)
		if err != nil {
			return Result{}, fmt.Errorf("consumer %d: %w", i, err)
		}
		runners = append(runners, (&consumer{name: fmt.Sprintf("c%d", i), node: home, client: cl, hist: hist,
			rng: rand.New(rand.NewSource(cfg.Seed + int64(1000+i)))}).run)
	}
	cl, err := dial(c.ClientAddrs(ids[len(ids)-1]), 5*time.Second)
	if err != nil {
		return Result{}, fmt.Errorf("sampler: %w", err)
	}
	runners = append(runners, (&sampler{client: cl, hist: hist}).run)
	if cfg.Readers {
		for _, id := range ids {
			cl, err := dial(c.PublicAddr(id), -1) // that node alone: no retries elsewhere
			if err != nil {
				return Result{}, fmt.Errorf("reader of %s: %w", id, err)
			}
			runners = append(runners, (&reader{node: id, client: cl, hist: hist}).run)
		}
	}

	logf("running for %v", cfg.Duration)
	end := time.Now().Add(cfg.Duration)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, run := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run(ctx, stop)
		}()
	}
	nem := &nemesis{c: c, hist: hist, rng: rand.New(rand.NewSource(cfg.Seed)), faults: cfg.Faults,
		maxHold: max(cfg.MaxFault, minHold), logf: logf}
	nem.run(ctx, end)
	select {
	case <-time.After(time.Until(end)):
	case <-ctx.Done():
	}
	close(stop)
	wg.Wait()
	if ctx.Err() != nil {
		return Result{}, fmt.Errorf("interrupted (run directory %s)", cfg.Out)
	}

	logf("%.1fs healing, restarting and resuming every node", hist.Since().Seconds())
	hist.Add(Op{Process: "nemesis", Type: Invoke, F: "heal-all"})
	c.net.HealAll()
	if err := c.Revive(); err != nil {
		hist.Add(Op{Process: "nemesis", Type: Info, F: "heal-all", Error: err.Error()})
	} else {
		hist.Add(Op{Process: "nemesis", Type: OK, F: "heal-all"})
	}
	var final FinalRead
	if leader, err := c.WaitHealthy(ctx, time.Minute); err != nil {
		final = FinalRead{Nodes: c.IDs(), Errors: []string{err.Error()}}
	} else {
		logf("reading back through %s", leader)
		final = finalRead(ctx, c, leader, hist)
	}
	if ctx.Err() != nil {
		return Result{}, fmt.Errorf("interrupted (run directory %s)", cfg.Out)
	}

	res := Check(hist.Ops(), final)
	crashes := c.Crashes()
	for _, cr := range crashes {
		res.Problems = append(res.Problems, "node crashed: "+cr)
		res.Valid = false
	}
	rep := report{Config: cfg, Result: res, Crashes: crashes, Unattributed: c.net.Unattributed()}
	if err := errors.Join(hist.Flush(), writeJSON(filepath.Join(cfg.Out, "final.json"), final),
		writeJSON(filepath.Join(cfg.Out, "results.json"), rep)); err != nil {
		return res, err
	}
	if err := ReportFromDir(cfg.Out); err != nil {
		return res, fmt.Errorf("report: %w", err)
	}
	logf("history, final read, results and report.html in %s", cfg.Out)
	return res, nil
}

// setup creates the topic, the consumers' group and the group of the
// final read.
func setup(ctx context.Context, c *Cluster) error {
	cl, err := walmq.Dial(ctx, c.ClientAddrs(c.IDs()[0]), walmq.DialOptions{RetryFor: 10 * time.Second})
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.CreateTopic(ctx, topic, walmq.TopicConfig{Partitions: partitions, DedupWindow: time.Hour}); err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	if err := cl.CreateGroup(ctx, topic, checkGroup, walmq.GroupConfig{StartAt: walmq.StartEarliest, AckWait: time.Hour, MaxDeliver: -1}); err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	if err := cl.CreateGroup(ctx, topic, consumeGroup, walmq.GroupConfig{StartAt: walmq.StartEarliest, AckWait: consumeAckWait, MaxDeliver: -1}); err != nil {
		return fmt.Errorf("create group: %w", err)
	}
	return nil
}

// recheck checks a finished run again from its files and writes its
// report.html anew.
func recheck(dir string) (Result, error) {
	seed, ops, err := ReadHistory(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return Result{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "final.json"))
	if err != nil {
		return Result{}, err
	}
	var final FinalRead
	if err := json.Unmarshal(b, &final); err != nil {
		return Result{}, fmt.Errorf("final.json: %w", err)
	}
	res := Check(ops, final)
	return res, writeReportFile(dir, seed, ops, res)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
