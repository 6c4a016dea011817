package snapstore_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/fsm/snapstore"
)

// TestLocalSnapshot takes a snapshot through AddFile, lets one of its files
// grow afterwards, and checks that List, Open and the stream only ever show
// the recorded bytes.
func TestLocalSnapshot(t *testing.T) {
	src := t.TempDir()
	s := newStore(t, t.TempDir(), 3)
	manifest := []byte(`{"topics":["orders"]}`)
	tail := randomBytes(3, 70_000)
	entries := []entry{
		{"topics/orders/0/00000000000000000000.seg", randomBytes(1, 1000)},
		{"topics/orders/0/00000000000000000000.idx", nil},
		{"topics/orders/1/00000000000000000042.seg", tail[:50_000]},
	}
	tailPath := filepath.Join(src, "tail.seg")
	writeFile(t, tailPath, tail[:50_000])

	sink := create(t, s, 100, 7)
	for _, e := range entries[:2] {
		p := filepath.Join(src, filepath.FromSlash(e.name))
		writeFile(t, p, e.content)
		if err := sink.AddFile(e.name, p, int64(len(e.content))); err != nil {
			t.Fatalf("AddFile(%q): %v", e.name, err)
		}
	}
	if err := sink.AddFile(entries[2].name, tailPath, 50_000); err != nil {
		t.Fatalf("AddFile(tail): %v", err)
	}
	appendFile(t, tailPath, tail[50_000:60_000]) // the live tail grows before Close
	if err := sink.SetManifest(manifest); err != nil {
		t.Fatalf("SetManifest: %v", err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	appendFile(t, tailPath, tail[60_000:]) // and after

	metas, err := s.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(metas) != 1 {
		t.Fatalf("List returned %d snapshots, want 1", len(metas))
	}
	m := metas[0]
	if m.ID != sink.ID() || m.Index != 100 || m.Term != 7 || m.Version != 1 || m.ConfigurationIndex != 3 ||
		!reflect.DeepEqual(m.Configuration, testConfig) {
		t.Errorf("List()[0] = %+v, want id %s, index 100, term 7, version 1, configuration %+v at 3", m, sink.ID(), testConfig)
	}
	if want := int64(len(encodeStream(manifest, entries))); m.Size != want {
		t.Errorf("listed Size = %d, want the stream length %d", m.Size, want)
	}
	checkSnapshot(t, s, m.ID, manifest, entries)
}

// TestHardLink checks that AddFile links rather than copies, whatever the
// size of the file (a sparse 1 GiB file would take seconds to copy).
func TestHardLink(t *testing.T) {
	tests := []struct {
		name string
		size int64
	}{
		{"small", 10},
		{"sparse_1GiB", 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "seg")
			f, err := os.Create(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Truncate(tt.size); err != nil {
				t.Fatal(err)
			}
			f.Close()
			s := newStore(t, t.TempDir(), 1)
			sink := create(t, s, 1, 1)
			if err := sink.AddFile("p/seg", src, tt.size); err != nil {
				t.Fatalf("AddFile: %v", err)
			}
			if err := sink.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			_, rc, err := s.Open(sink.ID())
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer rc.Close()
			files := rc.(*snapstore.Reader).Files()
			a, err := os.Stat(src)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.Stat(files[0].Path)
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(a, b) {
				t.Errorf("snapshot file %s is not the source's inode: it was copied", files[0].Path)
			}
			if files[0].Size != tt.size {
				t.Errorf("Size = %d, want %d", files[0].Size, tt.size)
			}
		})
	}
}

// TestStreamTransfer sends a snapshot from one store to another the way
// raft does, in chunks of random size, and checks the copy.
func TestStreamTransfer(t *testing.T) {
	manifest := randomBytes(9, 3000)
	entries := []entry{
		{"topics/a/0/00000000000000000000.seg", randomBytes(10, 200_000)},
		{"topics/a/0/00000000000000000000.idx", randomBytes(11, 320)},
		{"topics/a/1/00000000000000000000.seg", nil},
		{"groups", randomBytes(12, 17)},
	}
	leader := newStore(t, t.TempDir(), 2)
	id := localSnapshot(t, leader, t.TempDir(), 50, 2, manifest, entries)
	meta, stream := openStream(t, leader, id)

	for seed := range uint64(3) {
		follower := newStore(t, t.TempDir(), 2)
		sink := create(t, follower, meta.Index, meta.Term)
		rng := rand.New(rand.NewPCG(seed, 0))
		for rest := stream; len(rest) > 0; {
			n := min(1+rng.IntN(4096), len(rest))
			if w, err := sink.Write(rest[:n]); err != nil || w != n {
				t.Fatalf("seed %d: Write of %d bytes = %d, %v", seed, n, w, err)
			}
			rest = rest[n:]
		}
		if err := sink.Close(); err != nil {
			t.Fatalf("seed %d: Close: %v", seed, err)
		}
		metas, err := follower.List()
		if err != nil || len(metas) != 1 || metas[0].ID != sink.ID() || metas[0].Size != meta.Size {
			t.Fatalf("seed %d: List = %v, %v; want one snapshot %s of %d bytes", seed, metas, err, sink.ID(), meta.Size)
		}
		checkSnapshot(t, follower, sink.ID(), manifest, entries)
	}
}

// TestRetention checks that only the newest snapshots are kept and listed,
// ordered by index, then term.
func TestRetention(t *testing.T) {
	type snap struct{ index, term uint64 }
	tests := []struct {
		name   string
		retain int
		snaps  []snap // in creation order
		want   []snap // List, newest first
	}{
		{"keep_2_of_3", 2, []snap{{10, 1}, {20, 1}, {30, 2}}, []snap{{30, 2}, {20, 1}}},
		{"keep_1", 1, []snap{{10, 1}, {20, 1}}, []snap{{20, 1}}},
		{"index_before_term", 5, []snap{{5, 2}, {7, 1}, {7, 3}, {6, 9}}, []snap{{7, 3}, {7, 1}, {6, 9}, {5, 2}}},
		{"older_created_later", 2, []snap{{30, 2}, {10, 1}, {20, 1}}, []snap{{30, 2}, {20, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir, tt.retain)
			ids := map[snap]string{}
			for _, sn := range tt.snaps {
				ids[sn] = localSnapshot(t, s, t.TempDir(), sn.index, sn.term, []byte("m"), []entry{{"f", []byte("x")}})
			}
			metas, err := s.List()
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var got, wantIDs []string
			for _, m := range metas {
				got = append(got, m.ID)
			}
			for _, sn := range tt.want {
				wantIDs = append(wantIDs, ids[sn])
			}
			if !slices.Equal(got, wantIDs) {
				t.Errorf("List = %v, want %v", got, wantIDs)
			}
			onDisk := dirNames(t, dir)
			slices.Sort(onDisk)
			slices.Sort(wantIDs)
			if !slices.Equal(onDisk, wantIDs) {
				t.Errorf("directory holds %v, want %v", onDisk, wantIDs)
			}
		})
	}
}

// TestRetentionSparesOpenReader checks that a snapshot being read (sent to
// a follower, or restored) survives retention until its reader is closed.
func TestRetentionSparesOpenReader(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, 1)
	entries := []entry{{"a/seg", randomBytes(1, 100_000)}}
	old := localSnapshot(t, s, t.TempDir(), 1, 1, []byte("old"), entries)
	_, rc, err := s.Open(old)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	newer := localSnapshot(t, s, t.TempDir(), 2, 1, []byte("new"), nil)

	if metas, err := s.List(); err != nil || len(metas) != 1 || metas[0].ID != newer {
		t.Errorf("List = %v, %v; want only %s", metas, err, newer)
	}
	stream, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading the old snapshot after a newer one completed: %v", err)
	}
	if want := encodeStream([]byte("old"), entries); !bytes.Equal(stream, want) {
		t.Errorf("stream of the old snapshot differs")
	}
	if _, err := os.Stat(filepath.Join(dir, old)); err != nil {
		t.Errorf("old snapshot deleted while open: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("Close reader: %v", err)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{newer}) {
		t.Errorf("after closing the reader the directory holds %v, want [%s]", got, newer)
	}
}

// TestCancel checks that Cancel leaves nothing behind, however far the sink
// got, and that a canceled stream's decoder stops.
func TestCancel(t *testing.T) {
	stream := encodeStream([]byte("m"), []entry{{"a", randomBytes(1, 10_000)}})
	tests := []struct {
		name string
		fill func(t *testing.T, k *snapstore.Sink)
	}{
		{"empty", func(*testing.T, *snapstore.Sink) {}},
		{"files", func(t *testing.T, k *snapstore.Sink) {
			p := filepath.Join(t.TempDir(), "f")
			writeFile(t, p, []byte("data"))
			if err := k.AddFile("x/f", p, 4); err != nil {
				t.Fatal(err)
			}
			if err := k.SetManifest([]byte("m")); err != nil {
				t.Fatal(err)
			}
		}},
		{"half_stream", func(t *testing.T, k *snapstore.Sink) {
			if _, err := k.Write(stream[:len(stream)/2]); err != nil {
				t.Fatal(err)
			}
		}},
		{"whole_stream", func(t *testing.T, k *snapstore.Sink) {
			if _, err := k.Write(stream); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir, 1)
			k := create(t, s, 1, 1)
			tt.fill(t, k)
			if err := k.Cancel(); err != nil {
				t.Fatalf("Cancel: %v", err)
			}
			if got := dirNames(t, dir); len(got) != 0 {
				t.Errorf("after Cancel the directory holds %v", got)
			}
			if err := k.Cancel(); err != nil {
				t.Errorf("second Cancel: %v", err)
			}
			if err := k.Close(); !errors.Is(err, snapstore.ErrClosed) {
				t.Errorf("Close after Cancel = %v, want ErrClosed", err)
			}
		})
	}
}

// TestIncompleteSnapshot checks that a snapshot whose sink was never closed
// (the process was killed) is neither listed nor opened, and that New
// removes it.
func TestIncompleteSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, 2)
	done := localSnapshot(t, s, t.TempDir(), 1, 1, []byte("done"), nil)
	k := create(t, s, 2, 1)
	p := filepath.Join(t.TempDir(), "f")
	writeFile(t, p, []byte("data"))
	if err := k.AddFile("f", p, 4); err != nil {
		t.Fatal(err)
	}
	if err := k.SetManifest([]byte("never closed")); err != nil {
		t.Fatal(err)
	}

	metas, err := s.List()
	if err != nil || len(metas) != 1 || metas[0].ID != done {
		t.Errorf("List = %v, %v; want only %s", metas, err, done)
	}
	if _, _, err := s.Open(k.ID()); !errors.Is(err, snapstore.ErrNotFound) {
		t.Errorf("Open(incomplete) = %v, want ErrNotFound", err)
	}
	if len(dirNames(t, dir)) != 2 {
		t.Fatalf("want the completed and the temporary snapshot on disk, have %v", dirNames(t, dir))
	}

	s2 := newStore(t, dir, 2) // restart
	if got := dirNames(t, dir); !slices.Equal(got, []string{done}) {
		t.Errorf("after New the directory holds %v, want [%s]", got, done)
	}
	if metas, err := s2.List(); err != nil || len(metas) != 1 || metas[0].ID != done {
		t.Errorf("List after restart = %v, %v; want only %s", metas, err, done)
	}
}

// TestOpenNotFound checks Open of ids that name no completed snapshot.
func TestOpenNotFound(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, 1)
	id := localSnapshot(t, s, t.TempDir(), 1, 1, nil, nil)
	for _, tt := range []struct{ name, id string }{
		{"unknown", "1-2-3"},
		{"empty", ""},
		{"parent", ".."},
		{"path", "../" + filepath.Base(dir) + "/" + id},
		{"temporary", id + ".tmp"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := s.Open(tt.id); !errors.Is(err, snapstore.ErrNotFound) {
				t.Errorf("Open(%q) = %v, want ErrNotFound", tt.id, err)
			}
		})
	}
}

// TestOpenCorrupt checks that Open refuses a snapshot whose files are
// shorter than recorded or whose manifest changed, and that Read fails if
// a file shrinks after Open.
func TestOpenCorrupt(t *testing.T) {
	entries := []entry{{"a/b", randomBytes(1, 5000)}}
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"file_truncated", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, "files", "a", "b"), 4999); err != nil {
				t.Fatal(err)
			}
		}},
		{"manifest_changed", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "manifest"), []byte("other"))
		}},
		{"meta_garbled", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "meta.json"), []byte("{"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newStore(t, dir, 1)
			id := localSnapshot(t, s, t.TempDir(), 1, 1, []byte("manifest"), entries)
			tt.damage(t, filepath.Join(dir, id))
			_, _, err := s.Open(id)
			if !errors.Is(err, snapstore.ErrCorrupt) {
				t.Errorf("Open = %v, want ErrCorrupt", err)
			}
		})
	}

	t.Run("file_truncated_while_open", func(t *testing.T) {
		dir := t.TempDir()
		s := newStore(t, dir, 1)
		id := localSnapshot(t, s, t.TempDir(), 1, 1, []byte("manifest"), entries)
		_, rc, err := s.Open(id)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer rc.Close()
		if err := os.Truncate(filepath.Join(dir, id, "files", "a", "b"), 100); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(rc); !errors.Is(err, snapstore.ErrCorrupt) {
			t.Errorf("reading = %v, want ErrCorrupt", err)
		}
	})
}

// TestSinkMisuse checks the errors of a sink used wrongly.
func TestSinkMisuse(t *testing.T) {
	srcDir := t.TempDir()
	src := filepath.Join(srcDir, "src")
	writeFile(t, src, []byte("0123456789"))
	stream := encodeStream(nil, nil)
	tests := []struct {
		name string
		use  func(k *snapstore.Sink) error
		want error // nil: any error
	}{
		{"write_after_add", func(k *snapstore.Sink) error {
			if err := k.AddFile("a", src, 1); err != nil {
				return err
			}
			_, err := k.Write(stream)
			return err
		}, snapstore.ErrMixedUse},
		{"write_after_manifest", func(k *snapstore.Sink) error {
			if err := k.SetManifest([]byte("m")); err != nil {
				return err
			}
			_, err := k.Write(stream)
			return err
		}, snapstore.ErrMixedUse},
		{"add_after_write", func(k *snapstore.Sink) error {
			if _, err := k.Write(stream[:3]); err != nil {
				return err
			}
			return k.AddFile("a", src, 1)
		}, snapstore.ErrMixedUse},
		{"manifest_after_write", func(k *snapstore.Sink) error {
			if _, err := k.Write(stream[:3]); err != nil {
				return err
			}
			return k.SetManifest(nil)
		}, snapstore.ErrMixedUse},
		{"add_after_close", func(k *snapstore.Sink) error {
			if err := k.Close(); err != nil {
				return err
			}
			return k.AddFile("a", src, 1)
		}, snapstore.ErrClosed},
		{"write_after_close", func(k *snapstore.Sink) error {
			if err := k.Close(); err != nil {
				return err
			}
			_, err := k.Write(stream)
			return err
		}, snapstore.ErrClosed},
		{"name_dotdot", func(k *snapstore.Sink) error { return k.AddFile("a/../../b", src, 1) }, snapstore.ErrBadName},
		{"name_absolute", func(k *snapstore.Sink) error { return k.AddFile("/etc/passwd", src, 1) }, snapstore.ErrBadName},
		{"name_empty", func(k *snapstore.Sink) error { return k.AddFile("", src, 1) }, snapstore.ErrBadName},
		{"name_empty_element", func(k *snapstore.Sink) error { return k.AddFile("a//b", src, 1) }, snapstore.ErrBadName},
		{"name_trailing_slash", func(k *snapstore.Sink) error { return k.AddFile("a/", src, 1) }, snapstore.ErrBadName},
		{"name_dot", func(k *snapstore.Sink) error { return k.AddFile("./a", src, 1) }, snapstore.ErrBadName},
		{"name_backslash", func(k *snapstore.Sink) error { return k.AddFile(`a\..\b`, src, 1) }, snapstore.ErrBadName},
		{"name_too_long", func(k *snapstore.Sink) error {
			return k.AddFile(string(bytes.Repeat([]byte("a"), snapstore.MaxNameBytes+1)), src, 1)
		}, snapstore.ErrBadName},
		{"name_twice", func(k *snapstore.Sink) error {
			if err := k.AddFile("a/b", src, 1); err != nil {
				return err
			}
			return k.AddFile("a/b", src, 2)
		}, snapstore.ErrBadName},
		{"file_as_directory", func(k *snapstore.Sink) error {
			if err := k.AddFile("a", src, 1); err != nil {
				return err
			}
			return k.AddFile("a/b", src, 2)
		}, snapstore.ErrBadName},
		{"directory_as_file", func(k *snapstore.Sink) error {
			if err := k.AddFile("a/b", src, 1); err != nil {
				return err
			}
			return k.AddFile("a", src, 2)
		}, snapstore.ErrBadName},
		{"size_beyond_source", func(k *snapstore.Sink) error { return k.AddFile("a", src, 11) }, nil},
		{"size_negative", func(k *snapstore.Sink) error { return k.AddFile("a", src, -1) }, nil},
		{"source_missing", func(k *snapstore.Sink) error { return k.AddFile("a", src+".missing", 0) }, nil},
		{"source_directory", func(k *snapstore.Sink) error { return k.AddFile("a", srcDir, 0) }, nil},
		{"manifest_too_long", func(k *snapstore.Sink) error {
			return k.SetManifest(make([]byte, snapstore.MaxManifestBytes+1))
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := create(t, newStore(t, t.TempDir(), 1), 1, 1)
			defer k.Cancel()
			err := tt.use(k)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("got error %v, want %v", err, tt.want)
			}
		})
	}
}

// TestEmptySnapshot checks a snapshot with no files and no manifest, both
// taken locally and received as a stream.
func TestEmptySnapshot(t *testing.T) {
	s := newStore(t, t.TempDir(), 2)
	k := create(t, s, 1, 1)
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkSnapshot(t, s, k.ID(), []byte{}, nil)

	k = create(t, s, 2, 1)
	if _, err := k.Write(encodeStream(nil, nil)); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkSnapshot(t, s, k.ID(), []byte{}, nil)
}

// wrapper stands for raft's counting wrapper around the reader of Open.
type wrapper struct{ io.ReadCloser }

func (w wrapper) WrappedReadCloser() io.ReadCloser { return w.ReadCloser }

var _ raft.ReadCloserWrapper = wrapper{}

// TestAsReader checks that the FSM can reach the *Reader through raft's
// wrapping.
func TestAsReader(t *testing.T) {
	s := newStore(t, t.TempDir(), 1)
	id := localSnapshot(t, s, t.TempDir(), 1, 1, []byte("m"), []entry{{"f", []byte("x")}})
	_, rc, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tests := []struct {
		name string
		r    io.Reader
		ok   bool
	}{
		{"direct", rc, true},
		{"wrapped", wrapper{rc}, true},
		{"wrapped_twice", wrapper{wrapper{rc}}, true},
		{"other", bytes.NewReader(nil), false},
		{"wrapping_other", wrapper{io.NopCloser(bytes.NewReader(nil))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := snapstore.AsReader(tt.r)
			if ok != tt.ok || (ok && r != rc) {
				t.Errorf("AsReader = %p, %v; want %p, %v", r, ok, rc, tt.ok)
			}
		})
	}
}

// TestBadArguments checks New and Create refuse what they cannot honour.
func TestBadArguments(t *testing.T) {
	if _, err := snapstore.New(t.TempDir(), 0, nil); err == nil {
		t.Error("New with retain 0 succeeded")
	}
	s := newStore(t, t.TempDir(), 1)
	if _, err := s.Create(0, 1, 1, testConfig, 1, nil); err == nil {
		t.Error("Create of version 0 succeeded")
	}
	if _, err := s.Create(2, 1, 1, testConfig, 1, nil); err == nil {
		t.Error("Create of version 2 succeeded")
	}
}

// TestListRefusesUnreadableSnapshot: a completed snapshot whose metadata
// is damaged makes List fail, rather than fall back to an older snapshot
// whose log behind it may be compacted.
func TestListRefusesUnreadableSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir, 2)
	entries := []entry{{"a", randomBytes(1, 100)}}
	localSnapshot(t, s, t.TempDir(), 1, 1, []byte("old"), entries)
	id := localSnapshot(t, s, t.TempDir(), 2, 1, []byte("new"), entries)
	writeFile(t, filepath.Join(dir, id, "meta.json"), []byte("{"))
	if _, err := s.List(); !errors.Is(err, snapstore.ErrCorrupt) {
		t.Fatalf("List = %v, want ErrCorrupt", err)
	}
}
