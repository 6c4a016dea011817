package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"time"
	"unicode/utf8"

	"github.com/walmq/walmq"
)

const subHelp = `Fetches messages as a member of the consumer group (created, at the
earliest message, if it does not exist), prints each one, and acks each
fetched batch once it is printed. Stops after --count messages, or when
--wait passes with nothing new; exits 0 also when nothing came.

Without --json each message's payload is printed on its own line. With
--json each message is one JSON object on its own line:

  {"partition":0,"offset":12,"key":"k","id":"m-1","timestamp":"2026-...Z",
   "headers":[{"key":"h","value":"v"}],"payload":"hello","deliveries":1}

key, id and headers are left out when empty. key, header values and
payload are strings when they are valid UTF-8; otherwise they are base64
(standard, padded) and a field says so: "key_base64":true,
"value_base64":true or "payload_base64":true.
`

// fetchBatch is the most messages one fetch asks for.
const fetchBatch = 1000

func sub(fs *flag.FlagSet) func(context.Context, *app, []string) error {
	group := fs.String("group", "", "consumer group (required)")
	count := fs.Int("count", 0, "stop after this many messages (0: no limit)")
	wait := fs.Duration("wait", 2*time.Second, "stop when nothing new came for this long")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	return func(ctx context.Context, a *app, args []string) error {
		switch {
		case *group == "":
			return usagef("--group is required")
		case *count < 0:
			return usagef("--count must not be negative")
		case *wait < 0:
			return usagef("--wait must not be negative")
		}
		topic := args[0]
		return a.withClient(ctx, func(c *walmq.Client) error {
			w := bufio.NewWriterSize(a.stdout, 64<<10)
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			got := 0
			for *count == 0 || got < *count {
				want := fetchBatch
				if *count > 0 {
					want = min(want, *count-got)
				}
				fctx, cancel := context.WithTimeout(ctx, *wait+a.timeout)
				ds, err := c.Fetch(fctx, *group, topic, want, *wait)
				cancel()
				if err != nil {
					return err
				}
				if len(ds) == 0 {
					return nil
				}
				refs := make([]walmq.Ref, len(ds))
				for i, d := range ds {
					if *asJSON {
						if err := enc.Encode(jsonDelivery(d)); err != nil {
							return err
						}
					} else {
						w.Write(d.Payload)
						w.WriteByte('\n')
					}
					refs[i] = d.Ref
				}
				if err := w.Flush(); err != nil {
					return err
				}
				if err := a.call(ctx, func(ctx context.Context) error { return c.Ack(ctx, refs...) }); err != nil {
					return err
				}
				got += len(ds)
			}
			return nil
		})
	}
}

// deliveryJSON is what sub --json prints for a message.
type deliveryJSON struct {
	Partition     int          `json:"partition"`
	Offset        uint64       `json:"offset"`
	Key           string       `json:"key,omitempty"`
	KeyBase64     bool         `json:"key_base64,omitempty"`
	ID            string       `json:"id,omitempty"`
	Timestamp     time.Time    `json:"timestamp"`
	Headers       []headerJSON `json:"headers,omitempty"`
	Payload       string       `json:"payload"`
	PayloadBase64 bool         `json:"payload_base64,omitempty"`
	Deliveries    uint32       `json:"deliveries,omitempty"` // 0 from read
}

type headerJSON struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	ValueBase64 bool   `json:"value_base64,omitempty"`
}

// text is b as a string when it is valid UTF-8, else its base64 and true.
func text(b []byte) (string, bool) {
	if utf8.Valid(b) {
		return string(b), false
	}
	return base64.StdEncoding.EncodeToString(b), true
}

func jsonDelivery(d walmq.Delivery) deliveryJSON {
	out := deliveryJSON{Partition: d.Partition, Offset: d.Offset, ID: d.ID, Timestamp: d.Timestamp.UTC(), Deliveries: d.Deliveries}
	out.Key, out.KeyBase64 = text(d.Key)
	out.Payload, out.PayloadBase64 = text(d.Payload)
	for _, h := range d.Headers {
		hj := headerJSON{Key: h.Key}
		hj.Value, hj.ValueBase64 = text(h.Value)
		out.Headers = append(out.Headers, hj)
	}
	return out
}
