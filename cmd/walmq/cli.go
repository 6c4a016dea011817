package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/walmq/walmq"
)

// Exit statuses.
const (
	exitOK        = 0
	exitError     = 1 // the command failed, or the server refused it
	exitUsage     = 2 // a bad command line
	exitInterrupt = 130
)

// app is one invocation: the global settings and the standard streams.
type app struct {
	server  string
	timeout time.Duration
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// command is one walmq command. setup declares the command's flags on fs
// and returns the function that runs it with its positional arguments.
type command struct {
	name    string // "topic create"
	args    string // positional arguments, for the usage lines
	flags   string // flags, for the command's usage line
	summary string
	help    string // more, for "walmq help COMMAND"
	nargs   [2]int // minimum and maximum positional arguments (-1: no maximum)
	setup   func(fs *flag.FlagSet) func(ctx context.Context, a *app, args []string) error
}

// synopsis is the command's usage line, after "walmq ".
func (c *command) synopsis() string {
	return strings.Join(strings.Fields(c.name+" "+c.args+" "+c.flags), " ")
}

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

const usageHead = `walmq is the command-line client of walmq, a durable message queue.

Usage: walmq [global flags] COMMAND [ARGS] [FLAGS]

Commands:
`

const usageTail = `
Global flags (also accepted after the command):
  --server ADDR   the node: host:port or unix:///path/to.sock
                  (default 127.0.0.1:7420, env WALMQ_SERVER)
  --timeout D     bound on each call of an admin command, and on connecting
                  (default 10s)

Run "walmq help COMMAND" or "walmq COMMAND -h" for a command's flags.
Exit status: 0 done, 1 the command failed (the message says why), 2 bad usage.
`

func printUsage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-32s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprint(w, usageTail)
}

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{server: walmq.DefaultAddr, timeout: 10 * time.Second, stdin: stdin, stdout: stdout, stderr: stderr}
	if s := env("WALMQ_SERVER"); s != "" {
		a.server = s
	}
	global := flag.NewFlagSet("walmq", flag.ContinueOnError)
	global.SetOutput(io.Discard)
	a.globalFlags(global)
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "walmq: %v\n\n", err)
		printUsage(stderr)
		return exitUsage
	}
	rest := global.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, "walmq: no command given\n\n")
		printUsage(stderr)
		return exitUsage
	}
	if rest[0] == "help" {
		return help(rest[1:], stdout, stderr)
	}
	cmd, rest := lookup(rest)
	if cmd == nil {
		if subs := subcommands(rest[0]); subs != "" {
			fmt.Fprintf(stderr, "walmq %s: give one of: %s\n\n", rest[0], subs)
		} else {
			fmt.Fprintf(stderr, "walmq: unknown command %q\n\n", rest[0])
		}
		printUsage(stderr)
		return exitUsage
	}

	fs := flag.NewFlagSet("walmq "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runCmd := cmd.setup(fs)
	a.globalFlags(fs)
	pos, err := parseInterspersed(fs, rest)
	if err == nil {
		switch {
		case len(pos) < cmd.nargs[0]:
			err = usagef("missing %s", strings.Fields(cmd.args)[len(pos)])
		case cmd.nargs[1] >= 0 && len(pos) > cmd.nargs[1]:
			err = usagef("unexpected argument %q", pos[cmd.nargs[1]])
		}
	}
	if err == nil {
		err = runCmd(ctx, a, pos)
	}
	switch ue := (*usageError)(nil); {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		commandUsage(stdout, cmd, fs)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "walmq %s: %v\nUsage: walmq %s\nRun \"walmq help %s\" for more.\n", cmd.name, err, cmd.synopsis(), cmd.name)
		return exitUsage
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		fmt.Fprintln(stderr, "walmq: interrupted")
		return exitInterrupt
	default:
		fmt.Fprintf(stderr, "walmq: %s\n", strings.TrimPrefix(err.Error(), "walmq: "))
		return exitError
	}
}

func (a *app) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&a.server, "server", a.server, "the node: host:port, unix:///path, or a cluster's host:port,host:port,... (env WALMQ_SERVER)")
	fs.DurationVar(&a.timeout, "timeout", a.timeout, "bound on each admin call and on connecting")
}

// lookup finds the command named by the first one or two words of args
// and returns it with the arguments after its name.
func lookup(args []string) (*command, []string) {
	if len(args) >= 2 {
		for i := range commands {
			if commands[i].name == args[0]+" "+args[1] {
				return &commands[i], args[2:]
			}
		}
	}
	for i := range commands {
		if commands[i].name == args[0] {
			return &commands[i], args[1:]
		}
	}
	return nil, args
}

// subcommands lists the commands named "group ..." for group, or "".
func subcommands(group string) string {
	var subs []string
	for _, c := range commands {
		if sub, ok := strings.CutPrefix(c.name, group+" "); ok {
			subs = append(subs, sub)
		}
	}
	return strings.Join(subs, ", ")
}

// help prints the usage of everything or of one command.
func help(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stdout)
		return exitOK
	}
	cmd, rest := lookup(args)
	if cmd == nil && len(args) == 1 && subcommands(args[0]) != "" {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, c := range commands {
			if strings.HasPrefix(c.name, args[0]+" ") {
				fmt.Fprintf(tw, "  walmq %s\t%s\n", c.synopsis(), c.summary)
			}
		}
		tw.Flush()
		return exitOK
	}
	if cmd == nil || len(rest) > 0 {
		fmt.Fprintf(stderr, "walmq help: unknown command %q\n\n", strings.Join(args, " "))
		printUsage(stderr)
		return exitUsage
	}
	fs := flag.NewFlagSet("walmq "+cmd.name, flag.ContinueOnError)
	cmd.setup(fs)
	commandUsage(stdout, cmd, fs)
	return exitOK
}

func commandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: walmq %s\n\n%s.\n", cmd.synopsis(), upperFirst(cmd.summary))
	if cmd.help != "" {
		fmt.Fprintf(w, "\n%s", cmd.help)
	}
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "server" || f.Name == "timeout" {
			return
		}
		if first {
			fmt.Fprint(w, "\nFlags:\n")
			first = false
		}
		kind, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s\n    \t%s", strings.TrimSpace(f.Name+" "+kind), usage)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	})
	fmt.Fprint(w, "\nThe global flags --server and --timeout are accepted too (see walmq help).\n")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// parseInterspersed parses flags placed anywhere among the positional
// arguments, which it returns. After "--" everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// dial connects to the server. It first checks that something listens
// there, so that a node that is down is reported at once rather than
// after the timeout (walmq.Dial waits for the node to answer).
func (a *app) dial(ctx context.Context) (*walmq.Client, error) {
	return a.dialWith(ctx, walmq.DialOptions{})
}

// dialWith is dial with options.
func (a *app) dialWith(ctx context.Context, opts walmq.DialOptions) (*walmq.Client, error) {
	// Fail fast, with the reason, when no node given can be reached.
	var firstErr error
	for _, server := range strings.Split(a.server, ",") {
		network, addr := "tcp", strings.TrimSpace(server)
		if p, ok := strings.CutPrefix(addr, "unix:"); ok {
			network, addr = "unix", strings.TrimPrefix(p, "//")
		}
		d := net.Dialer{Timeout: a.timeout}
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil {
			conn.Close()
			firstErr = nil
			break
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		if strings.Contains(a.server, ",") {
			return nil, fmt.Errorf("cannot reach any node of %s: %w", a.server, firstErr)
		}
		return nil, fmt.Errorf("cannot reach the node at %s: %w", a.server, firstErr)
	}
	dctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	return walmq.Dial(dctx, a.server, opts)
}

// call runs one admin call with the timeout.
func (a *app) call(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	return f(ctx)
}

// withClient is the body of most commands: connect, run f, close.
func (a *app) withClient(ctx context.Context, f func(c *walmq.Client) error) error {
	c, err := a.dial(ctx)
	if err != nil {
		return err
	}
	err = f(c)
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}
