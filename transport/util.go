package transport

import (
	"io"
	"syscall"
)

var ioEOF = io.EOF

// umask sets the process's file mode mask and returns the old one. The
// socket is created under a 0177 mask so that it is never, even briefly,
// open to other users.
func umask(mask int) int { return syscall.Umask(mask) }
