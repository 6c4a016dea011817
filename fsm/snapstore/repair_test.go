package snapstore_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/walmq/walmq/fsm/snapstore"
)

// fileOf is the path of file name in snapshot id of the store in dir.
func fileOf(dir, id, name string) string {
	return filepath.Join(dir, id, "files", filepath.FromSlash(name))
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	fb, err := os.Stat(b)
	if err != nil {
		t.Fatal(err)
	}
	return os.SameFile(fa, fb)
}

// TestReplaceFile replaces a file linked into a complete snapshot, into
// one being built, and one added to a snapshot after the replacement:
// each ends up a link to the new file, and the snapshots read the same.
func TestReplaceFile(t *testing.T) {
	dir, src := t.TempDir(), t.TempDir()
	s := newStore(t, dir, 3)
	entries := []entry{{"t/0/a.seg", randomBytes(1, 5000)}, {"t/0/b.seg", randomBytes(2, 3000)}}
	done := localSnapshot(t, s, src, 5, 1, []byte("m1"), entries)
	oldPath := filepath.Join(src, "t", "0", "a.seg")

	// A snapshot being built has linked a.seg already; another will add
	// it only after the replacement.
	early := create(t, s, 6, 1)
	if err := early.AddFile("t/0/a.seg", oldPath, 5000); err != nil {
		t.Fatal(err)
	}
	late := create(t, s, 7, 1)

	newPath := filepath.Join(src, "t", "0", "a.seg.new")
	writeFile(t, newPath, entries[0].content)
	old, err := os.Open(oldPath)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.ReplaceFile(old, newPath)
	if err != nil || n != 2 {
		t.Fatalf("ReplaceFile = %d, %v; want the complete snapshot's and the early sink's files", n, err)
	}
	if err := late.AddFile("t/0/a.seg", oldPath, 5000); err != nil {
		t.Fatal(err)
	}
	for _, k := range []*snapstore.Sink{early, late} {
		if err := k.AddFile("t/0/b.seg", filepath.Join(src, "t", "0", "b.seg"), 3000); err != nil {
			t.Fatal(err)
		}
		if err := k.SetManifest([]byte("m1")); err != nil {
			t.Fatal(err)
		}
		if err := k.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{done, early.ID(), late.ID()} {
		if !sameFile(t, fileOf(dir, id, "t/0/a.seg"), newPath) {
			t.Errorf("snapshot %s still links the replaced file", id)
		}
		if sameFile(t, fileOf(dir, id, "t/0/a.seg"), oldPath) {
			t.Errorf("snapshot %s links the old file", id)
		}
		checkSnapshot(t, s, id, []byte("m1"), entries)
	}
	// b.seg, never replaced, is still the original.
	if !sameFile(t, fileOf(dir, done, "t/0/b.seg"), filepath.Join(src, "t", "0", "b.seg")) {
		t.Error("a file that was not replaced was")
	}
}

// TestFileCheckRefusesStream: a file that fails the store's check ends
// the stream with ErrCorrupt before its content is sent.
func TestFileCheckRefusesStream(t *testing.T) {
	dir, src := t.TempDir(), t.TempDir()
	s := newStore(t, dir, 2)
	bad := errors.New("damaged record")
	var checked []string
	s.SetFileCheck(func(name, path string, size int64) error {
		checked = append(checked, name)
		if name == "t/0/b.seg" {
			return bad
		}
		return nil
	})
	entries := []entry{{"t/0/a.seg", randomBytes(3, 100)}, {"t/0/b.seg", randomBytes(4, 100)}, {"t/0/c.seg", randomBytes(5, 100)}}
	id := localSnapshot(t, s, src, 5, 1, []byte("m"), entries)
	_, rc, err := s.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	if !errors.Is(err, snapstore.ErrCorrupt) || !errors.Is(err, bad) {
		t.Fatalf("stream: %v, want ErrCorrupt wrapping the check's error", err)
	}
	if len(checked) != 2 {
		t.Fatalf("checked %v, want a.seg and b.seg, then stop", checked)
	}
}
