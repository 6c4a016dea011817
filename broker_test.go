package walmq_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/walmq/walmq"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustCreate(t testing.TB, b walmq.Broker, topic string, cfg walmq.TopicConfig) {
	t.Helper()
	if err := b.CreateTopic(ctxT(t), topic, cfg); err != nil {
		t.Fatalf("CreateTopic %s: %v", topic, err)
	}
}

// drain fetches and acks until nothing arrives for wait, returning the
// payloads by partition in delivery order.
func drain(t testing.TB, b walmq.Broker, group, topic string, wait time.Duration) map[int][]string {
	t.Helper()
	out := map[int][]string{}
	for {
		ds, err := b.Fetch(ctxT(t), group, topic, 500, wait)
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		if len(ds) == 0 {
			return out
		}
		refs := make([]walmq.Ref, len(ds))
		for i, d := range ds {
			out[d.Partition] = append(out[d.Partition], string(d.Payload))
			refs[i] = d.Ref
		}
		if err := b.Ack(ctxT(t), refs...); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
}

func TestPublishConsumeAckAcrossReopen(t *testing.T) {
	forEachEnv(t, testPublishConsumeAckAcrossReopen)
}

func testPublishConsumeAckAcrossReopen(t *testing.T, openBroker opener) {
	dir := t.TempDir()
	b := openBroker(t, dir, walmq.Options{})
	mustCreate(t, b, "orders", walmq.TopicConfig{Partitions: 3})
	want := map[int][]string{}
	for i := 0; i < 300; i++ {
		key := fmt.Sprintf("k%d", i%7)
		acks, err := b.Publish(ctxT(t), "orders", walmq.Message{Key: []byte(key), Payload: []byte(fmt.Sprintf("m%d", i))})
		if err != nil {
			t.Fatal(err)
		}
		if acks[0].Partition != walmq.PartitionForKey([]byte(key), 3) {
			t.Fatalf("key %s went to partition %d", key, acks[0].Partition)
		}
		want[acks[0].Partition] = append(want[acks[0].Partition], fmt.Sprintf("m%d", i))
	}
	// Consume half of each partition, ack it, and close.
	got := map[int][]string{}
	ds, err := b.Fetch(ctxT(t), "g", "orders", 150, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		got[d.Partition] = append(got[d.Partition], string(d.Payload))
		if err := b.Ack(ctxT(t), d.Ref); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen: the rest arrives, nothing acked arrives again.
	b = openBroker(t, dir, walmq.Options{})
	defer b.Close()
	for p, msgs := range drain(t, b, "g", "orders", 200*time.Millisecond) {
		got[p] = append(got[p], msgs...)
	}
	for p := 0; p < 3; p++ {
		if strings.Join(got[p], ",") != strings.Join(want[p], ",") {
			t.Errorf("partition %d: got %v\nwant %v", p, got[p], want[p])
		}
	}
}

func TestUnackedRedeliveredAfterReopen(t *testing.T) {
	forEachEnv(t, testUnackedRedeliveredAfterReopen)
}

func testUnackedRedeliveredAfterReopen(t *testing.T, openBroker opener) {
	dir := t.TempDir()
	b := openBroker(t, dir, walmq.Options{})
	mustCreate(t, b, "t", walmq.TopicConfig{})
	for i := 0; i < 10; i++ {
		if _, err := b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	ds, err := b.Fetch(ctxT(t), "g", "t", 10, time.Second)
	if err != nil || len(ds) != 10 {
		t.Fatalf("fetch: %d, %v", len(ds), err)
	}
	// Ack the odd ones only.
	for _, d := range ds {
		if d.Offset%2 == 1 {
			if err := b.Ack(ctxT(t), d.Ref); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.Close()
	b = openBroker(t, dir, walmq.Options{})
	defer b.Close()
	got := drain(t, b, "g", "t", 200*time.Millisecond)[0]
	if strings.Join(got, ",") != "0,2,4,6,8" {
		t.Fatalf("redelivered %v, want the unacked 0,2,4,6,8", got)
	}
}

func TestRedeliveryAfterAckWait(t *testing.T) { forEachEnv(t, testRedeliveryAfterAckWait) }

func testRedeliveryAfterAckWait(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{})
	if err := b.CreateGroup(ctxT(t), "t", "g", walmq.GroupConfig{AckWait: 200 * time.Millisecond, MaxDeliver: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	ds, _ := b.Fetch(ctxT(t), "g", "t", 10, time.Second)
	if len(ds) != 1 || ds[0].Deliveries != 1 {
		t.Fatalf("first fetch: %+v", ds)
	}
	// Within AckWait the message is not handed out again.
	if ds2, _ := b.Fetch(ctxT(t), "g", "t", 10, 50*time.Millisecond); len(ds2) != 0 {
		t.Fatalf("leased message delivered twice: %+v", ds2)
	}
	start := time.Now()
	ds, _ = b.Fetch(ctxT(t), "g", "t", 10, 2*time.Second)
	if len(ds) != 1 || ds[0].Deliveries != 2 || ds[0].Offset != 0 {
		t.Fatalf("after AckWait: %+v", ds)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("redelivery took %v", time.Since(start))
	}
	// An ack of the old lease's offset works once; a second ack is refused.
	if err := b.Ack(ctxT(t), ds[0].Ref); err != nil {
		t.Fatal(err)
	}
	if err := b.Ack(ctxT(t), ds[0].Ref); !errors.Is(err, walmq.ErrNotPending) {
		t.Fatalf("second ack: %v", err)
	}
}

func TestNackWithDelay(t *testing.T) { forEachEnv(t, testNackWithDelay) }

func testNackWithDelay(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{})
	b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte("x")})
	ds, _ := b.Fetch(ctxT(t), "g", "t", 1, time.Second)
	if err := b.Nack(ctxT(t), 300*time.Millisecond, ds[0].Ref); err != nil {
		t.Fatal(err)
	}
	if ds2, _ := b.Fetch(ctxT(t), "g", "t", 1, 100*time.Millisecond); len(ds2) != 0 {
		t.Fatal("nacked message came back before its delay")
	}
	ds, _ = b.Fetch(ctxT(t), "g", "t", 1, 2*time.Second)
	if len(ds) != 1 || ds[0].Deliveries != 2 {
		t.Fatalf("after the delay: %+v", ds)
	}
}

func TestDeadLetterAfterMaxDeliver(t *testing.T) { forEachEnv(t, testDeadLetterAfterMaxDeliver) }

func testDeadLetterAfterMaxDeliver(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{})
	if err := b.CreateGroup(ctxT(t), "t", "g", walmq.GroupConfig{AckWait: time.Hour, MaxDeliver: 3}); err != nil {
		t.Fatal(err)
	}
	b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte("poison"), Headers: []walmq.Header{{Key: "k", Value: []byte("v")}}})
	b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte("fine")})
	for i := 1; i <= 3; i++ {
		ds, err := b.Fetch(ctxT(t), "g", "t", 1, time.Second)
		if err != nil || len(ds) != 1 || string(ds[0].Payload) != "poison" || ds[0].Deliveries != uint32(i) {
			t.Fatalf("delivery %d: %+v %v", i, ds, err)
		}
		if err := b.Nack(ctxT(t), 0, ds[0].Ref); err != nil {
			t.Fatal(err)
		}
	}
	// The fourth delivery would pass MaxDeliver: the message goes to the
	// dead-letter topic and the next one is delivered instead.
	ds, err := b.Fetch(ctxT(t), "g", "t", 10, time.Second)
	if err != nil || len(ds) != 1 || string(ds[0].Payload) != "fine" {
		t.Fatalf("after dead-lettering: %+v %v", ds, err)
	}
	dl, err := b.Fetch(ctxT(t), "inspect", "t.g.dlq", 10, time.Second)
	if err != nil || len(dl) != 1 || string(dl[0].Payload) != "poison" {
		t.Fatalf("dead-letter topic: %+v %v", dl, err)
	}
	hdr := map[string]string{}
	for _, h := range dl[0].Headers {
		hdr[h.Key] = string(h.Value)
	}
	if hdr["k"] != "v" || hdr["walmq-dlq-deliveries"] != "3" || hdr["walmq-dlq-offset"] != "0" || !strings.Contains(hdr["walmq-dlq-reason"], "3 times") {
		t.Fatalf("dead-letter headers: %v", hdr)
	}
	// The original is settled: the group's floor passed it.
	if err := b.Ack(ctxT(t), ds[0].Ref); err != nil {
		t.Fatal(err)
	}
	if err := b.CommitAcks(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	gi, _ := b.DescribeGroup(ctxT(t), "t", "g")
	if gi.Partitions[0].AckFloor != 2 || gi.Partitions[0].Lag != 0 {
		t.Fatalf("group: %+v", gi.Partitions[0])
	}
}

func TestOutOfOrderAcksKeepFloor(t *testing.T) { forEachEnv(t, testOutOfOrderAcksKeepFloor) }

func testOutOfOrderAcksKeepFloor(t *testing.T, openBroker opener) {
	dir := t.TempDir()
	b := openBroker(t, dir, walmq.Options{})
	mustCreate(t, b, "t", walmq.TopicConfig{})
	for i := 0; i < 6; i++ {
		b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte(fmt.Sprint(i))})
	}
	ds, _ := b.Fetch(ctxT(t), "g", "t", 6, time.Second)
	ack := func(offs ...int) {
		for _, o := range offs {
			if err := b.Ack(ctxT(t), ds[o].Ref); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.CommitAcks(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	floor := func() uint64 {
		gi, err := b.DescribeGroup(ctxT(t), "t", "g")
		if err != nil {
			t.Fatal(err)
		}
		return gi.Partitions[0].AckFloor
	}
	ack(5, 3, 2)
	if f := floor(); f != 0 {
		t.Fatalf("floor %d with offset 0 unsettled", f)
	}
	ack(0)
	if f := floor(); f != 1 {
		t.Fatalf("floor %d, want 1 (offset 1 unsettled)", f)
	}
	ack(1)
	if f := floor(); f != 4 {
		t.Fatalf("floor %d, want 4", f)
	}
	b.Close()
	// After a restart only offset 4 comes back.
	b = openBroker(t, dir, walmq.Options{})
	defer b.Close()
	if got := drain(t, b, "g", "t", 200*time.Millisecond)[0]; strings.Join(got, ",") != "4" {
		t.Fatalf("redelivered %v, want [4]", got)
	}
}

func TestDedupWindow(t *testing.T) { forEachEnv(t, testDedupWindow) }

func testDedupWindow(t *testing.T, openBroker opener) {
	dir := t.TempDir()
	b := openBroker(t, dir, walmq.Options{})
	mustCreate(t, b, "t", walmq.TopicConfig{Partitions: 2, DedupWindow: time.Hour})
	first, err := b.Publish(ctxT(t), "t", walmq.Message{ID: "order-1", Key: []byte("a"), Payload: []byte("one")})
	if err != nil {
		t.Fatal(err)
	}
	// The same id again (in one call twice, and later, even to another
	// partition) stores nothing and returns the original's position.
	again, err := b.Publish(ctxT(t), "t",
		walmq.Message{ID: "order-1", Key: []byte("b"), Payload: []byte("one again")},
		walmq.Message{ID: "order-2", Key: []byte("a"), Payload: []byte("two")},
		walmq.Message{ID: "order-2", Key: []byte("a"), Payload: []byte("two again")})
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Duplicate || again[0].Partition != first[0].Partition || again[0].Offset != first[0].Offset {
		t.Fatalf("duplicate ack %+v, original %+v", again[0], first[0])
	}
	if again[1].Duplicate || !again[2].Duplicate || again[2].Offset != again[1].Offset {
		t.Fatalf("acks %+v", again)
	}
	b.Close()
	// The window survives a restart.
	b = openBroker(t, dir, walmq.Options{})
	defer b.Close()
	a3, err := b.Publish(ctxT(t), "t", walmq.Message{ID: "order-2", Key: []byte("a"), Payload: []byte("two, third time")})
	if err != nil || !a3[0].Duplicate || a3[0].Offset != again[1].Offset {
		t.Fatalf("after restart: %+v %v", a3, err)
	}
	var all []string
	for _, msgs := range drain(t, b, "g", "t", 200*time.Millisecond) {
		all = append(all, msgs...)
	}
	if len(all) != 2 {
		t.Fatalf("stored %v, want one and two only", all)
	}
}

func TestDedupWindowExpires(t *testing.T) { forEachEnv(t, testDedupWindowExpires) }

func testDedupWindowExpires(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{DedupWindow: 100 * time.Millisecond})
	b.Publish(ctxT(t), "t", walmq.Message{ID: "x", Payload: []byte("1")})
	time.Sleep(150 * time.Millisecond)
	a, err := b.Publish(ctxT(t), "t", walmq.Message{ID: "x", Payload: []byte("2")})
	if err != nil || a[0].Duplicate || a[0].Offset != 1 {
		t.Fatalf("after the window: %+v %v", a, err)
	}
}

func TestBadInputChangesNothing(t *testing.T) { forEachEnv(t, testBadInputChangesNothing) }

func testBadInputChangesNothing(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{MaxMessageBytes: 1000})
	defer b.Close()
	ctx := ctxT(t)
	mustCreate(t, b, "t", walmq.TopicConfig{Partitions: 2})
	b.Publish(ctx, "t", walmq.Message{Payload: []byte("x")})
	ds, _ := b.Fetch(ctx, "g", "t", 1, time.Second)
	before, _ := b.DescribeTopic(ctx, "t")
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"empty topic name", func() error { return b.CreateTopic(ctx, "", walmq.TopicConfig{}) }, walmq.ErrInvalidName},
		{"topic name with slash", func() error { return b.CreateTopic(ctx, "a/b", walmq.TopicConfig{}) }, walmq.ErrInvalidName},
		{"topic name with dot-dot", func() error { return b.CreateTopic(ctx, "..", walmq.TopicConfig{}) }, walmq.ErrInvalidName},
		{"too many partitions", func() error { return b.CreateTopic(ctx, "u", walmq.TopicConfig{Partitions: 5000}) }, walmq.ErrInvalidConfig},
		{"existing topic", func() error { return b.CreateTopic(ctx, "t", walmq.TopicConfig{}) }, walmq.ErrTopicExists},
		{"publish to unknown topic", func() error { _, err := b.Publish(ctx, "nope", walmq.Message{}); return err }, walmq.ErrTopicNotFound},
		{"partition out of range", func() error { _, err := b.PublishTo(ctx, "t", 2, walmq.Message{}); return err }, walmq.ErrPartitionRange},
		{"negative partition", func() error { _, err := b.PublishTo(ctx, "t", -1, walmq.Message{}); return err }, walmq.ErrPartitionRange},
		{"message too large", func() error {
			_, err := b.Publish(ctx, "t", walmq.Message{Payload: make([]byte, 1001)})
			return err
		}, walmq.ErrMessageTooLarge},
		{"one large message fails the call", func() error {
			_, err := b.PublishTo(ctx, "t", 0, walmq.Message{Payload: []byte("ok")}, walmq.Message{Payload: make([]byte, 1001)})
			return err
		}, walmq.ErrMessageTooLarge},
		{"empty publish", func() error { _, err := b.Publish(ctx, "t"); return err }, walmq.ErrEmptyPublish},
		{"ack of an offset never delivered", func() error {
			return b.Ack(ctx, walmq.Ref{Group: "g", Topic: "t", Partition: 1 - ds[0].Partition, Offset: 0})
		}, walmq.ErrNotPending},
		{"ack of an offset past the end", func() error {
			return b.Ack(ctx, walmq.Ref{Group: "g", Topic: "t", Partition: ds[0].Partition, Offset: 99})
		}, walmq.ErrNotPending},
		{"ack in an unknown group", func() error {
			return b.Ack(ctx, walmq.Ref{Group: "nope", Topic: "t", Partition: ds[0].Partition, Offset: 0})
		}, walmq.ErrGroupNotFound},
		{"ack on an unknown topic", func() error { return b.Ack(ctx, walmq.Ref{Group: "g", Topic: "nope"}) }, walmq.ErrTopicNotFound},
		{"describe an unknown group", func() error { _, err := b.DescribeGroup(ctx, "t", "nope"); return err }, walmq.ErrGroupNotFound},
		{"reset an unknown group", func() error { return b.ResetGroup(ctx, "t", "nope", walmq.ResetTo{}) }, walmq.ErrGroupNotFound},
		{"invalid group name", func() error { _, err := b.Fetch(ctx, "bad group", "t", 1, 0); return err }, walmq.ErrInvalidName},
		{"fetch of zero", func() error { _, err := b.Fetch(ctx, "g", "t", 0, 0); return err }, walmq.ErrInvalidArgument},
		{"delete an unknown topic", func() error { return b.DeleteTopic(ctx, "nope") }, walmq.ErrTopicNotFound},
		{"change partitions", func() error { return b.UpdateTopic(ctx, "t", walmq.TopicConfig{Partitions: 3}) }, walmq.ErrInvalidConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	after, _ := b.DescribeTopic(ctx, "t")
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatalf("topic changed:\n%+v\n%+v", before, after)
	}
	topics, _ := b.Topics(ctx)
	if len(topics) != 1 {
		t.Fatalf("topics %+v", topics)
	}
	// The delivery is still pending and can be acked.
	if err := b.Ack(ctx, ds[0].Ref); err != nil {
		t.Fatalf("ack after bad input: %v", err)
	}
}

func TestRetentionDeletesOnlyWholeSegments(t *testing.T) {
	forEachEnv(t, testRetentionDeletesOnlyWholeSegments)
}

func testRetentionDeletesOnlyWholeSegments(t *testing.T, openBroker opener) {
	dir := t.TempDir()
	b := openBroker(t, dir, walmq.Options{SegmentBytes: 4 << 10})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{MaxBytes: 10 << 10})
	for i := 0; i < 400; i++ {
		if _, err := b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte(fmt.Sprintf("%0100d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := b.DescribeTopic(ctxT(t), "t")
	if err := b.EnforceRetention(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	after, _ := b.DescribeTopic(ctxT(t), "t")
	p0, p1 := before.Partitions[0], after.Partitions[0]
	if p1.Bytes > 10<<10 || p1.Segments >= p0.Segments || p1.NextOffset != 400 {
		t.Fatalf("before %+v after %+v", p0, p1)
	}
	// The first retained offset is a segment boundary, and every message
	// from it on is there.
	segs, _ := filepath.Glob(filepath.Join(dir, "topics", "t", "0", "*.seg"))
	if filepath.Base(segs[0]) != fmt.Sprintf("%020d.seg", p1.FirstOffset) {
		t.Fatalf("first segment %s, first offset %d", segs[0], p1.FirstOffset)
	}
	got := drain(t, b, "g", "t", 100*time.Millisecond)[0]
	if len(got) != int(400-p1.FirstOffset) || got[0] != fmt.Sprintf("%0100d", p1.FirstOffset) {
		t.Fatalf("after retention read %d messages starting %q", len(got), got[0])
	}
}

func TestRetentionByAge(t *testing.T) { forEachEnv(t, testRetentionByAge) }

func testRetentionByAge(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{SegmentBytes: 2 << 10})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{MaxAge: time.Hour})
	old := time.Now().Add(-2 * time.Hour)
	for i := 0; i < 50; i++ {
		b.Publish(ctxT(t), "t", walmq.Message{Payload: make([]byte, 100), Timestamp: old})
	}
	for i := 0; i < 50; i++ {
		b.Publish(ctxT(t), "t", walmq.Message{Payload: make([]byte, 100)})
	}
	if err := b.EnforceRetention(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	ti, _ := b.DescribeTopic(ctxT(t), "t")
	first := ti.Partitions[0].FirstOffset
	if first == 0 || first > 50 {
		t.Fatalf("first offset %d: want old segments gone and every new message kept", first)
	}
}

func TestResetGroup(t *testing.T) { forEachEnv(t, testResetGroup) }

func testResetGroup(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{})
	for i := 0; i < 5; i++ {
		b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte(fmt.Sprint(i))})
	}
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	for i := 5; i < 10; i++ {
		b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte(fmt.Sprint(i))})
	}
	drain(t, b, "g", "t", 50*time.Millisecond)
	b.CommitAcks(ctxT(t))
	if err := b.ResetGroup(ctxT(t), "t", "g", walmq.ResetTo{Offset: 7}); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, b, "g", "t", 50*time.Millisecond)[0]; strings.Join(got, ",") != "7,8,9" {
		t.Fatalf("after reset to 7: %v", got)
	}
	b.CommitAcks(ctxT(t))
	if err := b.ResetGroup(ctxT(t), "t", "g", walmq.ResetTo{Time: mid}); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, b, "g", "t", 50*time.Millisecond)[0]; strings.Join(got, ",") != "5,6,7,8,9" {
		t.Fatalf("after reset to a time: %v", got)
	}
}

func TestStartLatest(t *testing.T) { forEachEnv(t, testStartLatest) }

func testStartLatest(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{})
	b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte("old")})
	if err := b.CreateGroup(ctxT(t), "t", "late", walmq.GroupConfig{StartAt: walmq.StartLatest}); err != nil {
		t.Fatal(err)
	}
	b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte("new")})
	if got := drain(t, b, "late", "t", 50*time.Millisecond)[0]; strings.Join(got, ",") != "new" {
		t.Fatalf("late group got %v", got)
	}
}

func TestWorkQueueSharesPartition(t *testing.T) { forEachEnv(t, testWorkQueueSharesPartition) }

func testWorkQueueSharesPartition(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{})
	for i := 0; i < 100; i++ {
		b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte(fmt.Sprint(i))})
	}
	seen := map[uint64]int{}
	// Two consumers of one group alternate; neither gets what the other
	// holds.
	for round := 0; round < 10; round++ {
		for c := 0; c < 2; c++ {
			ds, err := b.Fetch(ctxT(t), "g", "t", 5, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range ds {
				seen[d.Offset]++
			}
		}
	}
	if len(seen) != 100 {
		t.Fatalf("%d distinct offsets handed out, want 100", len(seen))
	}
	for off, n := range seen {
		if n != 1 {
			t.Fatalf("offset %d handed out %d times", off, n)
		}
	}
}

func TestDeleteTopic(t *testing.T) { forEachEnv(t, testDeleteTopic) }

func testDeleteTopic(t *testing.T, openBroker opener) {
	dir := t.TempDir()
	b := openBroker(t, dir, walmq.Options{})
	mustCreate(t, b, "t", walmq.TopicConfig{Partitions: 2})
	b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte("x")})
	if err := b.DeleteTopic(ctxT(t), "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "topics", "t")); !os.IsNotExist(err) {
		t.Fatalf("topic directory remains: %v", err)
	}
	// Re-created, it starts empty, also after a restart that replays the
	// whole history.
	mustCreate(t, b, "t", walmq.TopicConfig{})
	b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte("y")})
	b.Close()
	b = openBroker(t, dir, walmq.Options{})
	defer b.Close()
	if got := drain(t, b, "g", "t", 50*time.Millisecond)[0]; strings.Join(got, ",") != "y" {
		t.Fatalf("re-created topic holds %v", got)
	}
}

// TestAcksBeforeResetStayBefore: acks made before a reset, not yet
// committed, must not settle the messages the reset makes deliverable.
func TestAcksBeforeResetStayBefore(t *testing.T) { forEachEnv(t, testAcksBeforeReset) }

func testAcksBeforeReset(t *testing.T, openBroker opener) {
	b := openBroker(t, t.TempDir(), walmq.Options{CommitMaxDelay: time.Hour, CommitEvery: 1 << 20})
	defer b.Close()
	mustCreate(t, b, "t", walmq.TopicConfig{})
	for i := 0; i < 10; i++ {
		b.Publish(ctxT(t), "t", walmq.Message{Payload: []byte(fmt.Sprint(i))})
	}
	if got := drain(t, b, "g", "t", 50*time.Millisecond)[0]; len(got) != 10 {
		t.Fatalf("first pass: %v", got)
	}
	if err := b.ResetGroup(ctxT(t), "t", "g", walmq.ResetTo{Offset: 0}); err != nil {
		t.Fatal(err)
	}
	// Whatever acks are still pending get committed now, after the reset.
	if err := b.CommitAcks(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if got := drain(t, b, "g", "t", 50*time.Millisecond)[0]; len(got) != 10 {
		t.Fatalf("after the reset: %v, want all 10 again", got)
	}
}
