package snapstore

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
)

// TestCopyFallback checks that a file that cannot be hard-linked (another
// file system) is copied, exactly its recorded size.
func TestCopyFallback(t *testing.T) {
	s, err := New(t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.link = func(oldname, newname string) error {
		return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: syscall.EXDEV}
	}
	src := filepath.Join(t.TempDir(), "seg")
	data := bytes.Repeat([]byte("0123456789"), 10_000)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sink, err := s.Create(1, 1, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := sink.(*Sink)
	if err := k.AddFile("p/seg", src, 54_321); err != nil {
		t.Fatalf("AddFile: %v", err)
	}
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	_, rc, err := s.Open(k.ID())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer rc.Close()
	f := rc.(*Reader).Files()[0]
	a, _ := os.Stat(src)
	b, err := os.Stat(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(a, b) {
		t.Fatal("file was linked although linking fails")
	}
	got, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[:54_321]) {
		t.Errorf("copy has %d bytes, want the first 54321 of the source", len(got))
	}
	manifest, files, err := ReadStream(rc, t.TempDir())
	if err != nil || len(manifest) != 0 || len(files) != 1 {
		t.Fatalf("ReadStream = %q, %v, %v", manifest, files, err)
	}
	if got, err := os.ReadFile(files[0].Path); err != nil || !bytes.Equal(got, data[:54_321]) {
		t.Errorf("streamed copy: %d bytes, %v; want the first 54321 of the source", len(got), err)
	}
}
