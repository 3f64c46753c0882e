//go:build !linux

package kv

import "os"

// preallocate extends f to size bytes of zeros.
func preallocate(f *os.File, size int64) error { return f.Truncate(size) }

// fdatasync flushes f.
func fdatasync(f *os.File) error { return f.Sync() }
