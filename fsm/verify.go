package fsm

import (
	"strings"

	"github.com/walmq/walmq/journal"
)

// CheckSnapshotFile checks a file of a snapshot before it is streamed to a
// follower (the snapshot store runs it, see snapstore.Store.SetFileCheck)
// or restored: a journal segment must hold, in its first size bytes, only
// whole records that pass every check of journal.VerifyFile. Other files
// are not checked. A damaged segment is a *journal.CorruptionError.
func CheckSnapshotFile(name, path string, size int64) error {
	if !strings.HasSuffix(name, ".seg") {
		return nil
	}
	return journal.VerifyFile(path, size)
}
