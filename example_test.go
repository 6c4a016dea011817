package walmq_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/walmq/walmq"
)

// An embedded broker: publish, consume with a group, acknowledge.
func Example() {
	dir, _ := os.MkdirTemp("", "walmq-example-")
	defer os.RemoveAll(dir)
	b, err := walmq.Open(dir, walmq.Options{})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	ctx := context.Background()

	if err := b.CreateTopic(ctx, "orders", walmq.TopicConfig{Partitions: 1}); err != nil {
		panic(err)
	}
	acks, err := b.Publish(ctx, "orders",
		walmq.Message{Key: []byte("alice"), Payload: []byte("2 apples")},
		walmq.Message{Key: []byte("alice"), Payload: []byte("1 pear")})
	if err != nil {
		panic(err)
	}
	fmt.Println("stored at offsets", acks[0].Offset, acks[1].Offset)

	ds, err := b.Fetch(ctx, "billing", "orders", 10, time.Second)
	if err != nil {
		panic(err)
	}
	for _, d := range ds {
		fmt.Printf("%d %s\n", d.Offset, d.Payload)
		if err := b.Ack(ctx, d.Ref); err != nil {
			panic(err)
		}
	}
	// Output:
	// stored at offsets 0 1
	// 0 2 apples
	// 1 1 pear
}

// A typed channel: values are durable once Send returns, and a received
// value is acknowledged when done with.
func Example_channel() {
	dir, _ := os.MkdirTemp("", "walmq-example-")
	defer os.RemoveAll(dir)
	b, err := walmq.Open(dir, walmq.Options{})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	type Job struct{ ID int }
	tx, rx, err := walmq.Bounded(b, "jobs", 100, walmq.ChannelOptions[Job]{})
	if err != nil {
		panic(err)
	}
	for i := 1; i <= 3; i++ {
		if err := tx.Send(Job{ID: i}); err != nil {
			panic(err)
		}
	}
	tx.Close()
	for d, err := range rx.All() { // ends once empty with every sender closed
		if err != nil {
			panic(err)
		}
		fmt.Println("job", d.Value.ID)
		d.Ack()
	}
	// Output:
	// job 1
	// job 2
	// job 3
}
