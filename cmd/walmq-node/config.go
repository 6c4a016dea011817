package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/walmq/walmq"
	"github.com/walmq/walmq/cluster"
	"github.com/walmq/walmq/journal"
)

// config is everything a node is started with. It is filled from the
// defaults, then the environment, then the command line (a flag given
// wins), and checked in one place: validate.
type config struct {
	DataDir  string      // --data, WALMQ_DATA
	Listen   string      // --listen, WALMQ_LISTEN; "" serves no TCP
	Socket   string      // --socket, WALMQ_SOCKET; "" serves no unix socket
	LogLevel hclog.Level // --log-level, WALMQ_LOG_LEVEL

	NodeID        string       // --node-id, WALMQ_NODE_ID
	RaftAddr      string       // --raft-addr, WALMQ_RAFT_ADDR; "" keeps Raft in memory (single node)
	RaftAdvertise string       // --raft-advertise, WALMQ_RAFT_ADVERTISE
	Peers         []walmq.Peer // --peers, WALMQ_PEERS
	Advertise     string       // --advertise, WALMQ_ADVERTISE: the client address other nodes forward to
	Join          string       // --join, WALMQ_JOIN: a member's client address to ask to add this node

	SegmentBytes  int64         // --segment-bytes, WALMQ_SEGMENT_BYTES; 0: the journal's default
	ScrubInterval time.Duration // --scrub-interval, WALMQ_SCRUB_INTERVAL; 0 disables periodic scrubs
	SyncLeaderLog bool          // --leader-log sync, WALMQ_LEADER_LOG
}

// errUsage marks an error in the command line: the usage was printed and
// the exit status is 2.
var errUsage = errors.New("usage")

// setting is one configuration value with its flag and environment
// variable.
type setting struct {
	flag, env, usage string
	value            *string
}

const usageHead = `Usage: walmq-node [flags]

walmq-node runs a walmq node on a data directory, serving the walmq gRPC
API on TCP and on a unix socket. With no --peers it is a single node (a
one-voter Raft group). With --peers it is a member of a cluster: start
every member with the same --peers list, each with its own --node-id,
--data and addresses, e.g.

  walmq-node --node-id n1 --data D1 --listen 127.0.0.1:7421 \
    --raft-addr 127.0.0.1:7521 \
    --peers n1=127.0.0.1:7521,n2=127.0.0.1:7522,n3=127.0.0.1:7523

--peers only bootstraps a new data directory; later membership changes go
through "walmq cluster join/remove". A node started with --join ADDR and
--raft-addr asks the member at ADDR to add it: a single node grows into a
cluster this way, without re-ingesting its data. SIGINT or SIGTERM stops the node
gracefully: requests in flight are answered (for up to 10 s), then the
node is closed.

Each flag can also be set from the environment variable named beside it;
a flag given on the command line wins.

Flags:
`

// loadConfig builds the configuration from env and args. Errors in args
// print the usage on stderr and wrap errUsage; -h prints it and returns
// flag.ErrHelp.
func loadConfig(args []string, env func(string) string, stderr io.Writer) (config, error) {
	var (
		data     = "data"
		listen   = walmq.DefaultAddr
		socket   = ""
		logLevel = "info"
		nodeID   = "node1"
		raftAddr = ""
		raftAdv  = ""
		peers    = ""
		adv      = ""
		join     = ""
		segBytes = strconv.Itoa(journal.DefaultSegmentBytes)
		scrub    = cluster.DefaultScrubInterval.String()
		ldrLog   = "parallel"
	)
	settings := []setting{
		{"data", "WALMQ_DATA", "data directory", &data},
		{"listen", "WALMQ_LISTEN", `TCP address to serve on ("" for none)`, &listen},
		{"socket", "WALMQ_SOCKET", `unix socket path ("" for none; default <data>/walmq.sock)`, &socket},
		{"log-level", "WALMQ_LOG_LEVEL", "trace, debug, info, warn, error or off", &logLevel},
		{"node-id", "WALMQ_NODE_ID", "this node's id in the cluster", &nodeID},
		{"raft-addr", "WALMQ_RAFT_ADDR", `host:port Raft listens on for its peers (default: this node's address in --peers; "" with no peers keeps Raft in memory)`, &raftAddr},
		{"raft-advertise", "WALMQ_RAFT_ADVERTISE", "Raft address peers dial (default --raft-addr)", &raftAdv},
		{"peers", "WALMQ_PEERS", "the voters of a new cluster: id=host:port,... (this node among them)", &peers},
		{"join", "WALMQ_JOIN", "client address (host:port or unix:///path) of a running cluster's member: a new data directory joins that cluster (as a non-voter that is promoted once it has caught up) instead of starting its own", &join},
		{"advertise", "WALMQ_ADVERTISE", "client address other nodes forward requests to (default the --listen address, or unix://<socket>)", &adv},
		{"segment-bytes", "WALMQ_SEGMENT_BYTES", "size in bytes at which a partition's journal segment is sealed; give every node of a cluster the same", &segBytes},
		{"leader-log", "WALMQ_LEADER_LOG", `how the leader writes its raft log: "parallel" with its followers' writes (an entry is applied and acknowledged only once it is on the leader's disk too), or "sync" before it replicates (hashicorp/raft's own order; one more write on each commit's path)`, &ldrLog},
		{"scrub-interval", "WALMQ_SCRUB_INTERVAL", "how often every sealed segment is verified again after the pass that follows the start (a duration such as 24h; 0 disables the periodic passes); damaged segments are repaired from peers", &scrub},
	}
	socketSet := false
	for _, s := range settings {
		if v := env(s.env); v != "" {
			*s.value = v
			socketSet = socketSet || s.flag == "socket"
		}
	}

	fs := flag.NewFlagSet("walmq-node", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageHead)
		fs.PrintDefaults()
	}
	for _, s := range settings {
		fs.StringVar(s.value, s.flag, *s.value, s.usage+" (env "+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "walmq-node: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return config{}, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	fs.Visit(func(f *flag.Flag) { socketSet = socketSet || f.Name == "socket" })
	if !socketSet {
		socket = filepath.Join(data, "walmq.sock")
	}

	cfg := config{DataDir: data, Listen: listen, Socket: socket, LogLevel: hclog.LevelFromString(logLevel),
		NodeID: nodeID, RaftAddr: raftAddr, RaftAdvertise: raftAdv, Advertise: adv, Join: join}
	err := parsePeers(&cfg, peers)
	if err == nil {
		err = parseStorage(&cfg, segBytes, scrub)
	}
	if err == nil {
		switch strings.TrimSpace(ldrLog) {
		case "parallel":
		case "sync":
			cfg.SyncLeaderLog = true
		default:
			err = fmt.Errorf(`invalid --leader-log %q: use "parallel" or "sync"`, ldrLog)
		}
	}
	if err == nil {
		err = cfg.validate(logLevel)
	}
	if err != nil {
		fmt.Fprintf(stderr, "walmq-node: %v\n", err)
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	return cfg, nil
}

// validate checks a configuration; level is the log level as given.
func (c config) validate(level string) error {
	switch {
	case c.DataDir == "":
		return errors.New("--data must not be empty")
	case c.Listen == "" && c.Socket == "":
		return errors.New("nothing to serve on: --listen and --socket are both empty")
	case c.LogLevel == hclog.NoLevel:
		return fmt.Errorf("invalid --log-level %q: use trace, debug, info, warn, error or off", level)
	case c.NodeID == "":
		return errors.New("--node-id must not be empty")
	case c.Join != "" && len(c.Peers) > 0:
		return errors.New("--join and --peers exclude each other: --peers starts a new cluster, --join enters a running one")
	case c.Join != "" && c.RaftAddr == "":
		return errors.New("--join needs --raft-addr (the address the cluster reaches this node's Raft at)")
	}
	return nil
}

// parseStorage parses --segment-bytes and --scrub-interval.
func parseStorage(cfg *config, segBytes, scrub string) error {
	n, err := strconv.ParseInt(strings.TrimSpace(segBytes), 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("invalid --segment-bytes %q: want a positive number of bytes", segBytes)
	}
	d, err := time.ParseDuration(strings.TrimSpace(scrub))
	if err != nil || d < 0 {
		return fmt.Errorf("invalid --scrub-interval %q: want a duration such as 24h, or 0", scrub)
	}
	cfg.SegmentBytes, cfg.ScrubInterval = n, d
	return nil
}

// parsePeers parses --peers ("id=host:port,...") into cfg.Peers and, when
// --raft-addr is not given, takes this node's address from the list.
func parsePeers(cfg *config, s string) error {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || id == "" || addr == "" {
			return fmt.Errorf("invalid --peers entry %q: want id=host:port", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("invalid --peers entry %q: %v", item, err)
		}
		if seen[id] {
			return fmt.Errorf("invalid --peers: %q appears twice", id)
		}
		seen[id] = true
		cfg.Peers = append(cfg.Peers, walmq.Peer{ID: id, Addr: addr})
		if id == cfg.NodeID && cfg.RaftAddr == "" {
			cfg.RaftAddr = addr
		}
	}
	if !seen[cfg.NodeID] {
		return fmt.Errorf("--peers does not name this node (--node-id %q)", cfg.NodeID)
	}
	return nil
}
