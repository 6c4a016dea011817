package main

import (
	"net/http"
	_ "net/http/pprof" // the profiles WALMQ_PPROF serves
	"os"
)

// WALMQ_PPROF=host:port serves Go's profiles (net/http/pprof) there, for
// performance work. It is off by default and meant for a loopback address.
func init() {
	addr := os.Getenv("WALMQ_PPROF")
	if addr == "" {
		return
	}
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			os.Stderr.WriteString("walmq: WALMQ_PPROF: " + err.Error() + "\n")
		}
	}()
}
