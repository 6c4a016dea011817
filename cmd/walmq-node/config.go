package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/walmq/walmq"
)

// config is everything a node is started with. It is filled from the
// defaults, then the environment, then the command line (a flag given
// wins), and checked in one place: validate.
type config struct {
	DataDir  string      // --data, WALMQ_DATA
	Listen   string      // --listen, WALMQ_LISTEN; "" serves no TCP
	Socket   string      // --socket, WALMQ_SOCKET; "" serves no unix socket
	LogLevel hclog.Level // --log-level, WALMQ_LOG_LEVEL
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

walmq-node runs a walmq node: a single-voter broker on a data directory,
serving the walmq gRPC API on TCP and on a unix socket. SIGINT or SIGTERM
stops it gracefully: requests in flight are answered (for up to 10 s),
then the broker is closed.

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
	)
	settings := []setting{
		{"data", "WALMQ_DATA", "data directory", &data},
		{"listen", "WALMQ_LISTEN", `TCP address to serve on ("" for none)`, &listen},
		{"socket", "WALMQ_SOCKET", `unix socket path ("" for none; default <data>/walmq.sock)`, &socket},
		{"log-level", "WALMQ_LOG_LEVEL", "trace, debug, info, warn, error or off", &logLevel},
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

	cfg := config{DataDir: data, Listen: listen, Socket: socket, LogLevel: hclog.LevelFromString(logLevel)}
	if err := cfg.validate(logLevel); err != nil {
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
	}
	return nil
}
