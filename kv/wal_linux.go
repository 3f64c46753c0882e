package kv

import (
	"os"
	"syscall"
)

// preallocate reserves size bytes for f, extending it with zeros.
func preallocate(f *os.File, size int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EOPNOTSUPP {
			return f.Truncate(size)
		}
		return err
	}
}

// fdatasync flushes f's data, and only the metadata needed to read it.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
