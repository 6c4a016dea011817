package snapstore_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/walmq/walmq/fsm/snapstore"
)

var smallEntries = []entry{
	{"t/o/0/00000000000000000000.seg", []byte("hello, segment")},
	{"t/o/0/00000000000000000000.idx", nil},
	{"g", []byte{1, 2, 3}},
}

// header returns the start of a stream: magic and an empty manifest.
func header() []byte {
	return binary.LittleEndian.AppendUint32([]byte("WMQSNAP1"), 0)
}

// reseal recomputes the final checksum of a stream, so that only the
// checksums of the files can find damage in it.
func reseal(b []byte) []byte {
	n := len(b) - 4
	return binary.LittleEndian.AppendUint32(b[:n:n], crc32.Checksum(b[:n], castagnoli))
}

// receive writes stream into a new sink of a new store and closes it. It
// checks that an error of Write is the one Close reports, and returns the
// store's directory and the error of Close.
func receive(t *testing.T, stream []byte) (string, error) {
	t.Helper()
	dir := t.TempDir()
	s := newStore(t, dir, 1)
	k := create(t, s, 1, 1)
	_, werr := k.Write(stream)
	cerr := k.Close()
	if werr != nil && !errors.Is(werr, snapstore.ErrCorrupt) {
		t.Errorf("Write = %v, want nil or ErrCorrupt", werr)
	}
	if cerr == nil && werr != nil {
		t.Errorf("Write failed (%v) but Close succeeded", werr)
	}
	return dir, cerr
}

// expectCorrupt checks that receiving stream fails with ErrCorrupt and
// leaves nothing listed or on disk.
func expectCorrupt(t *testing.T, stream []byte) {
	t.Helper()
	dir, err := receive(t, stream)
	if !errors.Is(err, snapstore.ErrCorrupt) {
		t.Fatalf("Close = %v, want ErrCorrupt", err)
	}
	if got := dirNames(t, dir); len(got) != 0 {
		t.Errorf("after a corrupt stream the store holds %v", got)
	}
}

// TestCorruptStream checks that a sink refuses each kind of damaged or
// malicious stream.
func TestCorruptStream(t *testing.T) {
	valid := encodeStream([]byte("manifest"), smallEntries)
	contentAt := bytes.Index(valid, []byte("hello"))
	flip := func(i int) []byte {
		b := bytes.Clone(valid)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		stream []byte
	}{
		{"empty", nil},
		{"bad_magic", append([]byte("WMQSNAP2"), valid[8:]...)},
		{"flipped_content_byte", flip(contentAt + 3)},
		{"flipped_file_checksum", flip(contentAt + len("hello, segment"))},
		{"flipped_stream_checksum", flip(len(valid) - 1)},
		{"flipped_content_byte_resealed", reseal(flip(contentAt + 3))},
		{"flipped_file_checksum_resealed", reseal(flip(contentAt + len("hello, segment")))},
		{"flipped_manifest_byte", flip(12)},
		{"trailing_data", append(bytes.Clone(valid), 0)},
		{"no_end_marker", valid[:len(valid)-6]},
		{"name_dotdot", encodeStream(nil, []entry{{"../escape", []byte("x")}})},
		{"name_dotdot_inside", encodeStream(nil, []entry{{"a/../../escape", []byte("x")}})},
		{"name_absolute", encodeStream(nil, []entry{{"/tmp/escape", []byte("x")}})},
		{"name_empty", encodeStream(nil, []entry{{"", []byte("x")}})},
		{"name_empty_element", encodeStream(nil, []entry{{"a//b", []byte("x")}})},
		{"name_dot", encodeStream(nil, []entry{{"a/./b", []byte("x")}})},
		{"name_twice", encodeStream(nil, []entry{{"a", []byte("x")}, {"a", []byte("y")}})},
		{"file_as_directory", encodeStream(nil, []entry{{"a", []byte("x")}, {"a/b", []byte("y")}})},
		{"directory_as_file", encodeStream(nil, []entry{{"a/b", []byte("x")}, {"a", []byte("y")}})},
		{"name_too_long", encodeStream(nil, []entry{{strings.Repeat("a", snapstore.MaxNameBytes+1), nil}})},
		{"manifest_too_long", binary.LittleEndian.AppendUint32([]byte("WMQSNAP1"), snapstore.MaxManifestBytes+1)},
		{"manifest_longer_than_stream", binary.LittleEndian.AppendUint32([]byte("WMQSNAP1"), 1000)},
		{"size_beyond_int64", binary.LittleEndian.AppendUint64(append(binary.LittleEndian.AppendUint16(header(), 1), 'a'), 1<<63)},
		{"size_beyond_stream", binary.LittleEndian.AppendUint64(append(binary.LittleEndian.AppendUint16(header(), 1), 'a'), 1<<40)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { expectCorrupt(t, tt.stream) })
	}
}

// TestTruncatedStream cuts a valid stream at every position.
func TestTruncatedStream(t *testing.T) {
	valid := encodeStream([]byte("manifest"), smallEntries)
	if _, err := receive(t, valid); err != nil {
		t.Fatalf("the whole stream is refused: %v", err)
	}
	for n := range len(valid) {
		expectCorrupt(t, valid[:n])
		if t.Failed() {
			t.Fatalf("stream cut to %d of %d bytes", n, len(valid))
		}
	}
}

// TestFlippedByte damages each byte of a valid stream in turn.
func TestFlippedByte(t *testing.T) {
	valid := encodeStream([]byte("manifest"), smallEntries)
	for i := range len(valid) {
		b := bytes.Clone(valid)
		b[i] ^= 0x80
		expectCorrupt(t, b)
		if t.Failed() {
			t.Fatalf("byte %d of %d flipped", i, len(valid))
		}
	}
}

// FuzzReadStream checks that the decoder never panics, never writes outside
// its directory, and accepts only streams that re-encode to themselves.
func FuzzReadStream(f *testing.F) {
	f.Add(encodeStream([]byte("manifest"), smallEntries))
	f.Add(encodeStream(nil, nil))
	f.Add(encodeStream(nil, []entry{{"../x", []byte("y")}}))
	f.Add(encodeStream(nil, []entry{{"a", []byte("x")}, {"a/b", nil}}))
	f.Add(header())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dst := filepath.Join(root, "dst")
		manifest, files, err := snapstore.ReadStream(bytes.NewReader(data), dst)

		err2 := filepath.WalkDir(root, func(p string, d fs.DirEntry, werr error) error {
			if werr != nil {
				return werr
			}
			if p != root && p != dst && !strings.HasPrefix(p, filepath.Join(dst, "files")+string(filepath.Separator)) &&
				p != filepath.Join(dst, "files") {
				t.Errorf("ReadStream wrote %s, outside %s", p, filepath.Join(dst, "files"))
			}
			if d.Type()&fs.ModeSymlink != 0 {
				t.Errorf("ReadStream made a symlink %s", p)
			}
			return nil
		})
		if err2 != nil {
			t.Fatal(err2)
		}
		if err != nil {
			return
		}
		entries := make([]entry, len(files))
		for i, fl := range files {
			content, err := os.ReadFile(fl.Path)
			if err != nil {
				t.Fatalf("file %q: %v", fl.Name, err)
			}
			if int64(len(content)) != fl.Size {
				t.Fatalf("file %q has %d bytes, want %d", fl.Name, len(content), fl.Size)
			}
			entries[i] = entry{fl.Name, content}
		}
		if again := encodeStream(manifest, entries); !bytes.Equal(again, data) {
			t.Fatalf("accepted stream does not re-encode to itself")
		}
	})
}

// TestWriteStream checks the stream an FSM writes into a sink that is not a
// *Sink, and what it refuses.
func TestWriteStream(t *testing.T) {
	dir := t.TempDir()
	var files []snapstore.File
	for _, e := range smallEntries {
		p := filepath.Join(dir, filepath.FromSlash(e.name))
		writeFile(t, p, append(bytes.Clone(e.content), "beyond the size"...))
		files = append(files, snapstore.File{Name: e.name, Path: p, Size: int64(len(e.content))})
	}
	var buf bytes.Buffer
	if err := snapstore.WriteStream(&buf, []byte("manifest"), files); err != nil {
		t.Fatalf("WriteStream: %v", err)
	}
	if want := encodeStream([]byte("manifest"), smallEntries); !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("WriteStream wrote %d bytes that differ from the %d of the documented format", buf.Len(), len(want))
	}

	tests := []struct {
		name     string
		manifest []byte
		files    []snapstore.File
		want     error // nil: any error
	}{
		{"bad_name", nil, []snapstore.File{{Name: "../x", Path: files[0].Path}}, snapstore.ErrBadName},
		{"name_twice", nil, []snapstore.File{files[0], files[0]}, snapstore.ErrBadName},
		{"negative_size", nil, []snapstore.File{{Name: "x", Path: files[0].Path, Size: -1}}, nil},
		{"manifest_too_long", make([]byte, snapstore.MaxManifestBytes+1), nil, nil},
		{"file_shorter_than_size", nil, []snapstore.File{{Name: "x", Path: files[0].Path, Size: 1 << 20}}, snapstore.ErrCorrupt},
		{"file_missing", nil, []snapstore.File{{Name: "x", Path: filepath.Join(dir, "missing"), Size: 1}}, fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := snapstore.WriteStream(io.Discard, tt.manifest, tt.files)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("WriteStream = %v, want %v", err, tt.want)
			}
		})
	}
}
