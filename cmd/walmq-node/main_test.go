package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/walmq/walmq/cmd/internal/proctest"
)

// race is set by race_test.go when the tests run with -race; the binary
// is then built with it too.
var race bool

// nodeBin is the walmq-node binary TestMain builds.
var nodeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "walmq-node-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := proctest.Build(dir, race, "github.com/walmq/walmq/cmd/walmq-node"); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	nodeBin = filepath.Join(dir, "walmq-node")
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
