// Package pprofenv serves Go's profiles (net/http/pprof) on the address in
// WALMQ_PPROF, when it is set, for performance work on walmq's commands.
// It is off by default and meant for a loopback address. Import it for
// its side effect.
package pprofenv

import (
	"net/http"
	_ "net/http/pprof" // the profiles served
	"os"
	"path/filepath"
)

func init() {
	addr := os.Getenv("WALMQ_PPROF")
	if addr == "" {
		return
	}
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			os.Stderr.WriteString(filepath.Base(os.Args[0]) + ": WALMQ_PPROF: " + err.Error() + "\n")
		}
	}()
}
