package partition

import "math/bits"

// settledSet is a group's committed ack state on one partition: a floor,
// below which every offset is settled, and a bitmap of the settled offsets
// above it.
//
// Bit b of words[w] stands for offset base+64w+b. base is the floor
// rounded down to a multiple of 64, and the bits of words[0] below the
// floor are set, so the floor is always base plus the index of the first
// clear bit. When the floor advances, whole words are dropped from the
// front. words may be empty: then nothing at or above the floor is settled.
type settledSet struct {
	floor uint64
	base  uint64
	words []uint64
	n     uint64 // settled offsets at or above floor
}

// lowMask has the n low bits set; n < 64.
func lowMask(n uint64) uint64 { return 1<<n - 1 }

// reset makes floor the floor and forgets every settled offset.
func (s *settledSet) reset(floor uint64) {
	s.floor = floor
	s.base = floor &^ 63
	s.words = s.words[:0]
	s.n = 0
}

// end is the offset after the last one the bitmap covers.
func (s *settledSet) end() uint64 { return s.base + uint64(len(s.words))*64 }

// has reports whether off is settled.
func (s *settledSet) has(off uint64) bool {
	if off < s.floor {
		return true
	}
	if off >= s.end() {
		return false
	}
	i := off - s.base
	return s.words[i>>6]&(1<<(i&63)) != 0
}

// add settles off and reports whether it was not settled before.
func (s *settledSet) add(off uint64) bool {
	if off < s.floor {
		return false
	}
	i := off - s.base
	w := int(i >> 6)
	if w >= len(s.words) {
		if len(s.words) == 0 {
			s.words = append(s.words, lowMask(s.floor-s.base))
		}
		for len(s.words) <= w {
			s.words = append(s.words, 0)
		}
	}
	bit := uint64(1) << (i & 63)
	if s.words[w]&bit != 0 {
		return false
	}
	s.words[w] |= bit
	s.n++
	if off == s.floor {
		s.advance()
	}
	return true
}

// advance moves the floor past every settled offset contiguous with it.
func (s *settledSet) advance() {
	for len(s.words) > 0 {
		w := s.words[0]
		if w != ^uint64(0) {
			f := s.base + uint64(bits.TrailingZeros64(^w))
			s.n -= f - s.floor
			s.floor = f
			return
		}
		s.words = s.words[1:]
		s.base += 64
		s.n -= s.base - s.floor
		s.floor = s.base
	}
}

// raise moves the floor up to to, forgetting the settled offsets below it,
// and then past every settled offset contiguous with it.
func (s *settledSet) raise(to uint64) {
	if to <= s.floor {
		return
	}
	s.n -= s.count(s.floor, to)
	if drop := (to - s.base) >> 6; drop >= uint64(len(s.words)) {
		s.words = s.words[:0]
	} else {
		s.words = s.words[drop:]
	}
	s.base = to &^ 63
	s.floor = to
	if len(s.words) > 0 {
		s.words[0] |= lowMask(to - s.base)
	}
	s.advance()
}

// count is the number of settled offsets in [lo, hi) at or above the floor.
func (s *settledSet) count(lo, hi uint64) uint64 {
	lo = max(lo, s.floor)
	hi = min(hi, s.end())
	var c uint64
	for lo < hi {
		i := lo - s.base
		w := i >> 6
		m := ^uint64(0) << (i & 63)
		wordEnd := s.base + (w+1)*64
		if hi < wordEnd {
			m &= lowMask(hi - (wordEnd - 64))
		}
		c += uint64(bits.OnesCount64(s.words[w] & m))
		lo = wordEnd
	}
	return c
}

// nextUnsettled is the first offset at or after from (and the floor) that
// is not settled.
func (s *settledSet) nextUnsettled(from uint64) uint64 {
	from = max(from, s.floor)
	if from >= s.end() {
		return from
	}
	i := from - s.base
	m := ^uint64(0) << (i & 63)
	for w := i >> 6; w < uint64(len(s.words)); w++ {
		if x := ^s.words[w] & m; x != 0 {
			return s.base + w*64 + uint64(bits.TrailingZeros64(x))
		}
		m = ^uint64(0)
	}
	return s.end()
}

// nextSettled is the first settled offset in [from, bound), or bound if
// there is none; from must be at or above the floor.
func (s *settledSet) nextSettled(from, bound uint64) uint64 {
	if from >= s.end() {
		return bound
	}
	i := from - s.base
	m := ^uint64(0) << (i & 63)
	for w := i >> 6; w < uint64(len(s.words)) && s.base+w*64 < bound; w++ {
		if x := s.words[w] & m; x != 0 {
			return min(bound, s.base+w*64+uint64(bits.TrailingZeros64(x)))
		}
		m = ^uint64(0)
	}
	return bound
}

// take appends to runs the unsettled offsets from from upward, as
// contiguous spans, until need offsets are taken or limit is reached. It
// returns the offset after the last one it consumed, the runs and what is
// still needed.
func (s *settledSet) take(from, limit uint64, need int, runs []span) (uint64, []span, int) {
	for need > 0 && from < limit {
		lo := s.nextUnsettled(from)
		if lo >= limit {
			return limit, runs, need
		}
		hi := s.nextSettled(lo, min(limit, lo+uint64(need)))
		runs = append(runs, span{lo, hi})
		need -= int(hi - lo)
		from = hi
	}
	return from, runs, need
}

// list returns the settled offsets above the floor, ascending.
func (s *settledSet) list() []uint64 {
	if s.n == 0 {
		return nil
	}
	out := make([]uint64, 0, s.n)
	for w, x := range s.words {
		if w == 0 {
			x &^= lowMask(s.floor - s.base)
		}
		for x != 0 {
			b := bits.TrailingZeros64(x)
			out = append(out, s.base+uint64(w)*64+uint64(b))
			x &= x - 1
		}
	}
	return out
}
