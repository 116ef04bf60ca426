package app

import (
	"bytes"
	"io"
	"os"
)

// spoolMemory is how much of the output a spool holds in memory before it moves to a file.
const spoolMemory = 8 << 20

// spool holds what a streaming report writes until the run is known to have succeeded (a run
// that fails prints its errors only, as a run that keeps its results does): the first
// spoolMemory bytes in memory, all of it in a temporary file beyond, so that checking a
// manifest of any size takes the memory of a few resources, not of their results.
type spool struct {
	buf     bytes.Buffer
	file    *os.File
	removed bool // the file's name is gone already (Unix): nothing is left behind if killed
	noFile  bool // no temporary file could be made (a read-only TMPDIR): memory it is
}

func (s *spool) Write(p []byte) (int, error) {
	if s.file == nil {
		if s.noFile || s.buf.Len()+len(p) <= spoolMemory {
			return s.buf.Write(p)
		}
		f, err := os.CreateTemp("", "kubectl-portcullis-*.out")
		if err != nil {
			s.noFile = true
			return s.buf.Write(p)
		}
		s.file, s.removed = f, os.Remove(f.Name()) == nil
		if _, err := s.buf.WriteTo(f); err != nil {
			return 0, err
		}
	}
	return s.file.Write(p)
}

// WriteTo writes everything written so far to w.
func (s *spool) WriteTo(w io.Writer) (int64, error) {
	if s.file == nil {
		return s.buf.WriteTo(w)
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return io.Copy(w, s.file)
}

// Close drops what was written, and the file.
func (s *spool) Close() error {
	s.buf.Reset()
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	if !s.removed {
		if rerr := os.Remove(s.file.Name()); err == nil {
			err = rerr
		}
	}
	s.file = nil
	return err
}
