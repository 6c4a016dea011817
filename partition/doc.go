// Package partition is one partition of a topic: its journal, the
// committed watermark, long-poll waiters, the committed state of every
// consumer group, and the leader's in-memory leases.
//
// # Two kinds of state
//
// A Partition holds two kinds of state that must not be confused.
//
// The committed state is deterministic. The journal itself, and for each
// consumer group an ack floor (every offset below it is settled) plus the
// set of settled offsets above it. It changes only when the FSM applies a
// Raft entry: Append, AddGroup, RemoveGroup, Settle, ResetGroup,
// SetGroupState and DeleteBefore. Applying the same entries in the same
// order gives the same state on every node, and these methods are
// idempotent where a replay can reach them (Settle ignores offsets already
// settled; Append refuses a stale Raft index with journal.ErrStaleIndex).
// GroupState and SetGroupState carry it in and out of snapshots.
//
// The lease state is not deterministic and is never part of the FSM: it
// lives only in the memory of the node that serves fetches, the leader.
// For each group it is a delivery cursor (the next offset never handed
// out) and a lease per handed-out offset with a deadline and a delivery
// count. Lease hands out messages, Release ends leases the broker is about
// to settle, Nack makes them available again, and ResetLeases forgets all
// of it when leadership changes. Time is passed in, so there is no clock
// inside the package.
//
//	p, err := partition.Open(dir, journal.Options{})
//	// FSM apply, on every node:
//	_, err = p.Append(journal.Batch{RaftIndex: idx, Timestamp: ts, Messages: msgs})
//	err = p.AddGroup("billing", p.Journal().FirstOffset())
//	n, err := p.Settle("billing", offsets)
//	// leader, serving a consumer:
//	ds, err := p.Lease("billing", time.Now(), 30*time.Second, 1000, 1<<20)
//	err = p.Release("billing", acked) // then propose the settle through Raft
//	err = p.Wait(ctx, p.Watermark()) // long poll: until more is committed
//
// # Delivery is at least once
//
// What survives a crash or a change of leader is the committed state: the
// journal, and each group's floor and settled set, rebuilt from the Raft
// log and snapshots. Leases do not survive. A new leader starts with no
// leases and every cursor at its group's floor (ResetLeases), so it hands
// out again every offset at or above the floor that is not settled, with
// Deliveries starting again at 1. An offset is settled only by an applied
// Raft entry, which the broker proposes after the consumer acknowledged
// it, so a message that was delivered but whose ack was not committed is
// delivered again: never lost, possibly duplicated. Within one leader's
// term a lease that reaches its deadline without an ack is handed out
// again with Deliveries one higher.
//
// # Watermark
//
// Offsets below the watermark are committed and may be read by consumers.
// Append moves it to the journal's next offset after the batch is written;
// Read and Lease never return an offset at or past it, even if the journal
// holds more. Wait blocks until it moves past a given offset: waiters share
// one channel that is closed and replaced on every advance, so a waiter
// costs no goroutine.
//
// # Concurrency
//
// Every method is safe for concurrent use. Group state and leases share
// one mutex, which is not held during journal reads: Lease reserves
// offsets under the lock, reads them without it, and then records the
// leases of what it hands out, giving back what a byte limit or an error
// kept it from handing out.
//
// # Cost
//
// A group's settled set is a bitmap window starting at the word holding
// the floor; whole words are dropped as the floor advances, so Settle is
// O(1) amortised. Leases are a map by offset plus two min-heaps with lazy
// deletion, one of deadlines and one of expired offsets, compacted when
// stale entries outnumber live ones. Lease with nothing expired costs
// O(messages returned).
package partition
