package snapstore

import (
	"fmt"
	"io"
)

// WriteStream writes a snapshot in the stream format to w: the manifest,
// then the first Size bytes of each file. An FSM uses it when raft gives
// it a sink that is not a *Sink. It refuses, before writing anything, a
// manifest longer than MaxManifestBytes or a name that AddFile would
// refuse (ErrBadName), and fails with ErrCorrupt if a file is shorter than
// its Size.
func WriteStream(w io.Writer, manifest []byte, files []File) error {
	if len(manifest) > MaxManifestBytes {
		return fmt.Errorf("snapstore: write stream: manifest of %d bytes, more than %d", len(manifest), MaxManifestBytes)
	}
	names := newNameSet()
	for _, f := range files {
		if err := names.check(f.Name); err != nil {
			return fmt.Errorf("snapstore: write stream: %w", err)
		}
		if f.Size < 0 {
			return fmt.Errorf("snapstore: write stream: %s has size %d", f.Name, f.Size)
		}
		names.add(f.Name)
	}
	r := newReader(manifest, files, func() {})
	defer r.Close()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("snapstore: write stream: %w", err)
	}
	return nil
}
