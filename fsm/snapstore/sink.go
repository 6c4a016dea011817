package snapstore

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/raft"
)

// sinkMode is how a sink is being filled.
type sinkMode int

const (
	modeUnset  sinkMode = iota
	modeFiles           // SetManifest and AddFile: a local snapshot
	modeStream          // Write: a stream received from a leader
)

var errCanceled = errors.New("snapstore: sink canceled")

// Sink is a snapshot being created; Store.Create returns one. It is filled
// either with SetManifest and AddFile (a snapshot the FSM takes locally) or
// with Write (a snapshot stream received from the leader, in the format
// Reader produces), never both. Close completes the snapshot, Cancel
// discards it.
//
// A Sink is not safe for concurrent use. When it is filled with Write, a
// goroutine decodes the stream; Close and Cancel wait for it to end.
type Sink struct {
	store *Store
	dir   string // temporary directory of the snapshot
	names *nameSet
	meta  meta
	mode  sinkMode

	manifest []byte
	files    []File

	pw     *io.PipeWriter
	done   chan struct{}
	result streamResult

	closed   bool
	closeErr error
}

var _ raft.SnapshotSink = (*Sink)(nil)

// streamResult is what the decoding goroutine of a Write-mode sink found.
type streamResult struct {
	manifest []byte
	files    []File
	err      error
}

// ID returns the id the snapshot will have once closed.
func (k *Sink) ID() string { return k.meta.ID }

// use checks that the sink is open and may be used in mode m, and sets m.
func (k *Sink) use(m sinkMode) error {
	if k.closed {
		return ErrClosed
	}
	if k.mode != modeUnset && k.mode != m {
		return ErrMixedUse
	}
	k.mode = m
	return nil
}

// SetManifest sets the manifest of the snapshot, the FSM's own description
// of its state, of at most MaxManifestBytes bytes. The bytes are copied. A
// later call replaces the manifest.
func (k *Sink) SetManifest(b []byte) error {
	if err := k.use(modeFiles); err != nil {
		return fmt.Errorf("snapstore: set manifest: %w", err)
	}
	if len(b) > MaxManifestBytes {
		return fmt.Errorf("snapstore: set manifest: %d bytes, more than %d", len(b), MaxManifestBytes)
	}
	k.manifest = slices.Clone(b)
	return nil
}

// AddFile adds the first size bytes of the file src to the snapshot as
// name, a relative slash path such as "topics/orders/0/00000000000000000000.seg"
// (see ErrBadName). The file is hard-linked into the snapshot; only if
// linking fails is it copied, exactly size bytes. src may keep growing
// afterwards, but its first size bytes must never change: they are the
// snapshot's.
func (k *Sink) AddFile(name, src string, size int64) error {
	if err := k.use(modeFiles); err != nil {
		return fmt.Errorf("snapstore: add file: %w", err)
	}
	if err := k.names.check(name); err != nil {
		return fmt.Errorf("snapstore: add file: %w", err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("snapstore: add file %s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("snapstore: add file %s: %s is not a regular file", name, src)
	}
	if size < 0 || size > fi.Size() {
		return fmt.Errorf("snapstore: add file %s: size %d, but %s has %d bytes", name, size, src, fi.Size())
	}
	dst := filepath.Join(k.dir, filesDir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("snapstore: add file %s: %w", name, err)
	}
	// Under the store's lock, so that a ReplaceFile either finds this
	// link or is found by it.
	k.store.mu.Lock()
	defer k.store.mu.Unlock()
	src = k.store.replacementLocked(fi, src)
	if lerr := k.store.link(src, dst); lerr != nil {
		k.store.logger.Debug("hard link failed, copying", "src", src, "error", lerr)
		if cerr := copyFile(dst, src, size); cerr != nil {
			os.Remove(dst)
			return fmt.Errorf("snapstore: add file %s: %w", name, errors.Join(lerr, cerr))
		}
	}
	k.names.add(name)
	k.files = append(k.files, File{Name: name, Path: dst, Size: size})
	return nil
}

// copyFile copies the first size bytes of src to a new file dst.
func copyFile(dst, src string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = io.CopyN(out, in, size)
	if err == io.EOF {
		err = fmt.Errorf("%s is shorter than %d bytes", src, size)
	}
	return errors.Join(err, out.Close())
}

// Write consumes the next bytes of a snapshot stream, in chunks of any
// size. It fails as soon as the stream is found to be damaged.
func (k *Sink) Write(p []byte) (int, error) {
	if err := k.use(modeStream); err != nil {
		return 0, fmt.Errorf("snapstore: write: %w", err)
	}
	if k.pw == nil {
		pr, pw := io.Pipe()
		k.pw = pw
		k.done = make(chan struct{})
		go func() {
			defer close(k.done)
			m, files, err := ReadStream(pr, k.dir)
			k.result = streamResult{manifest: m, files: files, err: err}
			if err == nil {
				err = io.ErrClosedPipe
			}
			pr.CloseWithError(err)
		}()
	}
	return k.pw.Write(p)
}

// Close completes the snapshot. A sink filled with Write must have received
// a whole and valid stream, else Close fails with ErrCorrupt. Close syncs
// every file and directory of the snapshot, writes its metadata, moves it
// to its final name, where List and Open find it, and then deletes the
// snapshots beyond the number the store retains. On error the snapshot is
// discarded. A sink given nothing at all completes an empty snapshot. A
// second Close returns the result of the first.
func (k *Sink) Close() error {
	if k.closed {
		return k.closeErr
	}
	k.closed = true
	if err := k.finish(); err != nil {
		k.store.logger.Error("failed to complete snapshot", "id", k.meta.ID, "error", err)
		if rerr := os.RemoveAll(k.dir); rerr != nil {
			k.store.logger.Error("failed to remove incomplete snapshot", "path", k.dir, "error", rerr)
		}
		k.closeErr = fmt.Errorf("snapstore: close snapshot %s: %w", k.meta.ID, err)
		return k.closeErr
	}
	k.store.logger.Info("snapshot complete", "id", k.meta.ID, "files", len(k.files), "size", k.meta.Size)

	k.store.mu.Lock()
	defer k.store.mu.Unlock()
	if err := k.store.reapLocked(); err != nil {
		// The new snapshot is complete and durable; failing to delete old
		// ones must not make raft discard it.
		k.store.logger.Error("failed to delete old snapshots", "error", err)
	}
	return nil
}

// Cancel discards the snapshot. It does nothing after Close or Cancel; a
// Close after Cancel fails with ErrClosed.
func (k *Sink) Cancel() error {
	if k.closed {
		return nil
	}
	k.closed = true
	k.closeErr = fmt.Errorf("snapstore: close snapshot %s: %w", k.meta.ID, ErrClosed)
	if k.pw != nil {
		k.pw.CloseWithError(errCanceled)
		<-k.done
	}
	if err := os.RemoveAll(k.dir); err != nil {
		return fmt.Errorf("snapstore: cancel snapshot %s: %w", k.meta.ID, err)
	}
	return nil
}

// finish does the work of Close up to making the snapshot visible.
func (k *Sink) finish() error {
	if k.mode == modeStream {
		k.pw.Close()
		<-k.done
		if k.result.err != nil {
			return k.result.err
		}
		k.manifest, k.files = k.result.manifest, k.result.files
	}

	if err := writeFileSync(filepath.Join(k.dir, manifestFile), k.manifest); err != nil {
		return err
	}
	for _, f := range k.files {
		if err := syncPath(f.Path); err != nil {
			return err
		}
	}
	for _, d := range fileDirs(k.files) {
		if err := syncPath(filepath.Join(k.dir, filesDir, filepath.FromSlash(d))); err != nil {
			return err
		}
	}

	k.meta.ManifestCRC = crc32.Checksum(k.manifest, castagnoli)
	k.meta.Files = make([]fileMeta, len(k.files))
	for i, f := range k.files {
		k.meta.Files[i] = fileMeta{Name: f.Name, Size: f.Size}
	}
	k.meta.Size = streamSize(len(k.manifest), k.files)
	b, err := json.Marshal(&k.meta)
	if err != nil {
		return err
	}
	tmpMeta := filepath.Join(k.dir, metaFile+tmpSuffix)
	if err := writeFileSync(tmpMeta, b); err != nil {
		return err
	}
	if err := os.Rename(tmpMeta, filepath.Join(k.dir, metaFile)); err != nil {
		return err
	}
	if err := syncPath(k.dir); err != nil {
		return err
	}

	final := strings.TrimSuffix(k.dir, tmpSuffix)
	// Under the store's lock, so that a ReplaceFile walking the store
	// sees the snapshot under one of its names.
	k.store.mu.Lock()
	defer k.store.mu.Unlock()
	if err := os.Rename(k.dir, final); err != nil {
		return err
	}
	if err := syncPath(k.store.dir); err != nil {
		// The snapshot is visible but may not survive a crash: take it
		// back rather than report a failure and leave it listed.
		return errors.Join(err, os.Rename(final, k.dir))
	}
	return nil
}

// fileDirs returns the directories that hold files, relative to the files
// directory, deepest first and "." (the files directory itself) last.
func fileDirs(files []File) []string {
	set := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Name); d != "." && d != "/"; d = path.Dir(d) {
			set[d] = true
		}
	}
	dirs := make([]string, 0, len(set)+1)
	for d := range set {
		dirs = append(dirs, d)
	}
	slices.SortFunc(dirs, func(a, b string) int {
		return cmp.Or(strings.Count(b, "/")-strings.Count(a, "/"), strings.Compare(a, b))
	})
	return append(dirs, ".")
}

// writeFileSync writes data to a new file and syncs it.
func writeFileSync(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// syncPath fsyncs a file or directory.
func syncPath(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}
