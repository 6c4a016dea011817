package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"math"

	"github.com/walmq/walmq"
)

const readHelp = `Prints one partition's messages from an offset on, in order, as the node
given by --server holds them (the first node of a list): no consumer group
is used and nothing is acked, so it can be run any number of times. A
follower prints what it has applied, which may lag the leader, but never a
message that is not committed.

--from defaults to the first message the node retains. Reading stops after
--count messages, or at the end of the partition once --wait passes with
nothing new (default 0: stop at the end). Output is as for sub: payloads,
or with --json one object per message (without "deliveries").
`

func read(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	part := fs.Int("partition", 0, "the partition")
	from := fs.Int64("from", -1, "first offset (default: the first retained)")
	count := fs.Int("count", 0, "stop after this many messages (0: no limit)")
	wait := fs.Duration("wait", 0, "at the end, wait this long for more")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	return func(ctx context.Context, a *app, args []string) error {
		switch {
		case *part < 0:
			return usagef("--partition must not be negative")
		case *from < -1:
			return usagef("--from must not be negative")
		case *count < 0:
			return usagef("--count must not be negative")
		case *wait < 0:
			return usagef("--wait must not be negative")
		}
		topic := args[0]
		return a.withClient(ctx, func(c *walmq.Client) error {
			offset := uint64(*from)
			if *from < 0 {
				// An offset past every end reads nothing but says where the
				// partition starts.
				var res walmq.ReadResult
				err := a.call(ctx, func(ctx context.Context) (err error) {
					res, err = c.Read(ctx, topic, *part, math.MaxUint64, 1, 0)
					return err
				})
				if err != nil {
					return err
				}
				offset = res.FirstOffset
			}
			w := bufio.NewWriterSize(a.stdout, 64<<10)
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			got := 0
			for *count == 0 || got < *count {
				want := fetchBatch
				if *count > 0 {
					want = min(want, *count-got)
				}
				rctx, cancel := context.WithTimeout(ctx, *wait+a.timeout)
				res, err := c.Read(rctx, topic, *part, offset, want, *wait)
				cancel()
				if err != nil {
					return err
				}
				if len(res.Records) == 0 {
					return w.Flush()
				}
				for _, r := range res.Records {
					if *asJSON {
						d := walmq.Delivery{Ref: walmq.Ref{Topic: topic, Partition: r.Partition, Offset: r.Offset},
							Key: r.Key, Headers: r.Headers, Payload: r.Payload, ID: r.ID, Timestamp: r.Timestamp}
						if err := enc.Encode(jsonDelivery(d)); err != nil {
							return err
						}
					} else {
						w.Write(r.Payload)
						w.WriteByte('\n')
					}
				}
				got += len(res.Records)
				offset = res.Records[len(res.Records)-1].Offset + 1
				if err := w.Flush(); err != nil {
					return err
				}
			}
			return nil
		})
	}
}
