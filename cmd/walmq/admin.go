package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/walmq/walmq"
)

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func topicCreate(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	partitions := fs.Int("partitions", 1, "number of partitions (1-1024; fixed once created)")
	maxAge := fs.Duration("max-age", 0, "delete whole segments whose messages are all older (0: keep)")
	maxBytes := fs.Int64("max-bytes", 0, "per partition, delete the oldest whole segments to stay under this size (0: no limit)")
	return func(ctx context.Context, a *app, args []string) error {
		switch {
		case *partitions < 1 || *partitions > math.MaxInt32:
			return usagef("--partitions must be at least 1 (and at most 1024), not %d", *partitions)
		case *maxAge < 0:
			return usagef("--max-age must not be negative")
		case *maxBytes < 0:
			return usagef("--max-bytes must not be negative")
		}
		name := args[0]
		return a.withClient(ctx, func(c *walmq.Client) error {
			cfg := walmq.TopicConfig{Partitions: *partitions, MaxAge: *maxAge, MaxBytes: *maxBytes}
			if err := a.call(ctx, func(ctx context.Context) error { return c.CreateTopic(ctx, name, cfg) }); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "created topic %s (%s)\n", name, plural(*partitions, "partition"))
			return nil
		})
	}
}

func topicList(*flag.FlagSet) func(context.Context, *app, []string) error {
	return func(ctx context.Context, a *app, _ []string) error {
		return a.withClient(ctx, func(c *walmq.Client) error {
			var ts []walmq.TopicInfo
			err := a.call(ctx, func(ctx context.Context) (err error) {
				ts, err = c.Topics(ctx)
				return err
			})
			if err != nil {
				return err
			}
			tw := table(a.stdout)
			fmt.Fprintln(tw, "NAME\tPARTITIONS\tMESSAGES\tBYTES\tGROUPS")
			for _, t := range ts {
				var msgs uint64
				var bytes int64
				for _, p := range t.Partitions {
					msgs += p.NextOffset - p.FirstOffset
					bytes += p.Bytes
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", t.Name, len(t.Partitions), msgs, bytes, len(t.Groups))
			}
			return tw.Flush()
		})
	}
}

func orNone[T comparable](v T, s string) string {
	var zero T
	if v == zero {
		return "none"
	}
	return s
}

func topicDescribe(*flag.FlagSet) func(context.Context, *app, []string) error {
	return func(ctx context.Context, a *app, args []string) error {
		return a.withClient(ctx, func(c *walmq.Client) error {
			var t walmq.TopicInfo
			err := a.call(ctx, func(ctx context.Context) (err error) {
				t, err = c.DescribeTopic(ctx, args[0])
				return err
			})
			if err != nil {
				return err
			}
			groups := strings.Join(t.Groups, ", ")
			if groups == "" {
				groups = "none"
			}
			tw := table(a.stdout)
			fmt.Fprintf(tw, "topic:\t%s\n", t.Name)
			fmt.Fprintf(tw, "partitions:\t%d\n", len(t.Partitions))
			fmt.Fprintf(tw, "max age:\t%s\n", orNone(t.Config.MaxAge, t.Config.MaxAge.String()))
			fmt.Fprintf(tw, "max bytes:\t%s\n", orNone(t.Config.MaxBytes, fmt.Sprint(t.Config.MaxBytes)))
			fmt.Fprintf(tw, "dedup window:\t%s\n", orNone(t.Config.DedupWindow, t.Config.DedupWindow.String()))
			fmt.Fprintf(tw, "groups:\t%s\n", groups)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			tw = table(a.stdout)
			fmt.Fprintln(tw, "PARTITION\tFIRST\tNEXT\tBYTES\tSEGMENTS")
			for _, p := range t.Partitions {
				fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\n", p.Partition, p.FirstOffset, p.NextOffset, p.Bytes, p.Segments)
			}
			return tw.Flush()
		})
	}
}

func topicDelete(*flag.FlagSet) func(context.Context, *app, []string) error {
	return func(ctx context.Context, a *app, args []string) error {
		return a.withClient(ctx, func(c *walmq.Client) error {
			if err := a.call(ctx, func(ctx context.Context) error { return c.DeleteTopic(ctx, args[0]) }); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "deleted topic %s\n", args[0])
			return nil
		})
	}
}

func groupList(*flag.FlagSet) func(context.Context, *app, []string) error {
	return func(ctx context.Context, a *app, args []string) error {
		return a.withClient(ctx, func(c *walmq.Client) error {
			var gs []string
			err := a.call(ctx, func(ctx context.Context) (err error) {
				gs, err = c.Groups(ctx, args[0])
				return err
			})
			if err != nil {
				return err
			}
			for _, g := range gs {
				fmt.Fprintln(a.stdout, g)
			}
			return nil
		})
	}
}

const groupDescribeHelp = `Per partition: ACK-FLOOR (every offset below it is settled), END (the
partition's next offset), LAG (messages not yet settled) and PENDING
(messages delivered and not yet settled).
`

func groupDescribe(*flag.FlagSet) func(context.Context, *app, []string) error {
	return func(ctx context.Context, a *app, args []string) error {
		topic, group := args[0], args[1]
		return a.withClient(ctx, func(c *walmq.Client) error {
			var g walmq.GroupInfo
			err := a.call(ctx, func(ctx context.Context) (err error) {
				g, err = c.DescribeGroup(ctx, topic, group)
				return err
			})
			if err != nil {
				return err
			}
			maxDeliver := "unlimited"
			if g.Config.MaxDeliver > 0 {
				maxDeliver = fmt.Sprint(g.Config.MaxDeliver)
			}
			dlq := g.Config.DeadLetterTopic
			if dlq == "" {
				dlq = topic + "." + group + ".dlq"
			}
			tw := table(a.stdout)
			fmt.Fprintf(tw, "topic:\t%s\n", topic)
			fmt.Fprintf(tw, "group:\t%s\n", group)
			fmt.Fprintf(tw, "ack wait:\t%s\n", g.Config.AckWait)
			fmt.Fprintf(tw, "max deliver:\t%s\n", maxDeliver)
			fmt.Fprintf(tw, "dead letters:\t%s\n", dlq)
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout)
			tw = table(a.stdout)
			fmt.Fprintln(tw, "PARTITION\tACK-FLOOR\tEND\tLAG\tPENDING")
			for _, p := range g.Partitions {
				fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\n", p.Partition, p.AckFloor, p.EndOffset, p.Lag, p.Pending)
			}
			return tw.Flush()
		})
	}
}

const groupResetHelp = `Moves the group on every partition: --to-offset N to offset N (clamped
to what is retained), or --to-time T to the first message stamped at or
after T, an RFC 3339 time such as 2026-01-02T15:04:05Z. Give one of them.
`

func groupReset(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	offset := fs.Uint64("to-offset", 0, "move the group to this offset on every partition")
	at := fs.String("to-time", "", "move the group to the first message at or after this RFC 3339 time")
	return func(ctx context.Context, a *app, args []string) error {
		topic, group := args[0], args[1]
		var to walmq.ResetTo
		var where string
		switch byOffset, byTime := flagSet(fs, "to-offset"), flagSet(fs, "to-time"); {
		case byOffset == byTime:
			return usagef("give exactly one of --to-offset and --to-time")
		case byOffset:
			to.Offset = *offset
			where = fmt.Sprintf("offset %d", *offset)
		default:
			t, err := time.Parse(time.RFC3339Nano, *at)
			if err != nil {
				return usagef("--to-time %q is not an RFC 3339 time (such as 2026-01-02T15:04:05Z)", *at)
			}
			to.Time = t
			where = t.Format(time.RFC3339Nano)
		}
		return a.withClient(ctx, func(c *walmq.Client) error {
			if err := a.call(ctx, func(ctx context.Context) error { return c.ResetGroup(ctx, topic, group, to) }); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "reset group %s of topic %s to %s\n", group, topic, where)
			return nil
		})
	}
}

func status(*flag.FlagSet) func(context.Context, *app, []string) error {
	return func(ctx context.Context, a *app, _ []string) error {
		return a.withClient(ctx, func(c *walmq.Client) error {
			st, err := a.status(ctx, c)
			if err != nil {
				return err
			}
			tw := table(a.stdout)
			nodeHeader(tw, st)
			fmt.Fprintf(tw, "members:\t%d\n", len(st.Members))
			fmt.Fprintf(tw, "scrub passes:\t%d\n", st.ScrubPasses)
			fmt.Fprintf(tw, "segments repaired:\t%d\n", st.SegmentsRepaired)
			fmt.Fprintf(tw, "damaged segments:\t%d\n", len(st.Damaged))
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(st.Damaged) > 0 {
				fmt.Fprintln(a.stdout)
				tw = table(a.stdout)
				fmt.Fprintln(tw, "TOPIC\tPARTITION\tSEGMENT\tOFFSETS\tPOSITION\tREASON")
				for _, d := range st.Damaged {
					fmt.Fprintf(tw, "%s\t%d\t%s\t[%d, %d)\t%d\t%s\n", d.Topic, d.Partition, d.Segment, d.First, d.Next, d.Position, d.Reason)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if len(st.Members) == 0 {
				return nil
			}
			fmt.Fprintln(a.stdout)
			tw = table(a.stdout)
			fmt.Fprintln(tw, "ID\tADDRESS\tSUFFRAGE\tLEADER")
			for _, m := range st.Members {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, m.Address, m.Suffrage, yesNo(m.Leader))
			}
			return tw.Flush()
		})
	}
}

// plural is "1 thing" or "n things".
func plural(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// status asks the node c talks to for its status, within the timeout.
func (a *app) status(ctx context.Context, c *walmq.Client) (st walmq.NodeStatus, err error) {
	err = a.call(ctx, func(ctx context.Context) error {
		st, err = c.Status(ctx)
		return err
	})
	return st, err
}

// nodeHeader writes a node's view of itself: id, role, leader, term and
// applied index, one per row.
func nodeHeader(tw io.Writer, st walmq.NodeStatus) {
	leader := st.Leader
	if leader == "" {
		leader = "unknown"
	}
	fmt.Fprintf(tw, "node id:\t%s\n", st.NodeID)
	fmt.Fprintf(tw, "role:\t%s\n", st.Role)
	fmt.Fprintf(tw, "leader:\t%s\n", leader)
	fmt.Fprintf(tw, "term:\t%d\n", st.Term)
	fmt.Fprintf(tw, "applied index:\t%d\n", st.AppliedIndex)
}
