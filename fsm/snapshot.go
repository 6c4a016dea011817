package fsm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/fsm/snapstore"
	"github.com/walmq/walmq/journal"
	"github.com/walmq/walmq/partition"
)

// manifestVersion is the version of the snapshot manifest format.
const manifestVersion = 1

// manifest is the state machine's state at one Raft index: everything but
// the messages, which are in the segment files it lists.
type manifest struct {
	Version int             `json:"version"`
	Index   uint64          `json:"index"`
	Topics  []topicManifest `json:"topics"`
	// Members maps node ids to client addresses (see Member).
	Members map[string]string `json:"members,omitempty"`
}

type topicManifest struct {
	Name       string         `json:"name"`
	Config     TopicConfig    `json:"config"`
	Created    uint64         `json:"created"`
	Groups     []groupConfig  `json:"groups"`
	Dedup      []dedupEntry   `json:"dedup"`
	Partitions []partManifest `json:"partitions"`
}

type groupConfig struct {
	Name   string      `json:"name"`
	Config GroupConfig `json:"config"`
}

type partManifest struct {
	Next      uint64         `json:"next"`
	LastIndex uint64         `json:"last_index"` // journal's last Raft index
	Groups    []groupState   `json:"groups"`
	Segments  []fileManifest `json:"segments"`
}

type groupState struct {
	Name    string   `json:"name"`
	Floor   uint64   `json:"floor"`
	Settled []uint64 `json:"settled,omitempty"`
}

type fileManifest struct {
	Name string `json:"name"` // slash path relative to the topics dir
	Size int64  `json:"size"`
}

// snapshot is an FSMSnapshot: a manifest plus the segment files hard-linked
// into a staging directory at the moment Snapshot ran, so that retention
// running concurrently with Persist cannot take them away.
type snapshot struct {
	f       *FSM
	m       manifest
	staging string
	files   []fileManifest
	parts   []*partition.Partition
}

// Snapshot implements raft.FSM. It runs on the apply goroutine and costs
// one hard link per segment file, whatever the segments hold.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.Err(); err != nil {
		return nil, err
	}
	staging, err := os.MkdirTemp(filepath.Dir(filepath.Clean(f.opts.Dir)), ".snapshot-staging-")
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot staging: %w", err)
	}
	s := &snapshot{f: f, staging: staging, m: manifest{Version: manifestVersion, Index: f.AppliedIndex()}}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if len(f.members) > 0 {
		s.m.Members = maps.Clone(f.members)
	}
	for _, name := range slices.Sorted(maps.Keys(f.topics)) {
		t := f.topics[name]
		tm := topicManifest{Name: t.Name, Config: t.Config, Created: t.Created, Dedup: t.dedup.entries()}
		for _, g := range slices.Sorted(maps.Keys(t.Groups)) {
			tm.Groups = append(tm.Groups, groupConfig{Name: g, Config: t.Groups[g]})
		}
		for i, p := range t.Parts {
			pm := partManifest{Next: p.Next(), LastIndex: p.Journal().LastRaftIndex()}
			for _, g := range p.Groups() {
				floor, settled, err := p.GroupState(g)
				if err != nil {
					s.Release()
					return nil, err
				}
				pm.Groups = append(pm.Groups, groupState{Name: g, Floor: floor, Settled: settled})
			}
			for _, seg := range p.Journal().Segments() {
				fm := fileManifest{Name: path.Join(name, strconv.Itoa(i), filepath.Base(seg.Path)), Size: seg.Size}
				dst := filepath.Join(staging, filepath.FromSlash(fm.Name))
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					s.Release()
					return nil, fmt.Errorf("fsm: snapshot: %w", err)
				}
				if err := os.Link(seg.Path, dst); err != nil {
					s.Release()
					return nil, fmt.Errorf("fsm: snapshot: %w", err)
				}
				pm.Segments = append(pm.Segments, fm)
				s.files = append(s.files, fm)
			}
			s.parts = append(s.parts, p.Partition)
			tm.Partitions = append(tm.Partitions, pm)
		}
		s.m.Topics = append(s.m.Topics, tm)
	}
	return s, nil
}

// Persist implements raft.FSMSnapshot. It syncs the journals (only then
// may Raft drop the log entries behind the snapshot), then gives the store
// the manifest and the files: links into a snapstore sink, or the whole
// stream into any other sink.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	err := s.persist(sink)
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) persist(sink raft.SnapshotSink) error {
	for _, p := range s.parts {
		if err := p.Journal().Sync(); err != nil && !errors.Is(err, journal.ErrClosed) {
			return fmt.Errorf("fsm: snapshot: sync %s: %w", p.Journal().Dir(), err)
		}
	}
	mb, err := json.Marshal(s.m)
	if err != nil {
		return err
	}
	if k, ok := sink.(*snapstore.Sink); ok {
		if err := k.SetManifest(mb); err != nil {
			return err
		}
		for _, fm := range s.files {
			if err := k.AddFile(fm.Name, filepath.Join(s.staging, filepath.FromSlash(fm.Name)), fm.Size); err != nil {
				return err
			}
		}
		return nil
	}
	return snapstore.WriteStream(sink, mb, s.streamFiles())
}

func (s *snapshot) streamFiles() []snapstore.File {
	out := make([]snapstore.File, len(s.files))
	for i, fm := range s.files {
		out[i] = snapstore.File{Name: fm.Name, Path: filepath.Join(s.staging, filepath.FromSlash(fm.Name)), Size: fm.Size}
	}
	return out
}

// Release implements raft.FSMSnapshot.
func (s *snapshot) Release() { os.RemoveAll(s.staging) }

// LoadLocal sets the state to that of the node's own latest snapshot when
// the node restarts: the manifest gives the metadata and group state as of
// the snapshot's index, and the journals on disk, which may be ahead, are
// opened as they are (Raft then replays the entries after the snapshot,
// and the journals skip the batches they already hold). A journal behind
// the snapshot means lost data and is refused.
func (f *FSM) LoadLocal(r *snapstore.Reader) error {
	var m manifest
	if err := json.Unmarshal(r.Manifest(), &m); err != nil {
		return fmt.Errorf("fsm: snapshot manifest: %w", err)
	}
	if m.Version != manifestVersion {
		return fmt.Errorf("fsm: snapshot manifest version %d, want %d", m.Version, manifestVersion)
	}
	// A topic whose directory is gone, or holds a later incarnation of the
	// name, was deleted after the snapshot: the replay deletes it again.
	// Only a directory of the snapshot's own incarnation must hold
	// everything the snapshot says it held.
	same := map[string]bool{}
	for _, tm := range m.Topics {
		created, ok, err := readIncarnation(f.topicDir(tm.Name))
		if err != nil {
			return err
		}
		same[tm.Name] = ok && created == tm.Created
	}
	return f.load(&m, func(tm *topicManifest, i int, p *partition.Partition) error {
		pm := tm.Partitions[i]
		if got := p.Journal().LastRaftIndex(); same[tm.Name] && got < pm.LastIndex {
			return fmt.Errorf("fsm: journal %s holds Raft index %d, behind the snapshot's %d", p.Journal().Dir(), got, pm.LastIndex)
		}
		return nil
	})
}

// Restore implements raft.FSM: it replaces the whole state with the
// snapshot's, rebuilding the journals from its files. Sealed segments are
// hard-linked when the snapshot is local; the last segment of each
// partition, which its journal will append to, is always copied.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var (
		mb    []byte
		files []snapstore.File
	)
	if r, ok := snapstore.AsReader(rc); ok {
		mb, files = r.Manifest(), r.Files()
	} else {
		tmp, err := os.MkdirTemp(filepath.Dir(filepath.Clean(f.opts.Dir)), ".restore-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if mb, files, err = snapstore.ReadStream(rc, tmp); err != nil {
			return fmt.Errorf("fsm: restore: %w", err)
		}
	}
	var m manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return fmt.Errorf("fsm: snapshot manifest: %w", err)
	}
	if m.Version != manifestVersion {
		return fmt.Errorf("fsm: snapshot manifest version %d, want %d", m.Version, manifestVersion)
	}
	byName := map[string]snapstore.File{}
	for _, fl := range files {
		byName[fl.Name] = fl
	}
	// Every record of every segment is checked before anything is
	// replaced: a damaged snapshot is refused and changes nothing.
	for _, tm := range m.Topics {
		for _, pm := range tm.Partitions {
			for _, fm := range pm.Segments {
				src, ok := byName[fm.Name]
				if !ok {
					continue // refused below
				}
				if err := CheckSnapshotFile(fm.Name, src.Path, fm.Size); err != nil {
					f.log.Error("snapshot segment fails its check: refusing to restore the snapshot", "file", fm.Name, "error", err)
					return fmt.Errorf("fsm: restore %s: %w", fm.Name, err)
				}
			}
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.RemoveAll(f.opts.Dir); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	for _, tm := range m.Topics {
		for i, pm := range tm.Partitions {
			dir := f.partDir(tm.Name, i)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("fsm: restore: %w", err)
			}
			for k, fm := range pm.Segments {
				src, ok := byName[fm.Name]
				if !ok || src.Size != fm.Size || strings.Contains(fm.Name, "..") {
					return fmt.Errorf("fsm: restore: snapshot lacks segment %s of %d bytes", fm.Name, fm.Size)
				}
				dst := filepath.Join(f.opts.Dir, filepath.FromSlash(fm.Name))
				last := k == len(pm.Segments)-1
				if err := placeFile(src.Path, dst, fm.Size, last); err != nil {
					return fmt.Errorf("fsm: restore %s: %w", fm.Name, err)
				}
			}
		}
	}
	err := f.load(&m, func(tm *topicManifest, i int, p *partition.Partition) error {
		if got, want := p.Journal().NextOffset(), tm.Partitions[i].Next; got != want {
			return fmt.Errorf("fsm: restored journal %s ends at offset %d, the snapshot says %d", p.Journal().Dir(), got, want)
		}
		return nil
	})
	if err != nil {
		return err
	}
	f.applied.Store(m.Index)
	return nil
}

// placeFile links src to dst, or copies its first size bytes when it must
// not be shared (copy is set, the size differs, or linking fails).
func placeFile(src, dst string, size int64, copyIt bool) error {
	if !copyIt {
		if st, err := os.Stat(src); err == nil && st.Size() == size {
			if err := os.Link(src, dst); err == nil {
				return nil
			}
		}
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(out, in, size); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// load replaces the in-memory state with the manifest's, opening every
// partition from disk and calling check on each.
func (f *FSM) load(m *manifest, check func(tm *topicManifest, i int, p *partition.Partition) error) error {
	topics := map[string]*Topic{}
	closeAll := func() {
		for _, t := range topics {
			t.close()
		}
	}
	for ti := range m.Topics {
		tm := &m.Topics[ti]
		if len(tm.Partitions) != tm.Config.Partitions {
			closeAll()
			return fmt.Errorf("fsm: manifest: topic %q has %d partitions, config says %d", tm.Name, len(tm.Partitions), tm.Config.Partitions)
		}
		t, err := f.openTopic(tm.Name, tm.Config, tm.Created)
		if err != nil {
			closeAll()
			return err
		}
		topics[tm.Name] = t
		for _, g := range tm.Groups {
			t.Groups[g.Name] = g.Config
		}
		t.dedup.load(tm.Dedup)
		for i, p := range t.Parts {
			pm := tm.Partitions[i]
			if err := check(tm, i, p.Partition); err != nil {
				closeAll()
				return err
			}
			p.next.Store(pm.Next)
			for _, g := range pm.Groups {
				p.SetGroupState(g.Name, g.Floor, g.Settled)
			}
		}
	}
	f.mu.Lock()
	old := f.topics
	f.topics = topics
	f.members = maps.Clone(m.Members)
	f.mu.Unlock()
	for _, t := range old {
		t.close()
	}
	f.applied.Store(m.Index)
	return nil
}
