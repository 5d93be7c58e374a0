package cmaf

import (
	"bytes"
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
		AvailabilityStart: v.AvailabilityStart, Ended: v.Ended,
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
		AvailabilityStart: s.AvailabilityStart, Ended: s.Ended}
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

// opWire is an Op on the wire: the part's bytes are sent as they are.
type opWire struct {
	N  uint64
	Op Op
}

// EncodeOp writes change n for the network.
func EncodeOp(n uint64, op *Op) []byte {
	var b bytes.Buffer
	gob.NewEncoder(&b).Encode(opWire{N: n, Op: *op})
	return b.Bytes()
}

// DecodeOp reads what EncodeOp wrote.
func DecodeOp(b []byte) (uint64, *Op, error) {
	var w opWire
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&w); err != nil {
		return 0, nil, fmt.Errorf("cmaf: a change: %w", err)
	}
	return w.N, &w.Op, nil
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
