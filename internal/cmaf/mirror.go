package cmaf

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"time"
)

// A mirror is a packager fed with another packager's changes instead of
// media: another node's, over the network. It starts from a Snapshot of the
// source and applies the source's changes (Journal) in order, so its view,
// and every playlist, manifest and part served from it, is the source's
// byte for byte.

// ErrGap is Apply's answer to a change that does not follow the mirror's
// last: one was lost on the way, and the mirror needs a new snapshot.
var ErrGap = errors.New("cmaf: a change is missing")

// Journal makes fn hear of every change of the view from now on, numbered
// from 1 at the packager's first; nil stops it. fn runs under the
// packager's lock, in order: it must not block. It returns the number of
// the last change made before fn was set.
func (p *Packager) Journal(fn func(n uint64, op *Op)) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.journal = fn
	return p.ops
}

// Snapshot is a packager's state after its change N: what a mirror starts
// from.
type Snapshot struct {
	N      uint64
	Config Config
	Inits  []Init // every version the window refers to, oldest first
	// Segments are the window's, each naming its Init by version.
	Segments               []snapSegment
	PartTarget             map[string]time.Duration
	NextPart               map[string]uint64
	MaxSegment             time.Duration
	Bandwidth              map[string]int
	DroppedDiscontinuities int
	AvailabilityStart      time.Time
	Ended                  bool
	Current                int // the current Init's version (0: none)
	Variants               []string
}

type snapSegment struct {
	Seq           uint64
	Init          int
	Discontinuity bool
	Start         time.Duration
	Wall          time.Time
	Tracks        []TrackSegment
}

// Snapshot copies the packager's state. Parts are shared, not copied: a
// part does not change once made.
func (p *Packager) Snapshot() *Snapshot {
	p.mu.RLock()
	defer p.mu.RUnlock()
	v := &p.view
	s := &Snapshot{N: p.ops, Config: p.cfg, MaxSegment: v.MaxSegment, DroppedDiscontinuities: v.DroppedDiscontinuities,
		AvailabilityStart: v.AvailabilityStart, Ended: v.Ended, Variants: append([]string(nil), v.Variants...),
		PartTarget: copyMap(v.PartTarget), NextPart: copyMap(v.NextPart), Bandwidth: copyMap(v.Bandwidth)}
	seen := map[*Init]bool{}
	addInit := func(in *Init) {
		if in != nil && !seen[in] {
			seen[in] = true
			c := *in
			s.Inits = append(s.Inits, c)
		}
	}
	for _, seg := range v.Segments {
		addInit(seg.Init)
		ss := snapSegment{Seq: seg.Seq, Init: seg.Init.Version, Discontinuity: seg.Discontinuity, Start: seg.Start, Wall: seg.Wall}
		for _, ts := range seg.Tracks {
			c := *ts
			c.Parts = append([]*Part(nil), ts.Parts...)
			ss.Tracks = append(ss.Tracks, c)
		}
		s.Segments = append(s.Segments, ss)
	}
	addInit(v.Init)
	if v.Init != nil {
		s.Current = v.Init.Version
	}
	return s
}

func copyMap[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// NewMirror makes a packager in the state s describes; Apply continues it.
func NewMirror(s *Snapshot) (*Packager, error) {
	p := New(s.Config)
	if err := p.Restore(s); err != nil {
		return nil, err
	}
	return p, nil
}

// Restore puts a mirror in the state s describes, in place: requests
// waiting on it go on with the new state. The packager's settings stay.
func (p *Packager) Restore(s *Snapshot) error {
	inits := map[int]*Init{}
	for i := range s.Inits {
		in := s.Inits[i]
		inits[in.Version] = &in
	}
	v := View{PartTarget: copyMap(s.PartTarget), NextPart: copyMap(s.NextPart), Bandwidth: copyMap(s.Bandwidth),
		MaxSegment: s.MaxSegment, DroppedDiscontinuities: s.DroppedDiscontinuities,
		AvailabilityStart: s.AvailabilityStart, Ended: s.Ended, Variants: s.Variants}
	for _, ss := range s.Segments {
		in := inits[ss.Init]
		if in == nil {
			return fmt.Errorf("cmaf: snapshot segment %d names no init", ss.Seq)
		}
		if len(ss.Tracks) != len(in.Tracks) {
			return fmt.Errorf("cmaf: snapshot segment %d has %d tracks, its init %d", ss.Seq, len(ss.Tracks), len(in.Tracks))
		}
		seg := &Segment{Seq: ss.Seq, Init: in, Discontinuity: ss.Discontinuity, Start: ss.Start, Wall: ss.Wall}
		for i := range ss.Tracks {
			ts := ss.Tracks[i]
			seg.Tracks = append(seg.Tracks, &ts)
		}
		v.Segments = append(v.Segments, seg)
	}
	if s.Current != 0 {
		if v.Init = inits[s.Current]; v.Init == nil {
			return errors.New("cmaf: snapshot without its current init")
		}
	}
	p.mu.Lock()
	p.view, p.ops = v, s.N
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	return nil
}

// Apply makes change n of the source. ErrGap when n is not the change after
// the mirror's last, or does not fit its view (the mirror is unchanged).
func (p *Packager) Apply(n uint64, op *Op) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n <= p.ops {
		return nil // had it (a snapshot taken after it)
	}
	if n != p.ops+1 || !p.view.apply(op, p.cfg.Window) {
		return ErrGap
	}
	p.ops = n
	if p.journal != nil {
		p.journal(n, op)
	}
	close(p.changed)
	p.changed = make(chan struct{})
	return nil
}

// Changes is the number of the last change the packager made or applied.
func (p *Packager) Changes() uint64 {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.ops
}

// A change on the wire: a fixed header, big-endian, then the part's bytes
// as they are, then the initialization version (rare) in gob.
const (
	opVersion = 1
	opHeader  = 1 + 1 + 8 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 1
)

// The header's flags.
const (
	opHasPart = 1 << iota
	opHasInit
	opHasWall
	opDiscontinuity
	opLead
	opIndependent
	opHasIDs
)

// EncodeOp writes change n for the network.
func EncodeOp(n uint64, op *Op) []byte {
	size := opHeader
	if op.Part != nil {
		size += 8 + 8 + 4 + len(op.Part.Data)
	}
	b := make([]byte, 0, size)
	var flags byte
	if op.Part != nil {
		flags |= opHasPart
		if op.Part.Independent {
			flags |= opIndependent
		}
	}
	if op.Init != nil {
		flags |= opHasInit
	}
	if !op.Wall.IsZero() {
		flags |= opHasWall
	}
	if op.Discontinuity {
		flags |= opDiscontinuity
	}
	if op.Lead {
		flags |= opLead
	}
	if len(op.IDs) > 0 {
		flags |= opHasIDs
	}
	b = append(b, opVersion, byte(op.Kind))
	b = binary.BigEndian.AppendUint64(b, n)
	b = binary.BigEndian.AppendUint64(b, op.Seg)
	b = binary.BigEndian.AppendUint64(b, uint64(op.Start))
	b = binary.BigEndian.AppendUint32(b, uint32(op.Track))
	b = binary.BigEndian.AppendUint64(b, op.TrackSeq)
	b = binary.BigEndian.AppendUint64(b, op.Ticks)
	b = binary.BigEndian.AppendUint64(b, uint64(op.PartTarget))
	b = binary.BigEndian.AppendUint64(b, uint64(op.Wall.UnixNano()))
	b = append(b, flags)
	if op.Part != nil {
		b = binary.BigEndian.AppendUint64(b, op.Part.Start)
		b = binary.BigEndian.AppendUint64(b, op.Part.Duration)
		b = binary.BigEndian.AppendUint32(b, uint32(len(op.Part.Data)))
		b = append(b, op.Part.Data...)
	}
	if op.Init != nil {
		var ib bytes.Buffer
		gob.NewEncoder(&ib).Encode(op.Init)
		b = binary.BigEndian.AppendUint32(b, uint32(ib.Len()))
		b = append(b, ib.Bytes()...)
	}
	if len(op.IDs) > 0 {
		b = append(b, byte(len(op.IDs)))
		for _, id := range op.IDs {
			b = append(b, byte(len(id)))
			b = append(b, id...)
		}
	}
	return b
}

var errShortOp = errors.New("cmaf: a short change")

// DecodeOp reads what EncodeOp wrote. The part's bytes stay in b.
func DecodeOp(b []byte) (uint64, *Op, error) {
	if len(b) < opHeader || b[0] != opVersion {
		return 0, nil, errShortOp
	}
	op := &Op{Kind: OpKind(b[1])}
	n := binary.BigEndian.Uint64(b[2:])
	op.Seg = binary.BigEndian.Uint64(b[10:])
	op.Start = time.Duration(binary.BigEndian.Uint64(b[18:]))
	op.Track = int(binary.BigEndian.Uint32(b[26:]))
	op.TrackSeq = binary.BigEndian.Uint64(b[30:])
	op.Ticks = binary.BigEndian.Uint64(b[38:])
	op.PartTarget = time.Duration(binary.BigEndian.Uint64(b[46:]))
	wall := int64(binary.BigEndian.Uint64(b[54:]))
	flags := b[62]
	rest := b[opHeader:]
	if flags&opHasWall != 0 {
		op.Wall = time.Unix(0, wall)
	}
	op.Discontinuity, op.Lead = flags&opDiscontinuity != 0, flags&opLead != 0
	if flags&opHasPart != 0 {
		if len(rest) < 20 {
			return 0, nil, errShortOp
		}
		p := &Part{Start: binary.BigEndian.Uint64(rest), Duration: binary.BigEndian.Uint64(rest[8:]), Independent: flags&opIndependent != 0}
		size := int(binary.BigEndian.Uint32(rest[16:]))
		if len(rest)-20 < size {
			return 0, nil, errShortOp
		}
		p.Data, rest = rest[20:20+size:20+size], rest[20+size:]
		op.Part = p
	}
	if flags&opHasInit != 0 {
		if len(rest) < 4 {
			return 0, nil, errShortOp
		}
		size := int(binary.BigEndian.Uint32(rest))
		if len(rest)-4 < size {
			return 0, nil, errShortOp
		}
		op.Init = &Init{}
		if err := gob.NewDecoder(bytes.NewReader(rest[4 : 4+size])).Decode(op.Init); err != nil {
			return 0, nil, fmt.Errorf("cmaf: a change's init: %w", err)
		}
		rest = rest[4+size:]
	}
	if flags&opHasIDs != 0 {
		if len(rest) < 1 || int(rest[0]) > MaxVariants {
			return 0, nil, errShortOp
		}
		n := int(rest[0])
		rest = rest[1:]
		for range n {
			if len(rest) < 1 || len(rest)-1 < int(rest[0]) {
				return 0, nil, errShortOp
			}
			op.IDs = append(op.IDs, string(rest[1:1+int(rest[0])]))
			rest = rest[1+int(rest[0]):]
		}
	}
	if len(rest) != 0 {
		return 0, nil, errShortOp
	}
	return n, op, nil
}

// EncodeSnapshot writes s for the network.
func EncodeSnapshot(s *Snapshot) []byte {
	var b bytes.Buffer
	gob.NewEncoder(&b).Encode(s)
	return b.Bytes()
}

// DecodeSnapshot reads what EncodeSnapshot wrote.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	var s Snapshot
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&s); err != nil {
		return nil, fmt.Errorf("cmaf: a snapshot: %w", err)
	}
	return &s, nil
}
