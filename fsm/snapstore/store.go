package snapstore

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Errors returned by the package, wrapped with context; test with errors.Is.
var (
	// ErrCorrupt means a snapshot stream or a stored snapshot is damaged:
	// bad magic, checksum mismatch, truncation, a bad file name, or a file
	// shorter than its recorded size.
	ErrCorrupt = errors.New("snapstore: snapshot corrupt")
	// ErrNotFound means Open was given the id of no completed snapshot.
	ErrNotFound = errors.New("snapstore: snapshot not found")
	// ErrBadName means a file name is not a clean relative slash path, or
	// is already used in the snapshot.
	ErrBadName = errors.New("snapstore: bad file name")
	// ErrMixedUse means a sink was given both files (SetManifest, AddFile)
	// and a stream (Write).
	ErrMixedUse = errors.New("snapstore: sink used both for files and for a stream")
	// ErrClosed means a sink or reader was used after Close or Cancel.
	ErrClosed = errors.New("snapstore: already closed")
)

const (
	metaFile     = "meta.json"
	manifestFile = "manifest"
	tmpSuffix    = ".tmp"

	// snapshotVersion is the only raft snapshot version supported, as
	// with raft's FileSnapshotStore.
	snapshotVersion raft.SnapshotVersion = 1
)

// Store is a raft.SnapshotStore whose snapshots are a manifest plus files
// hard-linked into the snapshot, so that taking one costs a few file system
// operations per file whatever the size of the files. Its methods are safe
// for concurrent use.
type Store struct {
	dir    string
	retain int
	logger hclog.Logger
	// link makes newname a hard link to oldname; os.Link but for tests
	// of the copy fallback.
	link func(oldname, newname string) error

	mu    sync.Mutex
	inUse map[string]int // open Readers per snapshot id
	// check, if set, is run on every file before its content is streamed
	// (see SetFileCheck).
	check func(name, path string, size int64) error
	// replaced are files ReplaceFile took out of the snapshots, each with
	// the file that took its place (see ReplaceFile).
	replaced []replacedFile
}

var _ raft.SnapshotStore = (*Store)(nil)

// meta is the content of meta.json.
type meta struct {
	raft.SnapshotMeta
	ManifestCRC uint32
	Files       []fileMeta
}

// fileMeta is a file as recorded in meta.json.
type fileMeta struct {
	Name string
	Size int64
}

// New opens the snapshot store in dir, creating dir if needed, and removes
// the temporary directories of snapshots that were never completed. After a
// new snapshot completes, only the newest retain snapshots are kept; retain
// must be at least 1. A nil logger discards log output.
func New(dir string, retain int, logger hclog.Logger) (*Store, error) {
	if retain < 1 {
		return nil, fmt.Errorf("snapstore: retain is %d, must be at least 1", retain)
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("snapstore: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snapstore: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() && strings.HasSuffix(e.Name(), tmpSuffix) {
			p := filepath.Join(dir, e.Name())
			logger.Warn("removing incomplete snapshot", "path", p)
			if err := os.RemoveAll(p); err != nil {
				return nil, fmt.Errorf("snapstore: remove incomplete snapshot: %w", err)
			}
		}
	}
	return &Store{
		dir:    dir,
		retain: retain,
		logger: logger,
		link:   os.Link,
		inUse:  map[string]int{},
	}, nil
}

// Create starts a snapshot at the given index and term. The snapshot is
// built in a temporary directory and becomes visible to List and Open only
// when the returned sink, a *Sink, is closed. trans is not used.
func (s *Store) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	if version != snapshotVersion {
		return nil, fmt.Errorf("snapstore: unsupported snapshot version %d", version)
	}
	id := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	tmp := filepath.Join(s.dir, id+tmpSuffix)
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("snapstore: create snapshot: %w", err)
	}
	if err := os.Mkdir(filepath.Join(tmp, filesDir), 0o755); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("snapstore: create snapshot: %w", err)
	}
	s.logger.Info("creating snapshot", "id", id, "index", index, "term", term)
	return &Sink{
		store: s,
		dir:   tmp,
		names: newNameSet(),
		meta: meta{SnapshotMeta: raft.SnapshotMeta{
			Version:            version,
			ID:                 id,
			Index:              index,
			Term:               term,
			Configuration:      configuration,
			ConfigurationIndex: configurationIndex,
		}},
	}, nil
}

// List returns the completed snapshots, newest (highest index, then
// highest term) first, at most as many as the store retains.
func (s *Store) List() ([]*raft.SnapshotMeta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	metas, err := s.snapshots()
	if err != nil {
		return nil, err
	}
	out := make([]*raft.SnapshotMeta, 0, min(len(metas), s.retain))
	for _, m := range metas[:min(len(metas), s.retain)] {
		out = append(out, &m.SnapshotMeta)
	}
	return out, nil
}

// snapshots reads the metadata of every completed snapshot, newest first.
// A completed snapshot whose metadata cannot be read is corruption: it is
// reported, not skipped, because starting from an older snapshot would
// silently lose the log entries compacted behind the newer one.
func (s *Store) snapshots() ([]*meta, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("snapstore: list: %w", err)
	}
	var metas []*meta
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), tmpSuffix) {
			continue
		}
		m, err := s.readMeta(e.Name())
		if err != nil {
			return nil, fmt.Errorf("snapstore: snapshot %s: %w", e.Name(), err)
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b *meta) int {
		return -cmp.Or(cmp.Compare(a.Index, b.Index), cmp.Compare(a.Term, b.Term), strings.Compare(a.ID, b.ID))
	})
	return metas, nil
}

func (s *Store) readMeta(id string) (*meta, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, id, metaFile))
	if err != nil {
		return nil, err
	}
	m := &meta{}
	if err := json.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, metaFile, err)
	}
	if m.ID != id {
		return nil, fmt.Errorf("%w: %s names snapshot %q", ErrCorrupt, metaFile, m.ID)
	}
	if m.Version != snapshotVersion {
		return nil, fmt.Errorf("unsupported snapshot version %d", m.Version)
	}
	return m, nil
}

// Open opens a completed snapshot. The returned reader is a *Reader; until
// it is closed, retention does not delete the snapshot. Open checks the
// manifest's checksum and that every file is at least as long as its
// recorded size, and fails with ErrCorrupt otherwise, or with ErrNotFound
// if there is no such snapshot.
func (s *Store) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, `/\`) || strings.HasSuffix(id, tmpSuffix) {
		return nil, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.readMeta(id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("snapstore: open %s: %w", id, err)
	}
	dir, err := filepath.Abs(filepath.Join(s.dir, id))
	if err != nil {
		return nil, nil, fmt.Errorf("snapstore: open %s: %w", id, err)
	}
	manifest, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return nil, nil, fmt.Errorf("snapstore: open %s: %w", id, err)
	}
	if crc := crc32.Checksum(manifest, castagnoli); crc != m.ManifestCRC {
		return nil, nil, fmt.Errorf("snapstore: open %s: %w: manifest checksum %08x, recorded %08x", id, ErrCorrupt, crc, m.ManifestCRC)
	}
	files := make([]File, len(m.Files))
	for i, fm := range m.Files {
		if err := validateName(fm.Name); err != nil {
			return nil, nil, fmt.Errorf("snapstore: open %s: %w: %w", id, ErrCorrupt, err)
		}
		f := File{Name: fm.Name, Path: filepath.Join(dir, filesDir, filepath.FromSlash(fm.Name)), Size: fm.Size}
		fi, err := os.Stat(f.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("snapstore: open %s: %w", id, err)
		}
		if !fi.Mode().IsRegular() || fi.Size() < f.Size {
			return nil, nil, fmt.Errorf("snapstore: open %s: %w: %s has %d bytes, recorded %d", id, ErrCorrupt, f.Path, fi.Size(), f.Size)
		}
		files[i] = f
	}
	m.Size = streamSize(len(manifest), files)
	s.inUse[id]++
	r := newReader(manifest, files, func() { s.release(id) })
	r.check = s.checkFile(id)
	return &m.SnapshotMeta, r, nil
}

// release ends a Reader's hold on snapshot id and deletes the snapshot if
// retention had to spare it.
func (s *Store) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inUse[id]--; s.inUse[id] > 0 {
		return
	}
	delete(s.inUse, id)
	if err := s.reapLocked(); err != nil {
		s.logger.Error("failed to delete old snapshots", "error", err)
	}
}

// reapLocked deletes the snapshots beyond the newest s.retain, except those
// with open Readers. s.mu must be held.
func (s *Store) reapLocked() error {
	metas, err := s.snapshots()
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range metas[min(len(metas), s.retain):] {
		if s.inUse[m.ID] > 0 {
			s.logger.Debug("keeping old snapshot while it is open", "id", m.ID)
			continue
		}
		s.logger.Info("deleting old snapshot", "id", m.ID)
		// Rename it to an incomplete name first, so that a crash in the
		// middle never leaves a half-deleted snapshot that looks complete
		// (New removes incomplete ones).
		dead := filepath.Join(s.dir, m.ID+".deleting"+tmpSuffix)
		if err := os.Rename(filepath.Join(s.dir, m.ID), dead); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.RemoveAll(dead); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
