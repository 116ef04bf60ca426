// Package spool holds output until it is wanted: in memory, then in a temporary file.
package spool

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// Memory is how much of the output a spool holds in memory before it moves to a file.
const Memory = 8 << 20

// Spool holds what is written to it until it is wanted (the CLI's output, until the run is known
// to have succeeded; a report's entries, until its totals are known): the first Memory bytes in
// memory, all of it in a temporary file beyond, so that checking a manifest of any size takes
// the memory of a few resources, not of their results. The zero Spool is ready to use.
type Spool struct {
	buf     bytes.Buffer
	file    *os.File
	n       int64 // bytes written
	removed bool  // the file's name is gone already (Unix): nothing is left behind if killed
	noFile  bool  // no temporary file could be made (a read-only TMPDIR): memory it is
}

func (s *Spool) Write(p []byte) (int, error) {
	n, err := s.write(p)
	s.n += int64(n)
	return n, err
}

func (s *Spool) write(p []byte) (int, error) {
	if s.file == nil {
		if s.noFile || s.buf.Len()+len(p) <= Memory {
			return s.buf.Write(p)
		}
		f, err := os.CreateTemp("", "portcullis-spool-*")
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
func (s *Spool) WriteTo(w io.Writer) (int64, error) {
	if s.file == nil {
		n, err := w.Write(s.buf.Bytes())
		return int64(n), err
	}
	return io.Copy(w, io.NewSectionReader(s.file, 0, s.n))
}

// Len is how many bytes were written.
func (s *Spool) Len() int64 { return s.n }

// CopyRange writes bytes [from, to) of what was written to w.
func (s *Spool) CopyRange(w io.Writer, from, to int64) error {
	if from < 0 || to > s.n || from > to {
		return fmt.Errorf("spool: range [%d, %d) of %d bytes", from, to, s.n)
	}
	if s.file == nil {
		_, err := w.Write(s.buf.Bytes()[from:to])
		return err
	}
	_, err := io.Copy(w, io.NewSectionReader(s.file, from, to-from))
	return err
}

// Close drops what was written, and the file.
func (s *Spool) Close() error {
	s.buf.Reset()
	s.n = 0
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
