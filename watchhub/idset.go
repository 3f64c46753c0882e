package watchhub

// idSet is a set of watcher numbers (or other int32 values) addressed by
// position, with O(1) removal by swapping the last value in. The first
// value is held inline, so a set of one, the usual case for a key or an
// interval, allocates nothing and holds no pointer; the others are in rest.
// The zero value is an empty set.
type idSet struct {
	first int32
	n     int32
	// rest holds the values at positions 1 to n-1.
	rest []int32
}

// len reports the number of values.
func (s *idSet) len() int { return int(s.n) }

// at returns the value at position pos < len.
func (s *idSet) at(pos int32) int32 {
	if pos == 0 {
		return s.first
	}
	return s.rest[pos-1]
}

func (s *idSet) put(pos, v int32) {
	if pos == 0 {
		s.first = v
	} else {
		s.rest[pos-1] = v
	}
}

// add appends v and returns its position.
func (s *idSet) add(v int32) int32 {
	if s.n == 0 {
		s.first = v
	} else {
		s.rest = append(s.rest, v)
	}
	s.n++
	return s.n - 1
}

// removeAt removes the value at pos by moving the last value there, and
// returns the value now at pos (the removed one if it was the last).
func (s *idSet) removeAt(pos int32) int32 {
	last := s.n - 1
	moved := s.at(last)
	s.put(pos, moved)
	if last > 0 {
		s.rest = s.rest[:last-1]
	}
	if last <= 1 {
		// Drop an emptied rest's array.
		s.rest = nil
	}
	s.n--
	return moved
}

// appendTo appends the values to dst in position order.
func (s *idSet) appendTo(dst []int32) []int32 {
	if s.n == 0 {
		return dst
	}
	dst = append(dst, s.first)
	return append(dst, s.rest...)
}
