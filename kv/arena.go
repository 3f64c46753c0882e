package kv

// arena hands out byte slices carved from large chunks, so that copying many
// small keys and values costs a few allocations instead of one each. A
// slice it returns is never handed out again unless reset is called, and
// its capacity is its length, so appending to it cannot overwrite a
// neighbour. The zero value is ready to use with chunks of defaultChunk,
// holding only the chunk being carved.
type arena struct {
	chunks [][]byte
	i      int  // chunk being carved
	off    int  // offset in chunks[i]
	size   int  // largest chunk size; 0 means defaultChunk
	next   int  // size of the next chunk; chunks start small and double
	reuse  bool // keep every chunk for reset
}

const (
	defaultChunk = 64 << 10
	firstChunk   = 512
)

// alloc returns n bytes. Requests over a quarter of the largest chunk get
// their own allocation, so one large value does not waste a chunk.
func (a *arena) alloc(n int) []byte {
	size := a.size
	if size == 0 {
		size = defaultChunk
	}
	if n > size/4 {
		return make([]byte, n)
	}
	for {
		if a.i < len(a.chunks) {
			c := a.chunks[a.i]
			if a.off+n <= len(c) {
				b := c[a.off : a.off+n : a.off+n]
				a.off += n
				return b
			}
			a.i++
			a.off = 0
			continue
		}
		if !a.reuse {
			// Drop the full chunk: the slices carved from it keep it alive
			// as long as they are referenced, and no longer.
			a.chunks = a.chunks[:0]
			a.i = 0
		}
		// Small first chunks keep small reads cheap; doubling keeps large
		// ones to a few allocations.
		c := max(a.next, firstChunk, n)
		a.next = min(2*c, size)
		a.chunks = append(a.chunks, make([]byte, c))
	}
}

// copy returns a copy of b in the arena. A nil b gives nil.
func (a *arena) copy(b []byte) []byte {
	if b == nil {
		return nil
	}
	d := a.alloc(len(b))
	copy(d, b)
	return d
}

// grow returns a zero-length slice with room for n bytes, to append at
// most n bytes to; finish then gives back what was not used.
func (a *arena) grow(n int) []byte {
	return a.alloc(n)[:0]
}

// finish ends the use of a slice from grow(n): it returns b with its
// capacity cut to its length and, when b is still the arena's last
// allocation, returns the unused bytes to the arena.
func (a *arena) finish(b []byte, n int) []byte {
	size := a.size
	if size == 0 {
		size = defaultChunk
	}
	if len(b) <= n && n <= size/4 && a.i < len(a.chunks) && a.off >= n {
		a.off -= n - len(b)
	}
	return b[:len(b):len(b)]
}

// reset makes every chunk available again. Only for arenas with reuse set
// whose slices are no longer referenced.
func (a *arena) reset() {
	a.i = 0
	a.off = 0
}

// slab hands out values of T from chunks, so that pointers to many small
// values cost a few allocations. Chunks are never reallocated, so a pointer
// stays valid and unaliased.
type slab[T any] struct {
	buf []T
}

// take returns n contiguous zero values.
func (s *slab[T]) take(n int) []T {
	if n == 0 {
		return nil
	}
	if len(s.buf)+n > cap(s.buf) {
		c := 2 * cap(s.buf)
		if c < 16 {
			c = 16
		}
		if c > 1024 {
			c = 1024
		}
		if c < n {
			c = n
		}
		s.buf = make([]T, 0, c)
	}
	start := len(s.buf)
	s.buf = s.buf[:start+n]
	return s.buf[start : start+n : start+n]
}

// one returns a pointer to one zero value.
func (s *slab[T]) one() *T { return &s.take(1)[0] }
