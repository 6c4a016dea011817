package main

// WALMQ_PPROF=host:port serves Go's profiles there (see pprofenv).
import _ "github.com/walmq/walmq/cmd/internal/pprofenv"
