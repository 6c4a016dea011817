package snapstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// replacedFile is a file taken out of the snapshots by ReplaceFile. The
// store keeps it open so that its inode cannot be reused by another file
// while the store compares files with it.
type replacedFile struct {
	old  *os.File
	info os.FileInfo
	path string // the file that replaced it
}

// SetFileCheck makes the store run check on every file of a snapshot
// before streaming its content (to a follower, or to Restore through the
// stream): a file that fails it ends the stream with ErrCorrupt wrapping
// check's error, and is logged at ERROR, so that a snapshot never ships a
// file known to be damaged. The stream's own checksums cannot tell: they
// are computed as the files are read. Call it before the store is used.
func (s *Store) SetFileCheck(check func(name, path string, size int64) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.check = check
}

// checkFile returns the check of the files of snapshot id, nil if none.
func (s *Store) checkFile(id string) func(File) error {
	check := s.check
	if check == nil {
		return nil
	}
	return func(f File) error {
		err := check(f.Name, f.Path, f.Size)
		if err != nil {
			s.logger.Error("snapshot file fails its check: not streaming it", "snapshot", id, "file", f.Name, "path", f.Path, "error", err)
		}
		return err
	}
}

// ReplaceFile puts the file at newPath in place of every file of every
// snapshot, complete or being built, that is the same file as old (a hard
// link to its inode): each is replaced by a hard link to newPath, through
// a temporary name and a rename, and its directory synced. A snapshot that
// is being built and adds old later gets newPath instead. It returns how
// many files it replaced.
//
// A journal segment repaired from a peer is written to a new file renamed
// over the old one; the snapshots that linked the old, damaged inode would
// go on holding it. newPath must hold what old held, or more (the
// snapshots' recorded sizes are kept). The store takes ownership of old
// and keeps it open, so that its inode number cannot be reused by a new
// file and mistaken for it.
func (s *Store) ReplaceFile(old *os.File, newPath string) (int, error) {
	info, err := old.Stat()
	if err != nil {
		old.Close()
		return 0, fmt.Errorf("snapstore: replace file: %w", err)
	}
	nfi, err := os.Stat(newPath)
	if err != nil {
		old.Close()
		return 0, fmt.Errorf("snapstore: replace file: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replaced = append(s.replaced, replacedFile{old: old, info: info, path: newPath})
	var (
		n    int
		errs []error
		dirs = map[string]bool{}
	)
	err = filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile (a sink completed or was cancelled)
			}
			return err
		}
		if !d.Type().IsRegular() || !strings.Contains(p, string(filepath.Separator)+filesDir+string(filepath.Separator)) {
			return nil
		}
		fi, err := os.Stat(p)
		if err != nil || !os.SameFile(fi, info) || os.SameFile(fi, nfi) {
			return nil
		}
		tmp := p + ".relink" + tmpSuffix
		os.Remove(tmp)
		if err := s.link(newPath, tmp); err != nil {
			errs = append(errs, fmt.Errorf("link %s: %w", p, err))
			return nil
		}
		if err := os.Rename(tmp, p); err != nil {
			os.Remove(tmp)
			errs = append(errs, fmt.Errorf("rename %s: %w", p, err))
			return nil
		}
		n++
		dirs[filepath.Dir(p)] = true
		s.logger.Warn("replaced a snapshot's link to a repaired file", "file", p, "by", newPath)
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	for d := range dirs {
		if err := syncPath(d); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return n, fmt.Errorf("snapstore: replace file: %w", errors.Join(errs...))
	}
	return n, nil
}

// replacementLocked returns the file that replaced src (described by fi)
// if ReplaceFile took it out, else src. s.mu must be held.
func (s *Store) replacementLocked(fi os.FileInfo, src string) string {
	for _, r := range s.replaced {
		if os.SameFile(fi, r.info) {
			s.logger.Warn("snapshot takes the repaired file instead of a replaced one", "src", src, "by", r.path)
			return r.path
		}
	}
	return src
}
