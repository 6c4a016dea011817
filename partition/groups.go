package partition

import (
	"fmt"
	"slices"
)

// group is one consumer group on the partition: committed ack state plus
// the leader's leases.
type group struct {
	settled settledSet
	leases  leaseState
}

func newGroup(floor uint64) *group {
	g := &group{}
	g.settled.reset(floor)
	g.leases.init(floor)
	return g
}

func unknownGroup(name string) error { return fmt.Errorf("%w: %q", ErrUnknownGroup, name) }

// group returns the named group. Call with mu held.
func (p *Partition) group(name string) (*group, error) {
	g, ok := p.groups[name]
	if !ok {
		return nil, unknownGroup(name)
	}
	return g, nil
}

// clampFloor limits floor to [journal first offset, watermark].
func (p *Partition) clampFloor(floor uint64) uint64 {
	return min(max(floor, p.j.FirstOffset()), p.wm.Load())
}

// AddGroup creates the consumer group name with the given ack floor,
// clamped to [journal first offset, watermark]: the journal's first offset
// delivers everything retained, the watermark only what comes next. It
// returns ErrGroupExists if the group exists.
func (p *Partition) AddGroup(name string, floor uint64) error {
	floor = p.clampFloor(floor)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.groups[name]; ok {
		return fmt.Errorf("%w: %q", ErrGroupExists, name)
	}
	p.groups[name] = newGroup(floor)
	return nil
}

// RemoveGroup deletes the consumer group name and its leases. It returns
// ErrUnknownGroup if there is no such group.
func (p *Partition) RemoveGroup(name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, err := p.group(name)
	if err != nil {
		return err
	}
	g.leases.reset(g.settled.floor)
	delete(p.groups, name)
	return nil
}

// Groups returns the names of the consumer groups, sorted.
func (p *Partition) Groups() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	names := make([]string, 0, len(p.groups))
	for name := range p.groups {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Settle marks offsets settled (acked or terminated) for group and returns
// how many became newly settled. Offsets already settled or below the
// floor are ignored, so replaying a Raft entry is harmless, and so are
// offsets at or above the watermark, which cannot have been delivered.
// Settling the offset equal to the floor advances the floor past every
// contiguous settled offset. A lease of a newly settled offset is dropped.
// It returns ErrUnknownGroup for an unknown group.
func (p *Partition) Settle(group string, offsets []uint64) (int, error) {
	wm := p.wm.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	g, err := p.group(group)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, off := range offsets {
		if off < wm && g.settled.add(off) {
			n++
			g.leases.drop(off)
		}
	}
	g.leases.compact()
	return n, nil
}

// ResetGroup sets the group's floor to floor, clamped to [journal first
// offset, watermark], and forgets its settled offsets: everything from the
// floor up is pending again. It also drops the group's leases and resets
// its delivery cursor to the floor. It returns ErrUnknownGroup for an
// unknown group.
func (p *Partition) ResetGroup(group string, floor uint64) error {
	floor = p.clampFloor(floor)
	p.mu.Lock()
	defer p.mu.Unlock()
	g, err := p.group(group)
	if err != nil {
		return err
	}
	g.settled.reset(floor)
	g.leases.reset(floor)
	return nil
}

// GroupState returns the group's floor and its settled offsets above the
// floor, ascending: the committed state a snapshot records. It returns
// ErrUnknownGroup for an unknown group.
func (p *Partition) GroupState(group string) (floor uint64, settled []uint64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, err := p.group(group)
	if err != nil {
		return 0, nil, err
	}
	return g.settled.floor, g.settled.list(), nil
}

// SetGroupState replaces the committed state of group, creating the group
// if it does not exist: a snapshot restore. It takes floor and settled as
// given (no clamping), ignores settled offsets below floor, and then
// advances the floor past settled offsets contiguous with it, so
// GroupState returns the same state in canonical form. The group's leases
// are dropped and its delivery cursor reset.
func (p *Partition) SetGroupState(group string, floor uint64, settled []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g, ok := p.groups[group]
	if !ok {
		g = newGroup(floor)
		p.groups[group] = g
	}
	g.settled.reset(floor)
	for _, off := range settled {
		g.settled.add(off)
	}
	g.leases.reset(g.settled.floor)
}

// Pending is the number of offsets in [floor, watermark) that are not
// settled. It returns ErrUnknownGroup for an unknown group.
func (p *Partition) Pending(group string) (uint64, error) {
	wm := p.wm.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	g, err := p.group(group)
	if err != nil {
		return 0, err
	}
	s := &g.settled
	if s.floor >= wm {
		return 0, nil
	}
	return wm - s.floor - (s.n - s.count(wm, s.end())), nil
}

// DeleteBefore applies retention: journal.DeleteBefore(offset), then it
// raises to the journal's new first offset the floor of every group whose
// floor was below it, forgetting settled offsets and leases below. It
// returns the number of segments deleted.
func (p *Partition) DeleteBefore(offset uint64) (int, error) {
	n, err := p.j.DeleteBefore(offset)
	first := p.j.FirstOffset()
	p.mu.Lock()
	for _, g := range p.groups {
		if g.settled.floor < first {
			g.settled.raise(first)
			g.leases.dropBelow(g.settled.floor)
		}
	}
	p.mu.Unlock()
	return n, closedErr(err)
}
