package fsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/walmq/walmq/journal"
)

// dlqHeadroom is what a dead-lettered message may take beyond the
// message limit: the walmq-dlq-* headers (names are at most 200 bytes).
const dlqHeadroom = 4096

// incarnationFile, in a topic's directory, holds the Raft index of the
// CreateTopic that made it. A restart from a snapshot tells by it whether
// the directory on disk is the snapshot's topic or a later one of the same
// name.
const incarnationFile = "CREATED"

// trashPrefix names topic directories being deleted. Topic names cannot
// start with '.', so they never collide with a topic.
const trashPrefix = ".trash-"

func writeIncarnation(dir string, created uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	p := filepath.Join(dir, incarnationFile)
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.FormatUint(created, 10)), 0o644); err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	return journal.OSFS{}.SyncDir(dir)
}

// readIncarnation returns the index in a topic directory's marker; ok is
// false when the directory or its marker does not exist.
func readIncarnation(dir string) (created uint64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, incarnationFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("fsm: %w", err)
	}
	created, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("fsm: topic marker %s: %w", dir, err)
	}
	return created, true, nil
}

// trashTopicDir deletes a topic's directory: first renamed out of the way
// (atomic, and synced), then removed. A crash in between leaves only
// trash, which New removes.
func (f *FSM) trashTopicDir(name string) error {
	dir := f.topicDir(name)
	trash := filepath.Join(f.opts.Dir, trashPrefix+name)
	if err := os.RemoveAll(trash); err != nil {
		return err
	}
	if err := os.Rename(dir, trash); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := (journal.OSFS{}).SyncDir(f.opts.Dir); err != nil {
		return err
	}
	return os.RemoveAll(trash)
}

func removeTrash(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), trashPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("fsm: remove %s: %w", e.Name(), err)
			}
		}
	}
	return nil
}
