// Package fsm is walmq's replicated state machine: a raft.BatchingFSM that
// applies committed commands (topics, publish batches, settles, groups,
// retention, dead letters) to the partitions on disk.
//
// # Determinism
//
// Every replica applies the same entries and must reach the same state, so
// Apply never reads the clock, never draws a random number and never lets
// map order reach what it writes. Times come inside the command, stamped
// by the leader, and so do offsets the leader resolved from a time or from
// "earliest"/"latest" (the journal may hold more than the log position
// being applied during a replay, so the state machine never asks it).
//
// A command the state machine refuses (an unknown topic, a message too
// large) is refused identically everywhere and changes nothing. A storage
// error while applying a valid command is different: the machine fails
// (ErrFailed), calls Options.OnFatal so the node stops, and refuses every
// later entry and snapshot. It never skips an entry.
//
// # Restart and replay
//
// The journals are a materialised view of the Raft log and are not synced
// per apply. Raft runs with NoSnapshotRestoreOnStart: on a restart LoadLocal
// takes the metadata and group state from the node's newest snapshot
// manifest and opens the journals as they are, and Raft replays the log
// entries after that snapshot. A publish whose Raft index the partition's
// journal already holds is skipped (only the partition's next offset, kept
// by the state machine, moves), so the replay is idempotent. A journal
// behind the snapshot is lost data and refused.
//
// # Snapshots
//
// Snapshot (on the apply goroutine) hard-links every segment file into a
// staging directory and copies the metadata into a manifest: its cost is a
// link per segment, whatever the segments hold. Persist syncs the journals
// (only then may Raft drop the log behind the snapshot) and hands manifest
// and files to the snapshot store (package snapstore), by link, or as a
// stream to any other raft.SnapshotSink. Restore rebuilds the journals from
// a snapshot: sealed segments are linked when local, and each partition's
// last segment, which its journal appends to, is copied.
//
// # Commands
//
// Publish and Settle, the hot path, have a compact binary encoding; the
// others are JSON after a one-byte op. FuzzDecode checks the decoder.
package fsm
