package snapstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Limits of the stream format, checked before anything is allocated.
const (
	// MaxManifestBytes bounds the length of a snapshot's manifest.
	MaxManifestBytes = 64 << 20
	// MaxNameBytes bounds the length of a file's name.
	MaxNameBytes = 4096
)

const (
	magic     = "WMQSNAP1"
	endMarker = 0xFFFF
	filesDir  = "files"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// validateName reports whether name may be used as a snapshot file name: a
// relative slash path of at most MaxNameBytes bytes whose elements are not
// empty, "." or "..". Backslashes and NUL bytes are refused too, so a name
// means the same file on every platform.
func validateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrBadName)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrBadName, len(name), MaxNameBytes)
	case strings.ContainsAny(name, "\\\x00"):
		return fmt.Errorf("%w: %q contains a backslash or NUL", ErrBadName, name)
	case strings.HasPrefix(name, "/"):
		return fmt.Errorf("%w: %q is absolute", ErrBadName, name)
	}
	for elem := range strings.SplitSeq(name, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return fmt.Errorf("%w: %q has an element %q", ErrBadName, name, elem)
		}
	}
	return nil
}

// nameSet holds the names of a snapshot's files and refuses a name that is
// already taken, or that would make one file the directory of another.
type nameSet struct {
	files map[string]bool
	dirs  map[string]bool
}

func newNameSet() *nameSet {
	return &nameSet{files: map[string]bool{}, dirs: map[string]bool{}}
}

// check reports whether name is valid and free.
func (s *nameSet) check(name string) error {
	if err := validateName(name); err != nil {
		return err
	}
	if s.files[name] || s.dirs[name] {
		return fmt.Errorf("%w: %q is already used", ErrBadName, name)
	}
	for i := range len(name) {
		if name[i] == '/' && s.files[name[:i]] {
			return fmt.Errorf("%w: %q is inside file %q", ErrBadName, name, name[:i])
		}
	}
	return nil
}

// add records name, which check accepted.
func (s *nameSet) add(name string) {
	for i := range len(name) {
		if name[i] == '/' {
			s.dirs[name[:i]] = true
		}
	}
	s.files[name] = true
}

// streamSize is the length of the stream of a snapshot with this manifest
// and these files.
func streamSize(manifestLen int, files []File) int64 {
	n := int64(len(magic)) + 4 + int64(manifestLen)
	for _, f := range files {
		n += 2 + int64(len(f.Name)) + 8 + f.Size + 4
	}
	return n + 2 + 4
}

// hashReader hashes and counts every byte read through it.
type hashReader struct {
	r   io.Reader
	h   hash.Hash32
	off int64
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.off += int64(n)
	return n, err
}

// ReadStream decodes a snapshot stream (see the package documentation for
// the format) from r. It writes each file to dstDir/files/<name>, creating
// directories as needed and never replacing an existing file, and returns
// the manifest and the files in stream order, with absolute paths.
//
// The stream must end right after its end marker: ReadStream reads r to
// io.EOF. File contents are copied to disk as they arrive, and every length
// is checked before anything is allocated. A stream that is damaged,
// truncated, or names a file outside dstDir/files yields an error wrapping
// ErrCorrupt; errors of r and of the file system are returned wrapped as
// they are. On error, files already written are left in dstDir for the
// caller to remove. ReadStream does not sync what it writes.
func ReadStream(r io.Reader, dstDir string) (manifest []byte, files []File, err error) {
	root, err := filepath.Abs(filepath.Join(dstDir, filesDir))
	if err != nil {
		return nil, nil, fmt.Errorf("snapstore: read stream: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, nil, fmt.Errorf("snapstore: read stream: %w", err)
	}
	d := &decoder{
		hr:  &hashReader{r: bufio.NewReaderSize(r, 64<<10), h: crc32.New(castagnoli)},
		dst: root,
	}
	manifest, files, err = d.decode()
	if err != nil {
		return nil, nil, fmt.Errorf("snapstore: read stream at byte %d: %w", d.hr.off, err)
	}
	return manifest, files, nil
}

// decoder is the state of ReadStream.
type decoder struct {
	hr    *hashReader
	dst   string
	names *nameSet
	buf   [8]byte
}

// corrupt turns the end of the stream into ErrCorrupt and leaves other
// errors as they are.
func corrupt(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated in %s", ErrCorrupt, what)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (d *decoder) read(n int, what string) ([]byte, error) {
	if _, err := io.ReadFull(d.hr, d.buf[:n]); err != nil {
		return nil, corrupt(err, what)
	}
	return d.buf[:n], nil
}

func (d *decoder) decode() ([]byte, []File, error) {
	d.names = newNameSet()
	b, err := d.read(len(magic), "magic")
	if err != nil {
		return nil, nil, err
	}
	if string(b) != magic {
		return nil, nil, fmt.Errorf("%w: bad magic %q", ErrCorrupt, b)
	}
	if b, err = d.read(4, "manifest length"); err != nil {
		return nil, nil, err
	}
	mlen := binary.LittleEndian.Uint32(b)
	if mlen > MaxManifestBytes {
		return nil, nil, fmt.Errorf("%w: manifest of %d bytes, more than %d", ErrCorrupt, mlen, MaxManifestBytes)
	}
	// Grow the manifest with the bytes that actually arrive rather than
	// trusting the length with an allocation.
	var mbuf bytes.Buffer
	if _, err := io.CopyN(&mbuf, d.hr, int64(mlen)); err != nil {
		return nil, nil, corrupt(err, "manifest")
	}
	manifest := mbuf.Bytes()
	if manifest == nil {
		manifest = []byte{}
	}

	var files []File
	for {
		if b, err = d.read(2, "file name length"); err != nil {
			return nil, nil, err
		}
		nlen := binary.LittleEndian.Uint16(b)
		if nlen == endMarker {
			break
		}
		f, err := d.file(int(nlen))
		if err != nil {
			return nil, nil, err
		}
		files = append(files, f)
	}

	want := d.hr.h.Sum32()
	if b, err = d.read(4, "stream checksum"); err != nil {
		return nil, nil, err
	}
	if got := binary.LittleEndian.Uint32(b); got != want {
		return nil, nil, fmt.Errorf("%w: stream checksum %08x, computed %08x", ErrCorrupt, got, want)
	}
	switch _, err := io.ReadFull(d.hr, d.buf[:1]); {
	case err == nil:
		return nil, nil, fmt.Errorf("%w: data after the end marker", ErrCorrupt)
	case err != io.EOF:
		return nil, nil, fmt.Errorf("after the end marker: %w", err)
	}
	return manifest, files, nil
}

// file decodes one file entry whose name is nlen bytes long, and writes its
// content to disk.
func (d *decoder) file(nlen int) (File, error) {
	if nlen > MaxNameBytes {
		return File{}, fmt.Errorf("%w: file name of %d bytes, more than %d", ErrCorrupt, nlen, MaxNameBytes)
	}
	nb := make([]byte, nlen)
	if _, err := io.ReadFull(d.hr, nb); err != nil {
		return File{}, corrupt(err, "file name")
	}
	name := string(nb)
	if err := d.names.check(name); err != nil {
		return File{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	d.names.add(name)
	b, err := d.read(8, "file size")
	if err != nil {
		return File{}, err
	}
	size := binary.LittleEndian.Uint64(b)
	if size > math.MaxInt64 {
		return File{}, fmt.Errorf("%w: file %q of %d bytes", ErrCorrupt, name, size)
	}
	f := File{Name: name, Path: filepath.Join(d.dst, filepath.FromSlash(name)), Size: int64(size)}

	if err := os.MkdirAll(filepath.Dir(f.Path), 0o755); err != nil {
		return File{}, err
	}
	out, err := os.OpenFile(f.Path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return File{}, err
	}
	crc := crc32.New(castagnoli)
	_, err = io.CopyN(io.MultiWriter(out, crc), d.hr, f.Size)
	if cerr := out.Close(); err == nil && cerr != nil {
		return File{}, cerr
	}
	if err != nil {
		return File{}, corrupt(err, fmt.Sprintf("content of %q", name))
	}
	want := crc.Sum32()
	if b, err = d.read(4, fmt.Sprintf("checksum of %q", name)); err != nil {
		return File{}, err
	}
	if got := binary.LittleEndian.Uint32(b); got != want {
		return File{}, fmt.Errorf("%w: checksum of %q is %08x, computed %08x", ErrCorrupt, name, got, want)
	}
	return f, nil
}
