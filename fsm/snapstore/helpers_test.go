package snapstore_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/walmq/walmq/fsm/snapstore"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// entry is a file of a test stream.
type entry struct {
	name    string
	content []byte
}

// encodeStream encodes a stream from the format as documented, independently
// of the package's Reader.
func encodeStream(manifest []byte, entries []entry) []byte {
	var b []byte
	b = append(b, "WMQSNAP1"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(manifest)))
	b = append(b, manifest...)
	for _, e := range entries {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(e.name)))
		b = append(b, e.name...)
		b = binary.LittleEndian.AppendUint64(b, uint64(len(e.content)))
		b = append(b, e.content...)
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(e.content, castagnoli))
	}
	b = binary.LittleEndian.AppendUint16(b, 0xFFFF)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

var testConfig = raft.Configuration{Servers: []raft.Server{
	{Suffrage: raft.Voter, ID: "n1", Address: "10.0.0.1:7000"},
	{Suffrage: raft.Voter, ID: "n2", Address: "10.0.0.2:7000"},
}}

func newStore(t testing.TB, dir string, retain int) *snapstore.Store {
	t.Helper()
	s, err := snapstore.New(dir, retain, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func create(t testing.TB, s *snapstore.Store, index, term uint64) *snapstore.Sink {
	t.Helper()
	sink, err := s.Create(1, index, term, testConfig, 3, nil)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	return sink.(*snapstore.Sink)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func appendFile(t testing.TB, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// localSnapshot takes a snapshot of entries in s through AddFile, from
// source files under srcDir, and returns its id.
func localSnapshot(t testing.TB, s *snapstore.Store, srcDir string, index, term uint64, manifest []byte, entries []entry) string {
	t.Helper()
	sink := create(t, s, index, term)
	for _, e := range entries {
		src := filepath.Join(srcDir, filepath.FromSlash(e.name))
		writeFile(t, src, e.content)
		if err := sink.AddFile(e.name, src, int64(len(e.content))); err != nil {
			t.Fatalf("AddFile(%q): %v", e.name, err)
		}
	}
	if err := sink.SetManifest(manifest); err != nil {
		t.Fatalf("SetManifest: %v", err)
	}
	if err := sink.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return sink.ID()
}

// openStream opens snapshot id and returns its meta and whole stream.
func openStream(t testing.TB, s *snapstore.Store, id string) (*raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, rc, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open(%s): %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading stream of %s: %v", id, err)
	}
	return meta, b
}

// checkSnapshot checks that snapshot id of s holds exactly manifest and
// entries, through Reader's accessors and through its stream.
func checkSnapshot(t testing.TB, s *snapstore.Store, id string, manifest []byte, entries []entry) {
	t.Helper()
	meta, rc, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open(%s): %v", id, err)
	}
	defer rc.Close()
	r, ok := rc.(*snapstore.Reader)
	if !ok {
		t.Fatalf("Open returned a %T, want *snapstore.Reader", rc)
	}
	if !bytes.Equal(r.Manifest(), manifest) {
		t.Errorf("Manifest() = %q, want %q", r.Manifest(), manifest)
	}
	checkFiles(t, r.Files(), entries)

	stream, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading stream: %v", err)
	}
	if want := encodeStream(manifest, entries); !bytes.Equal(stream, want) {
		t.Errorf("stream of %d bytes differs from the %d bytes encoded from the documented format", len(stream), len(want))
	}
	if meta.Size != int64(len(stream)) {
		t.Errorf("meta.Size = %d, stream has %d bytes", meta.Size, len(stream))
	}
	gotManifest, files, err := snapstore.ReadStream(bytes.NewReader(stream), t.TempDir())
	if err != nil {
		t.Fatalf("ReadStream: %v", err)
	}
	if !bytes.Equal(gotManifest, manifest) {
		t.Errorf("decoded manifest = %q, want %q", gotManifest, manifest)
	}
	checkFiles(t, files, entries)
}

// checkFiles checks that files are entries, in order: names, sizes, and the
// first Size bytes of each file on disk.
func checkFiles(t testing.TB, files []snapstore.File, entries []entry) {
	t.Helper()
	if len(files) != len(entries) {
		t.Fatalf("%d files, want %d", len(files), len(entries))
	}
	for i, f := range files {
		e := entries[i]
		if f.Name != e.name || f.Size != int64(len(e.content)) {
			t.Errorf("file %d is %q of %d bytes, want %q of %d", i, f.Name, f.Size, e.name, len(e.content))
			continue
		}
		if !filepath.IsAbs(f.Path) {
			t.Errorf("file %q: path %q is not absolute", f.Name, f.Path)
		}
		data, err := os.ReadFile(f.Path)
		if err != nil {
			t.Errorf("file %q: %v", f.Name, err)
			continue
		}
		if int64(len(data)) < f.Size || !bytes.Equal(data[:f.Size], e.content) {
			t.Errorf("file %q: content on disk differs", f.Name)
		}
	}
}

// dirNames returns the names in dir.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
