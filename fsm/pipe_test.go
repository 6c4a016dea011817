package fsm_test

import "io"

func newPipe() (*io.PipeReader, *io.PipeWriter) { return io.Pipe() }

func copyAll(w io.Writer, r io.Reader) error {
	_, err := io.Copy(w, r)
	return err
}
