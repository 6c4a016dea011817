// Package cluster owns a walmq node's Raft instance (hashicorp/raft with
// raft-boltdb/v2 as log and stable store, logging through go-hclog), its
// state machine (package fsm) and snapshot store (package fsm/snapstore),
// and the leader-side publish batching.
//
// Open bootstraps a new data directory as a one-voter Raft group, or
// recovers an existing one, and returns once the node leads and has
// applied its whole log. The single-node mode is a one-voter group on the
// same code path a three-node cluster uses.
//
// # Clusters
//
// With RaftAddr (or a StreamLayer, as tests use with package faultnet) Raft
// talks to peers over hashicorp/raft's NetworkTransport; Peers bootstraps a
// new directory with that voter set (the same list on every node), and
// NoBootstrap leaves it waiting to be added. Open then returns without
// waiting for a leader. A leader takes writes (usable) only after a
// barrier over the entries of earlier terms, and drops every lease on each
// change of leadership. Membership: AddLearner, Promote, RemoveMember
// (refused when the voters left that answer would not form a quorum),
// TransferLeadership; VerifyLeader before linearizable reads. Each node's
// client address is replicated state (Announce, LeaderClientAddr), so the
// gRPC layer can forward to the leader. See docs/design.md, "The cluster".
//
// # Publishing
//
// Publish and PublishAsync queue messages for a partition. One batcher per
// partition drains what is queued while earlier entries commit (group
// commit), up to MaxBatchMessages / MaxBatchBytes (waiting up to Linger),
// and submits one raft.Apply per batch, in queue order, with up to
// PipelineDepth entries in flight. A publish is answered once its entry is
// committed (fsynced in the Raft log) and applied: an acknowledged publish
// is durable.
//
// Errors: ErrNotLeader (refused before reaching the log: retry on the
// leader), ErrClosed, and ErrTimeout when the wait ended after the entry
// was submitted or leadership was lost while it committed, so its outcome
// is unknown and a retry must reuse the message ids.
//
// # Scrubbing and repair
//
// A background scrubber (scrub.go) verifies every sealed segment of every
// partition once after Open and then every ScrubInterval, at most
// ScrubBytesPerSecond. A damaged segment, found by Open, a scrub or any
// read (Fetch, Read, Checksum), is logged at ERROR and queued; the node
// asks the other members, one after another, for the segment's records
// (PeerRecords, which the transport sets with SetPeerRecords; peers serve
// ReadRecords), the journal checks and swaps them in, and the snapshots
// that linked the damaged file are relinked to the repaired one. Until
// then, and for ever on a single node, the damaged records are refused
// (journal.ErrCorrupt) and listed in Status.
//
// # Layout
//
//	<dir>/raft/raft.db   raft-boltdb: log and stable store
//	<dir>/snapshots/     snapshot store
//	<dir>/topics/        partition journals (package fsm)
package cluster
