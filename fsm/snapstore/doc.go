// Package snapstore is walmq's raft.SnapshotStore. A snapshot is a small
// manifest, bytes owned by the FSM and opaque here, plus journal segment
// files hard-linked into the snapshot, so that taking one costs a few file
// system operations per file, not a copy of the retained bytes. A file is
// copied only if it cannot be linked (another file system).
//
// Segment files are append-only and the live tail segment keeps growing
// after it was linked, so every file of a snapshot has a recorded size and
// only that many bytes belong to the snapshot. A linked file shares its
// inode with the journal's: nothing may ever change or truncate the first
// Size bytes of a file once it is in a snapshot, whether through the
// journal's name or the snapshot's.
//
// # Usage
//
// The FSM, in FSMSnapshot.Persist, fills the sink with files:
//
//	k := sink.(*snapstore.Sink)
//	err := k.AddFile("topics/orders/0/00000000000000000000.seg", segPath, syncedSize)
//	err = k.SetManifest(manifest)
//	// raft calls k.Close() (or k.Cancel())
//
// If the sink is not a *Sink (raft was given another SnapshotStore), the
// FSM writes the stream itself with WriteStream(sink, manifest, files).
//
// To send a snapshot to a follower, raft reads the stream of the Reader
// returned by Open and writes it into the follower's sink, which decodes it
// to disk as it arrives. FSM.Restore then gets that Reader, wrapped by
// raft, and can use the files directly:
//
//	if r, ok := snapstore.AsReader(rc); ok {
//		manifest, files := r.Manifest(), r.Files() // read files[i].Path up to files[i].Size
//	} else {
//		manifest, files, err := snapstore.ReadStream(rc, scratchDir)
//	}
//
// # Files
//
//	<dir>/<id>/meta.json         raft.SnapshotMeta, manifest CRC, file names and sizes
//	<dir>/<id>/manifest          the FSM's manifest
//	<dir>/<id>/files/<name>      one file per name, e.g. files/topics/orders/0/00000000000000000000.seg
//	<dir>/<id>.tmp/              a snapshot being built; removed by New
//
// The id is "<term>-<index>-<unix milliseconds>", as in raft's
// FileSnapshotStore. A snapshot is built under its .tmp name; Close syncs
// the manifest, every file and every directory, writes meta.json (to a
// temporary name, synced, renamed, directory synced), renames the directory
// to its id and syncs the store's directory. So a snapshot that List shows
// is complete, and a crash leaves at most a .tmp directory. Then the
// snapshots beyond the retained number are deleted, except those that have
// an open Reader, which are deleted when it is closed.
//
// # Stream format
//
// All integers are little-endian.
//
//	"WMQSNAP1"                   8 bytes of magic
//	u32 manifest length          at most 64 MiB
//	manifest bytes
//	per file, in the order they were added:
//	  u16 name length            1 to 4096
//	  name                       relative slash path, no empty, "." or ".." element
//	  u64 size
//	  size bytes of content
//	  u32 CRC-32C (Castagnoli) of the content
//	u16 0xFFFF                   end marker
//	u32 CRC-32C of every byte of the stream before it
//
// Nothing follows the last checksum. The stream of a snapshot is not stored:
// Reader produces it from the manifest and the files, computing the
// checksums as it reads, and raft's SnapshotMeta.Size is its length. The
// checksums therefore protect the transfer, not the files at rest.
//
// # Damaged files
//
// Because the checksums cannot tell a file damaged at rest, SetFileCheck
// gives the store a check (walmq's: every journal record's CRC) that runs
// on each file before its content is streamed; a file that fails it ends
// the stream with ErrCorrupt and is logged. When a damaged file is
// repaired by writing a new file over its name, the snapshots that linked
// the old inode still hold it: ReplaceFile links the new file in its
// place in every snapshot, complete or being built, and makes a snapshot
// that adds the old file later take the new one.
package snapstore
