package snapstore

import (
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"sync"

	"github.com/hashicorp/raft"
)

// File is one file of a snapshot.
type File struct {
	// Name is the file's name in the snapshot, a relative slash path.
	Name string
	// Path is the absolute path of the file on disk. The file may be longer
	// than Size (a journal's tail segment keeps growing after it was
	// linked); only its first Size bytes belong to the snapshot.
	Path string
	// Size is the number of bytes of the file that belong to the snapshot.
	Size int64
}

// Reader is a snapshot opened by Store.Open. It is an io.ReadCloser that
// produces the snapshot's stream, which is what raft sends to a follower
// and hands to FSM.Restore, and it also gives direct access to the
// manifest and the files, so that a local restore need not decode the
// stream.
//
// While a Reader is open its snapshot is not deleted by retention. A Reader
// is not safe for concurrent use.
type Reader struct {
	manifest []byte
	files    []File
	release  func()
	check    func(File) error // run on each file before its content is read, if set

	parts   [][]byte // stream bytes ready to be returned, in order
	next    int      // index in files of the next file to start
	file    *os.File // file whose content is being read, or nil
	cur     File
	left    int64 // bytes of cur still to read
	fileCRC hash.Hash32
	total   hash.Hash32 // CRC of every byte generated so far
	ended   bool        // the end marker has been generated
	err     error
	closed  bool
	once    sync.Once
}

func newReader(manifest []byte, files []File, release func()) *Reader {
	r := &Reader{
		manifest: manifest,
		files:    files,
		release:  release,
		fileCRC:  crc32.New(castagnoli),
		total:    crc32.New(castagnoli),
	}
	head := make([]byte, 0, len(magic)+4)
	head = append(head, magic...)
	head = binary.LittleEndian.AppendUint32(head, uint32(len(manifest)))
	r.emit(head)
	r.emit(manifest)
	return r
}

// AsReader returns the *Reader behind r: r itself, or the reader that raft
// wrapped (raft passes FSM.Restore a counting wrapper implementing
// raft.ReadCloserWrapper around the reader returned by Open). It reports
// false if r is not, and does not wrap, a *Reader.
func AsReader(r io.Reader) (*Reader, bool) {
	for {
		switch v := r.(type) {
		case *Reader:
			return v, true
		case raft.ReadCloserWrapper:
			r = v.WrappedReadCloser()
		default:
			return nil, false
		}
	}
}

// Manifest returns the manifest of the snapshot. The caller must not
// modify it.
func (r *Reader) Manifest() []byte { return r.manifest }

// Files returns the files of the snapshot in the order they were added.
// The caller must not modify the slice.
func (r *Reader) Files() []File { return r.files }

// emit queues b as the next bytes of the stream.
func (r *Reader) emit(b []byte) {
	r.total.Write(b)
	r.parts = append(r.parts, b)
}

// Read reads the snapshot's stream. A file of the snapshot that has become
// shorter than its recorded size makes Read fail with ErrCorrupt.
func (r *Reader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, fmt.Errorf("snapstore: read: %w", ErrClosed)
	}
	for r.err == nil {
		switch {
		case len(r.parts) > 0:
			n := copy(p, r.parts[0])
			if r.parts[0] = r.parts[0][n:]; len(r.parts[0]) == 0 {
				r.parts = r.parts[1:]
			}
			return n, nil
		case r.file != nil:
			if len(p) == 0 {
				return 0, nil
			}
			if n := r.readContent(p); n > 0 {
				return n, nil
			}
		case r.next < len(r.files):
			r.startFile()
		case !r.ended:
			r.ended = true
			r.emit(binary.LittleEndian.AppendUint16(nil, endMarker))
			r.emit(binary.LittleEndian.AppendUint32(nil, r.total.Sum32()))
		default:
			return 0, io.EOF
		}
	}
	return 0, r.err
}

// startFile queues the header of the next file and opens it.
func (r *Reader) startFile() {
	r.cur = r.files[r.next]
	r.next++
	h := make([]byte, 0, 2+len(r.cur.Name)+8)
	h = binary.LittleEndian.AppendUint16(h, uint16(len(r.cur.Name)))
	h = append(h, r.cur.Name...)
	h = binary.LittleEndian.AppendUint64(h, uint64(r.cur.Size))
	r.emit(h)
	r.fileCRC.Reset()
	r.left = r.cur.Size
	if r.left == 0 {
		r.endFile()
		return
	}
	if r.check != nil {
		if err := r.check(r.cur); err != nil {
			r.err = fmt.Errorf("snapstore: read: %w: %s fails its check: %w", ErrCorrupt, r.cur.Name, err)
			return
		}
	}
	f, err := os.Open(r.cur.Path)
	if err != nil {
		r.err = fmt.Errorf("snapstore: read: %w", err)
		return
	}
	r.file = f
}

// readContent reads the current file's content into p.
func (r *Reader) readContent(p []byte) int {
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.file.Read(p)
	r.fileCRC.Write(p[:n])
	r.total.Write(p[:n])
	r.left -= int64(n)
	switch {
	case r.left == 0:
		r.closeFile()
		r.endFile()
	case err == io.EOF:
		r.err = fmt.Errorf("snapstore: read: %w: %s is shorter than its recorded %d bytes", ErrCorrupt, r.cur.Path, r.cur.Size)
	case err != nil:
		r.err = fmt.Errorf("snapstore: read: %w", err)
	}
	return n
}

// endFile queues the checksum of the current file.
func (r *Reader) endFile() {
	r.emit(binary.LittleEndian.AppendUint32(nil, r.fileCRC.Sum32()))
}

func (r *Reader) closeFile() {
	if r.file != nil {
		r.file.Close()
		r.file = nil
	}
}

// Close closes the reader and lets retention delete the snapshot again.
func (r *Reader) Close() error {
	r.closed = true
	r.closeFile()
	r.once.Do(r.release)
	return nil
}
