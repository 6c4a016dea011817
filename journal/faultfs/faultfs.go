// Package faultfs is a journal.FS that injects the failures of a real
// disk: torn writes, short writes, fsync errors and a full disk. Tests of
// the journal and of the layers above it use it to check that an I/O error
// is reported, that later writes are refused, and that nothing synced is
// lost.
package faultfs

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/walmq/walmq/journal"
)

// ErrInjected is the error of an injected fsync or write failure that is
// not a full disk.
var ErrInjected = errors.New("faultfs: injected I/O error")

// ErrNoSpace is the error of a full disk.
var ErrNoSpace error = syscall.ENOSPC

// FS wraps another journal.FS. Its zero value is not usable; call New.
type FS struct {
	inner journal.FS

	mu         sync.Mutex
	budget     int64 // bytes writes may still take; < 0: unlimited
	writeErr   error // error once the budget is spent
	short      bool  // fail once with a short write instead of for good
	syncErr    error
	writes     int64 // bytes written through the FS
	syncs      int
	failedSync int
}

// New returns an FS that passes everything to inner until told otherwise.
func New(inner journal.FS) *FS {
	if inner == nil {
		inner = journal.OSFS{}
	}
	return &FS{inner: inner, budget: -1}
}

// FailWritesAfter lets n more bytes be written; the write that crosses
// that point writes only the bytes up to it (a torn write) and fails with
// err, and so does every write after it until Reset. With ErrNoSpace it is
// a full disk.
func (f *FS) FailWritesAfter(n int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.budget, f.writeErr, f.short = n, err, false
}

// ShortWriteAfter is FailWritesAfter for one write only: the write that
// crosses n bytes writes part of its data and reports io.ErrShortWrite;
// later writes succeed.
func (f *FS) ShortWriteAfter(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.budget, f.writeErr, f.short = n, io.ErrShortWrite, true
}

// FailSyncs makes every file sync fail with err until Reset.
func (f *FS) FailSyncs(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.syncErr = err
}

// Reset removes every injected fault.
func (f *FS) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.budget, f.writeErr, f.short, f.syncErr = -1, nil, false, nil
}

// Stats reports the bytes written, the syncs that succeeded and the syncs
// that failed.
func (f *FS) Stats() (written int64, syncs, failedSyncs int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writes, f.syncs, f.failedSync
}

// MkdirAll implements journal.FS.
func (f *FS) MkdirAll(dir string, perm os.FileMode) error { return f.inner.MkdirAll(dir, perm) }

// ReadDir implements journal.FS.
func (f *FS) ReadDir(dir string) ([]string, error) { return f.inner.ReadDir(dir) }

// Remove implements journal.FS.
func (f *FS) Remove(name string) error { return f.inner.Remove(name) }

// Rename implements journal.FS.
func (f *FS) Rename(oldpath, newpath string) error { return f.inner.Rename(oldpath, newpath) }

// SyncDir implements journal.FS. It fails like a file sync.
func (f *FS) SyncDir(dir string) error {
	if err := f.syncFault(); err != nil {
		return err
	}
	return f.inner.SyncDir(dir)
}

// OpenFile implements journal.FS.
func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (journal.File, error) {
	file, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, fs: f}, nil
}

func (f *FS) syncFault() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.syncErr != nil {
		f.failedSync++
		return f.syncErr
	}
	f.syncs++
	return nil
}

// allow returns how many of n bytes a write may take and the error to
// report after taking them.
func (f *FS) allow(n int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.budget < 0 || int64(n) <= f.budget {
		if f.budget >= 0 {
			f.budget -= int64(n)
		}
		f.writes += int64(n)
		return n, nil
	}
	k, err := int(f.budget), f.writeErr
	f.writes += int64(k)
	if f.short {
		f.budget, f.writeErr, f.short = -1, nil, false
	} else {
		f.budget = 0
	}
	return k, err
}

type faultFile struct {
	journal.File
	fs *FS
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	k, ferr := f.fs.allow(len(p))
	n, err := f.File.WriteAt(p[:k], off)
	if err != nil {
		return n, err
	}
	return n, ferr
}

func (f *faultFile) Sync() error {
	if err := f.fs.syncFault(); err != nil {
		return err
	}
	return f.File.Sync()
}
