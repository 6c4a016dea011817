// Package walmq is a durable message queue: topics of partitions kept in
// write-ahead journals, consumer groups with per-message acks, retention,
// and a typed channel API in the shape of Rust's std::sync::mpsc. Every
// change goes through a Raft log; an embedded broker is a one-voter group.
//
// # Promises
//
//   - An acknowledged publish is durable: its Raft entry was fsynced (by a
//     quorum, in a cluster) before the ack.
//   - Delivery is at-least-once: a message is delivered until it is
//     settled (Ack or Term) and the settle is committed; after a crash,
//     everything not recorded as settled is delivered again.
//   - Order is kept per partition: a key always maps to the same partition
//     (PartitionForKey), and one consumer sees a partition in offset order.
//
// # Embedded broker
//
//	b, err := walmq.Open("data", walmq.Options{})
//	defer b.Close()
//	err = b.CreateTopic(ctx, "orders", walmq.TopicConfig{Partitions: 3})
//	acks, err := b.Publish(ctx, "orders", walmq.Message{Key: []byte("42"), Payload: data})
//	ds, err := b.Fetch(ctx, "billing", "orders", 100, time.Second)
//	err = b.Ack(ctx, ds[0].Ref)
//
// # Channels
//
//	tx, rx, err := walmq.Bounded[Job](b, "jobs", 1000, walmq.ChannelOptions[Job]{})
//	err = tx.Send(Job{ID: 1})
//	d, err := rx.Recv()
//	err = d.Ack()
//
// Send's durability is SyncPerSend (the default: it returns once the value
// is committed), FlushOnly or SyncEvery(n, d); the two weaker modes may lose
// the last sends in a crash and say so in their documentation.
package walmq
