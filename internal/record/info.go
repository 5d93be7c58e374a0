package record

// Describing recordings: their durations, status and listing, and the
// snapshot serving reads.

import (
	"sort"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// Info describes a recording.
type Info struct {
	ID        string
	Name      string
	Status    string
	StartedAt time.Time
	EndedAt   time.Time
	Duration  time.Duration // media time of the lead track
	Bytes     int64
	Segments  int
	Gaps      int // discontinuities after the first segment
	// Truncated: the recording stopped at the byte budget before its
	// stream ended, or its end could not be written.
	Truncated bool
	// Error is the last failure to write the recording (while Status is
	// failed, the current one).
	Error string
}

// lead is the track whose durations measure the recording: video if any.
func (r *Recording) lead(sr *segRec) *trackRec {
	for i := range sr.Tracks {
		if sr.Tracks[i].Name == "video" {
			return &sr.Tracks[i]
		}
	}
	if len(sr.Tracks) > 0 {
		return &sr.Tracks[0]
	}
	return nil
}

func (r *Recording) timescale(version int, track string) uint32 {
	in := r.inits[version]
	if in == nil {
		return 0
	}
	for _, t := range in.Tracks {
		if t.Name == track {
			return t.Timescale
		}
	}
	return 0
}

func (r *Recording) segDuration(sr *segRec) time.Duration {
	t := r.lead(sr)
	if t == nil {
		return 0
	}
	scale := r.timescale(sr.Init, t.Name)
	if scale == 0 {
		return 0
	}
	return cmaf.Duration(t.Dur, scale)
}

func (r *Recording) infoLocked() Info {
	in := Info{ID: r.meta.ID, Name: r.meta.Name, StartedAt: r.meta.StartedAt, Bytes: r.bytes, Segments: len(r.segs),
		Truncated: r.meta.Truncated, Error: r.meta.Error}
	switch {
	case r.active && r.failing:
		in.Status = StatusFailed
	case r.active:
		in.Status = StatusRecording
	case r.meta.Interrupted:
		in.Status = StatusInterrupted
	default:
		in.Status = StatusComplete
	}
	if r.meta.EndedAt != nil {
		in.EndedAt = *r.meta.EndedAt
	}
	for i, sr := range r.segs {
		in.Duration += r.segDuration(sr)
		if i > 0 && sr.Disc {
			in.Gaps++
		}
	}
	return in
}

// Public says whether the recording plays without a token.
func (r *Recording) Public() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.meta.Public
}

// Done is closed once the recording is finished.
func (r *Recording) Done() <-chan struct{} { return r.done }

// Info describes the recording.
func (r *Recording) Info() Info {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.infoLocked()
}

// List returns every recording, newest first.
func (s *Store) List() []Info {
	s.mu.Lock()
	recs := make([]*Recording, 0, len(s.recs))
	for _, r := range s.recs {
		recs = append(recs, r)
	}
	s.mu.Unlock()
	out := make([]Info, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.Info())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartedAt.Equal(out[j].StartedAt) {
			return out[i].StartedAt.After(out[j].StartedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// Get returns a recording.
func (s *Store) Get(id string) (*Recording, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[id]
	if !ok {
		return nil, ErrNotFound
	}
	return r, nil
}

// snapshot copies what serving needs out of the recording.
type snapshot struct {
	dir    string
	active bool
	start  time.Time
	inits  map[int]*initRec
	segs   []*segRec
}

func (r *Recording) snapshot() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	inits := make(map[int]*initRec, len(r.inits))
	for k, v := range r.inits {
		inits[k] = v
	}
	return snapshot{dir: r.dir, active: r.active, start: r.meta.StartedAt, inits: inits,
		segs: append([]*segRec(nil), r.segs...)}
}
