package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/walmq/walmq"
	"github.com/walmq/walmq/cmd/internal/proctest"
)

// ack is one line of pub --acks.
type ack struct {
	partition int
	offset    uint64
	payload   string
}

func parseAcks(t *testing.T, out string) []ack {
	t.Helper()
	var acks []ack
	for _, l := range lines(out) {
		f := strings.SplitN(l, "\t", 3)
		if len(f) != 3 {
			t.Fatalf("ack line %q: want PARTITION<TAB>OFFSET<TAB>PAYLOAD", l)
		}
		p, err1 := strconv.Atoi(f[0])
		o, err2 := strconv.ParseUint(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("ack line %q: bad partition or offset", l)
		}
		acks = append(acks, ack{p, o, f[2]})
	}
	return acks
}

// jsonMsg is one line of sub --json.
type jsonMsg struct {
	Partition     int       `json:"partition"`
	Offset        uint64    `json:"offset"`
	Key           string    `json:"key"`
	KeyBase64     bool      `json:"key_base64"`
	ID            string    `json:"id"`
	Timestamp     time.Time `json:"timestamp"`
	Payload       string    `json:"payload"`
	PayloadBase64 bool      `json:"payload_base64"`
	Deliveries    int       `json:"deliveries"`
}

func parseJSON(t *testing.T, out string) []jsonMsg {
	t.Helper()
	var msgs []jsonMsg
	for _, l := range lines(out) {
		var m jsonMsg
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("sub --json line %q: %v", l, err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// rows returns the rows of the table in out whose header starts with
// first, as fields.
func rows(t *testing.T, out, first string) [][]string {
	t.Helper()
	var rs [][]string
	in := false
	for _, l := range lines(out) {
		f := strings.Fields(l)
		switch {
		case len(f) > 0 && f[0] == first:
			in = true
		case in && len(f) > 0:
			rs = append(rs, f)
		}
	}
	if !in {
		t.Fatalf("no table with header %s in:\n%s", first, out)
	}
	return rs
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// TestRoundTrip drives every command against one node, over TCP and over
// the unix socket.
func TestRoundTrip(t *testing.T) {
	n := startNode(t, "")
	for _, tc := range []struct{ name, server string }{
		{"tcp", n.Addr},
		{"unix", "unix://" + n.socket},
	} {
		t.Run(tc.name, func(t *testing.T) { roundTrip(t, tc.server, "orders-"+tc.name) })
	}
	if code := n.Stop(t); code != 0 {
		t.Fatalf("node exit status %d after SIGTERM\n%s", code, n.Log())
	}
}

func roundTrip(t *testing.T, server, topic string) {
	before := time.Now().Add(-time.Second)
	if out := mustCLI(t, server, "", "topic", "create", topic, "--partitions", "3"); out != "created topic "+topic+" (3 partitions)\n" {
		t.Fatalf("topic create printed %q", out)
	}

	// Arguments, with a key: one partition, in order.
	acks := parseAcks(t, mustCLI(t, server, "", "pub", topic, "--key", "alice", "--acks", "a1", "a2", "a3"))
	keyPart := walmq.PartitionForKey([]byte("alice"), 3)
	for i, a := range acks {
		if want := (ack{keyPart, uint64(i), fmt.Sprintf("a%d", i+1)}); a != want {
			t.Fatalf("ack %d = %+v, want %+v", i, a, want)
		}
	}
	if len(acks) != 3 {
		t.Fatalf("%d acks for 3 messages", len(acks))
	}

	// Standard input: chunks of 1000 lines round robin over partitions
	// (from one picked at random), in input order within each.
	const nLines = 2500
	var in strings.Builder
	for i := range nLines {
		fmt.Fprintf(&in, "line-%04d\n", i)
	}
	stdinAcks := parseAcks(t, mustCLI(t, server, in.String(), "pub", topic, "--acks"))
	if len(stdinAcks) != nLines {
		t.Fatalf("%d acks for %d lines", len(stdinAcks), nLines)
	}
	next := map[int]uint64{keyPart: 3}
	seen := map[string]bool{}
	first := -1 // the partition of line 0
	for _, a := range stdinAcks {
		if a.payload == "line-0000" {
			first = a.partition
		}
	}
	if first < 0 {
		t.Fatal("line 0 was not acknowledged")
	}
	for _, a := range stdinAcks {
		i := atoi(t, strings.TrimPrefix(a.payload, "line-"))
		if seen[a.payload] {
			t.Fatalf("line %d acked twice", i)
		}
		seen[a.payload] = true
		if want := (first + i/1000) % 3; a.partition != want {
			t.Fatalf("line %d went to partition %d, want %d", i, a.partition, want)
		}
		if a.offset != next[a.partition] {
			t.Fatalf("line %d at offset %d of partition %d, want %d (input order)", i, a.offset, a.partition, next[a.partition])
		}
		next[a.partition]++
	}
	want := map[string]ack{}
	for _, a := range append(acks, stdinAcks...) {
		want[a.payload] = a
	}
	const total = nLines + 3

	// topic list and describe.
	found := false
	for _, r := range rows(t, mustCLI(t, server, "", "topic", "list"), "NAME") {
		if r[0] == topic {
			found = true
			if r[1] != "3" || r[2] != strconv.Itoa(total) || r[4] != "0" {
				t.Fatalf("topic list row %v: want 3 partitions, %d messages, 0 groups", r, total)
			}
		}
	}
	if !found {
		t.Fatalf("topic list lacks %s", topic)
	}
	desc := mustCLI(t, server, "", "topic", "describe", topic)
	if !strings.Contains(desc, "partitions:    3") || !strings.Contains(desc, "dedup window:  2m0s") {
		t.Fatalf("topic describe:\n%s", desc)
	}
	for _, r := range rows(t, desc, "PARTITION") {
		p := atoi(t, r[0])
		if r[1] != "0" || uint64(atoi(t, r[2])) != next[p] || atoi(t, r[3]) <= 0 || r[4] != "1" {
			t.Fatalf("topic describe row %v: want first 0, next %d, some bytes, 1 segment", r, next[p])
		}
	}

	// sub gets exactly the messages, where they were acknowledged.
	checkSub := func(out string) {
		t.Helper()
		msgs := parseJSON(t, out)
		got := map[string]bool{}
		for _, m := range msgs {
			w, ok := want[m.Payload]
			if !ok || got[m.Payload] {
				t.Fatalf("sub gave %+v: unknown or repeated", m)
			}
			got[m.Payload] = true
			if m.Partition != w.partition || m.Offset != w.offset {
				t.Fatalf("sub gave %q at %d/%d, acked at %d/%d", m.Payload, m.Partition, m.Offset, w.partition, w.offset)
			}
			if m.Timestamp.Before(before) || m.Timestamp.After(time.Now()) {
				t.Fatalf("sub gave %q stamped %v", m.Payload, m.Timestamp)
			}
		}
		if len(got) != total {
			t.Fatalf("sub gave %d messages, want %d", len(got), total)
		}
	}
	checkSub(mustCLI(t, server, "", "sub", topic, "--group", "g", "--json", "--wait", "500ms"))
	if out := mustCLI(t, server, "", "sub", topic, "--group", "g", "--wait", "200ms"); out != "" {
		t.Fatalf("a second sub got %q, want nothing", out)
	}
	if out := mustCLI(t, server, "", "group", "list", topic); out != "g\n" {
		t.Fatalf("group list printed %q", out)
	}
	groupRows := func() [][]string {
		t.Helper()
		return rows(t, mustCLI(t, server, "", "group", "describe", topic, "g"), "PARTITION")
	}
	for _, r := range groupRows() {
		p := atoi(t, r[0])
		if end := strconv.FormatUint(next[p], 10); r[1] != end || r[2] != end || r[3] != "0" || r[4] != "0" {
			t.Fatalf("group describe row %v: want ack floor = end = %s, lag 0, pending 0", r, end)
		}
	}

	// group reset, by offset and by time.
	if out := mustCLI(t, server, "", "group", "reset", topic, "g", "--to-offset", "0"); !strings.Contains(out, "offset 0") {
		t.Fatalf("group reset printed %q", out)
	}
	for _, r := range groupRows() {
		p := atoi(t, r[0])
		if end := strconv.FormatUint(next[p], 10); r[1] != "0" || r[2] != end || r[3] != end {
			t.Fatalf("after reset to 0, group describe row %v: want ack floor 0, lag %s", r, end)
		}
	}
	if got := lines(mustCLI(t, server, "", "sub", topic, "--group", "g", "--count", "10", "--wait", "500ms")); len(got) != 10 {
		t.Fatalf("sub --count 10 printed %d lines", len(got))
	}
	mustCLI(t, server, "", "group", "reset", topic, "g", "--to-time", time.Now().Add(time.Hour).Format(time.RFC3339))
	if out := mustCLI(t, server, "", "sub", topic, "--group", "g", "--wait", "200ms"); out != "" {
		t.Fatalf("after a reset to the future, sub got %q", out)
	}
	mustCLI(t, server, "", "group", "reset", topic, "g", "--to-time", before.Format(time.RFC3339Nano))
	checkSub(mustCLI(t, server, "", "sub", topic, "--group", "g", "--json", "--wait", "500ms"))

	// read prints each partition as stored, however often it is run.
	for p := range 3 {
		msgs := parseJSON(t, mustCLI(t, server, "", "read", topic, "--partition", strconv.Itoa(p), "--json"))
		if uint64(len(msgs)) != next[p] {
			t.Fatalf("read --partition %d printed %d messages, want %d", p, len(msgs), next[p])
		}
		for i, m := range msgs {
			if w := want[m.Payload]; m.Partition != p || m.Offset != uint64(i) || w.partition != p || w.offset != m.Offset {
				t.Fatalf("read --partition %d gave %+v at line %d; it was acknowledged at %d/%d", p, m, i, w.partition, w.offset)
			}
		}
	}
	if got := lines(mustCLI(t, server, "", "read", topic, "--from", "1", "--count", "2")); len(got) != 2 {
		t.Fatalf("read --from 1 --count 2 printed %d lines", len(got))
	}
	if r := cli(t, server, "", "read", topic, "--partition", "3"); r.Code != 1 || !strings.Contains(r.Stderr, "partition") {
		t.Fatalf("read of partition 3 of 3: exit %d, %q", r.Code, r.Stderr)
	}

	if out := mustCLI(t, server, "", "topic", "delete", topic); out != "deleted topic "+topic+"\n" {
		t.Fatalf("topic delete printed %q", out)
	}
	if r := cli(t, server, "", "topic", "describe", topic); r.Code != 1 || !strings.Contains(r.Stderr, "topic not found") {
		t.Fatalf("describe after delete: exit %d, %q", r.Code, r.Stderr)
	}
}

func TestStatus(t *testing.T) {
	n := startNode(t, "")
	// WALMQ_SERVER names the node when --server is not given.
	r := proctest.Run(t, 30*time.Second, proctest.Env("WALMQ_SERVER=unix://"+n.socket), nil, walmqBin, "status")
	if r.Code != 0 {
		t.Fatalf("status: exit %d: %s", r.Code, r.Stderr)
	}
	for _, want := range []string{"node id: node1", "role: leader", "leader: node1", "members: 1", "scrub passes: ",
		"segments repaired: 0", "damaged segments: 0"} {
		if !strings.Contains(strings.Join(strings.Fields(r.Stdout), " "), want) {
			t.Fatalf("status lacks %q:\n%s", want, r.Stdout)
		}
	}
	applied := 0
	for _, l := range lines(r.Stdout) {
		if v, ok := strings.CutPrefix(l, "applied index:"); ok {
			applied = atoi(t, strings.TrimSpace(v))
		}
	}
	if applied < 1 {
		t.Fatalf("status: applied index %d:\n%s", applied, r.Stdout)
	}
	if rs := rows(t, r.Stdout, "ID"); len(rs) != 1 || rs[0][0] != "node1" || rs[0][2] != "voter" || rs[0][3] != "yes" {
		t.Fatalf("status members %v", rs)
	}
}

func TestPubIDs(t *testing.T) {
	n := startNode(t, "")
	mustCLI(t, n.Addr, "", "topic", "create", "ids")
	first := mustCLI(t, n.Addr, "", "pub", "ids", "--id", "order-7", "--acks", "a", "b", "c")
	if again := mustCLI(t, n.Addr, "", "pub", "ids", "--id", "order-7", "--acks", "a", "b", "c"); again != first {
		t.Fatalf("a repeat with the same ids acked\n%s\nthe first time:\n%s", again, first)
	}
	in := "x\ny\n"
	mustCLI(t, n.Addr, in, "pub", "ids", "--id", "line")
	mustCLI(t, n.Addr, in, "pub", "ids", "--id", "line")
	msgs := parseJSON(t, mustCLI(t, n.Addr, "", "sub", "ids", "--group", "g", "--json", "--wait", "500ms"))
	var got []string
	for _, m := range msgs {
		got = append(got, m.ID+"="+m.Payload)
	}
	if want := "order-7=a order-7-1=b order-7-2=c line=x line-1=y"; strings.Join(got, " ") != want {
		t.Fatalf("stored %q, want %q", strings.Join(got, " "), want)
	}
}

func TestSubJSONBinary(t *testing.T) {
	n := startNode(t, "")
	mustCLI(t, n.Addr, "", "topic", "create", "bin")
	mustCLI(t, n.Addr, "\xff\x00a\ntext é\n", "pub", "bin", "--key", "k\xfe")
	msgs := parseJSON(t, mustCLI(t, n.Addr, "", "sub", "bin", "--group", "g", "--json", "--wait", "500ms"))
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want 2", len(msgs))
	}
	raw, err := base64.StdEncoding.DecodeString(msgs[0].Payload)
	if !msgs[0].PayloadBase64 || err != nil || !bytes.Equal(raw, []byte("\xff\x00a")) {
		t.Fatalf("binary payload came as %+v", msgs[0])
	}
	if msgs[1].PayloadBase64 || msgs[1].Payload != "text é" {
		t.Fatalf("text payload came as %+v", msgs[1])
	}
	key, err := base64.StdEncoding.DecodeString(msgs[0].Key)
	if !msgs[0].KeyBase64 || err != nil || string(key) != "k\xfe" || msgs[0].Deliveries != 1 {
		t.Fatalf("binary key came as %+v", msgs[0])
	}
}

// TestPubLargeLines publishes lines of the largest size a message may have.
func TestPubLargeLines(t *testing.T) {
	n := startNode(t, "")
	mustCLI(t, n.Addr, "", "topic", "create", "large")
	const count = 3
	line := strings.Repeat("x", 1<<20)
	if out := mustCLI(t, n.Addr, strings.Repeat(line+"\n", count), "pub", "large"); out != "" {
		t.Fatalf("pub without --acks printed %q", out)
	}
	rs := rows(t, mustCLI(t, n.Addr, "", "topic", "describe", "large"), "PARTITION")
	if rs[0][2] != strconv.Itoa(count) || atoi(t, rs[0][3]) < count<<20 {
		t.Fatalf("after publishing %d lines of 1 MiB, the partition is %v", count, rs[0])
	}
}

func TestBadInput(t *testing.T) {
	n := startNode(t, "")
	mustCLI(t, n.Addr, "", "topic", "create", "t")
	tooLong := strings.Repeat("x", 1<<20+1) + "\n"
	tooLongForScanner := strings.Repeat("x", 2<<20) + "\n"
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		msg   string
	}{
		{"unknown command", "", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"group without subcommand", "", []string{"group"}, 2, "give one of: list, describe, reset"},
		{"unknown flag", "", []string{"topic", "list", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"extra argument", "", []string{"topic", "list", "x"}, 2, `unexpected argument "x"`},
		{"missing topic name", "", []string{"topic", "create"}, 2, "missing NAME"},
		{"missing group", "", []string{"group", "describe", "t"}, 2, "missing GROUP"},
		{"bad topic name", "", []string{"topic", "create", "bad/name"}, 1, `invalid name: topic "bad/name"`},
		{"zero partitions", "", []string{"topic", "create", "z", "--partitions", "0"}, 2, "--partitions must be at least 1"},
		{"too many partitions", "", []string{"topic", "create", "z", "--partitions", "100000"}, 1, "invalid configuration"},
		{"partitions overflow", "", []string{"topic", "create", "z", "--partitions", "99999999999"}, 2, "--partitions must be"},
		{"bad duration", "", []string{"topic", "create", "z", "--max-age", "forever"}, 2, "invalid value"},
		{"topic exists", "", []string{"topic", "create", "t"}, 1, "topic already exists"},
		{"describe unknown topic", "", []string{"topic", "describe", "nosuch"}, 1, `topic not found: "nosuch"`},
		{"delete unknown topic", "", []string{"topic", "delete", "nosuch"}, 1, "topic not found"},
		{"pub to unknown topic", "", []string{"pub", "nosuch", "x"}, 1, "topic not found"},
		{"pub stdin to unknown topic", "x\n", []string{"pub", "nosuch"}, 1, "topic not found"},
		{"pub message too large", tooLong, []string{"pub", "t"}, 1, "message too large"},
		{"pub line too long", tooLongForScanner, []string{"pub", "t"}, 1, "longer than 1 MiB"},
		{"sub without group", "", []string{"sub", "t"}, 2, "--group is required"},
		{"sub unknown topic", "", []string{"sub", "nosuch", "--group", "g"}, 1, "topic not found"},
		{"unknown group", "", []string{"group", "describe", "t", "nog"}, 1, "consumer group not found"},
		{"groups of unknown topic", "", []string{"group", "list", "nosuch"}, 1, "topic not found"},
		{"reset without target", "", []string{"group", "reset", "t", "g"}, 2, "exactly one of --to-offset and --to-time"},
		{"reset with both", "", []string{"group", "reset", "t", "g", "--to-offset", "1", "--to-time", "2026-01-01T00:00:00Z"}, 2, "exactly one"},
		{"reset bad time", "", []string{"group", "reset", "t", "g", "--to-time", "yesterday"}, 2, "not an RFC 3339 time"},
		{"bench zero producers", "", []string{"bench", "--producers", "0"}, 2, "--producers must be at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := cli(t, n.Addr, tc.stdin, tc.args...)
			if r.Code != tc.code || !strings.Contains(r.Stderr, tc.msg) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", r.Code, r.Stderr, tc.code, tc.msg)
			}
			if r.Code == 2 && !strings.Contains(r.Stderr, "Usage: walmq") {
				t.Fatalf("a usage error without the usage: %q", r.Stderr)
			}
			if r.Code == 1 && !strings.HasPrefix(r.Stderr, "walmq: ") {
				t.Fatalf("an error not as \"walmq: <message>\": %q", r.Stderr)
			}
		})
	}
	// The node still serves, and nothing bad was stored.
	mustCLI(t, n.Addr, "", "status")
	if out := mustCLI(t, n.Addr, "", "topic", "list"); len(lines(out)) != 2 {
		t.Fatalf("topics after bad input:\n%s", out)
	}
	if out := mustCLI(t, n.Addr, "", "pub", "t", "--acks", "ok"); out != "0\t0\tok\n" {
		t.Fatalf("pub after bad input printed %q", out)
	}
}

func TestHelp(t *testing.T) {
	const server = "127.0.0.1:1" // never dialled
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		r := cli(t, server, "", args...)
		if r.Code != 0 {
			t.Fatalf("walmq %v: exit %d", args, r.Code)
		}
		for _, c := range commands {
			if !strings.Contains(r.Stdout, "  "+c.name) {
				t.Fatalf("walmq %v does not list %q:\n%s", args, c.name, r.Stdout)
			}
		}
	}
	if r := cli(t, server, ""); r.Code != 2 || !strings.Contains(r.Stderr, "no command") || !strings.Contains(r.Stderr, "Commands:") {
		t.Fatalf("walmq alone: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if r := cli(t, server, "", "pub", "-h"); r.Code != 0 || !strings.Contains(r.Stdout, "Usage: walmq pub TOPIC") || !strings.Contains(r.Stdout, "--acks") {
		t.Fatalf("walmq pub -h: exit %d, stdout %q", r.Code, r.Stdout)
	}
	if r := cli(t, server, "", "help", "sub"); r.Code != 0 || !strings.Contains(r.Stdout, "payload_base64") {
		t.Fatalf("walmq help sub: exit %d, stdout %q", r.Code, r.Stdout)
	}
}

func TestUnreachable(t *testing.T) {
	addr := freeAddr(t) // nothing listens there
	for _, server := range []string{addr, "unix://" + t.TempDir() + "/none.sock"} {
		start := time.Now()
		r := cli(t, server, "", "status", "--timeout", "20s")
		if r.Code != 1 || !strings.HasPrefix(r.Stderr, "walmq: cannot reach the node at "+server) {
			t.Fatalf("status against nothing: exit %d, stderr %q", r.Code, r.Stderr)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("took %v to report an unreachable node", d)
		}
	}
}

func TestBenchJSON(t *testing.T) {
	n := startNode(t, "")
	const msgs = 5000
	out := mustCLI(t, n.Addr, "", "bench", "--json", "--n", strconv.Itoa(msgs), "--producers", "4", "--window", "32", "--size", "64")
	if len(lines(out)) != 1 {
		t.Fatalf("bench --json printed %d lines:\n%s", len(lines(out)), out)
	}
	var res benchResult
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("bench --json printed %q: %v", out, err)
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(out), &fields); err != nil || len(fields) != 9 {
		t.Fatalf("bench --json printed %d fields, want natsbench's 7 and walmq's 2: %s", len(fields), out)
	}
	for _, f := range []string{"publish_msgs_per_s", "publish_p50_ms", "publish_p99_ms", "consume_msgs_per_s", "published", "consumed", "failed"} {
		if _, ok := fields[f]; !ok {
			t.Fatalf("bench --json lacks natsbench's field %s: %s", f, out)
		}
	}
	if res.Published != msgs || res.Consumed != msgs || res.Failed != 0 {
		t.Fatalf("published %d, consumed %d, failed %d; want %d, %d, 0", res.Published, res.Consumed, res.Failed, msgs, msgs)
	}
	if res.PublishMsgsPerS <= 0 || res.ConsumeMsgsPerS <= 0 || res.PublishP50Ms <= 0 || res.PublishP99Ms < res.PublishP50Ms {
		t.Fatalf("implausible figures: %+v", res)
	}
	// The group was deleted; the topic holds what was published.
	if out := mustCLI(t, n.Addr, "", "group", "list", "bench"); out != "" {
		t.Fatalf("bench left groups behind: %q", out)
	}
	if rs := rows(t, mustCLI(t, n.Addr, "", "topic", "describe", "bench"), "PARTITION"); len(rs) != 1 || rs[0][2] != strconv.Itoa(msgs) {
		t.Fatalf("bench topic: %v", rs)
	}
	// --ids adds the counts by ID.
	out = mustCLI(t, n.Addr, "", "bench", "--json", "--ids", "--n", "2000", "--producers", "3", "--window", "8")
	res = benchResult{}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench --ids --json printed %q: %v", out, err)
	}
	if res.Distinct == nil || *res.Distinct != 2000 || *res.Duplicates != 0 || *res.Lost != 0 || res.Consumed != 2000 {
		t.Fatalf("bench --ids: %s", out)
	}
}
