package cmaf

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// File names a fragment file: "{track}-init-{version}.mp4", a segment
// "{track}-{seq}.m4s" or a part "{track}-p{id}.m4s". Parts are numbered
// through the whole stream, not within their segment, so the part a preload
// hint names always comes: in the segment in progress, or first in the next.
type File struct {
	Track   string
	Init    bool
	Version int
	Seq     uint64 // a segment's sequence number
	IsPart  bool
	PartID  uint64
}

// InitName is the file name of an initialization segment.
func InitName(track string, version int) string { return fmt.Sprintf("%s-init-%d.mp4", track, version) }

// SegmentName is the file name of a segment.
func SegmentName(track string, seq uint64) string { return fmt.Sprintf("%s-%d.m4s", track, seq) }

// PartName is the file name of a part.
func PartName(track string, id uint64) string { return fmt.Sprintf("%s-p%d.m4s", track, id) }

// Name is the file's name.
func (f File) Name() string {
	switch {
	case f.Init:
		return InitName(f.Track, f.Version)
	case f.IsPart:
		return PartName(f.Track, f.PartID)
	}
	return SegmentName(f.Track, f.Seq)
}

// ParseFile reads a fragment file name.
func ParseFile(name string) (File, bool) {
	if len(name) > 64 {
		return File{}, false
	}
	track, rest, ok := strings.Cut(name, "-")
	if !ok || (track != "video" && track != "audio") {
		return File{}, false
	}
	if v, ok := strings.CutPrefix(rest, "init-"); ok {
		v, ok = strings.CutSuffix(v, ".mp4")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 1 || strconv.Itoa(n) != v {
			return File{}, false
		}
		return File{Track: track, Init: true, Version: n}, true
	}
	rest, ok = strings.CutSuffix(rest, ".m4s")
	if !ok {
		return File{}, false
	}
	f := File{Track: track}
	if id, ok := strings.CutPrefix(rest, "p"); ok {
		f.IsPart = true
		rest = id
	}
	n, err := strconv.ParseUint(rest, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != rest {
		return File{}, false
	}
	if f.IsPart {
		f.PartID = n
	} else {
		f.Seq = n
	}
	return f, true
}

// ErrNotFound means a file is not, and will not be, in the window.
var ErrNotFound = errors.New("cmaf: no such file")

// Find returns the bytes of a file, as a list of buffers to write in order.
// A segment or part that is still to come (the next part, the segment in
// progress) is waited for until ctx ends; one that has left the window, or
// that lies too far ahead, is ErrNotFound at once.
func (p *Packager) Find(ctx context.Context, f File) ([][]byte, error) {
	if f.Init {
		var data []byte
		p.View(func(v *View) {
			for _, in := range initsOf(v) {
				if in.Version == f.Version {
					if i := in.Track(f.Track); i >= 0 {
						data = in.Data[i]
					}
				}
			}
		})
		if data == nil {
			return nil, ErrNotFound
		}
		return [][]byte{data}, nil
	}

	var out [][]byte
	var missing bool
	err := p.Wait(ctx, func(v *View) bool {
		out, missing = nil, false
		entries := v.TrackSegments(f.Track)
		if len(entries) == 0 {
			return false
		}
		if f.IsPart {
			for _, e := range entries {
				for _, pt := range e.TS.Parts {
					if pt.ID == f.PartID {
						out = [][]byte{pt.Data}
						return true
					}
				}
			}
			// The next part is worth waiting for (EXT-X-PRELOAD-HINT names
			// it); any other is gone or far off.
			missing = f.PartID != v.NextPart[f.Track]
			return missing
		}
		ts := segmentOf(entries, f.Seq)
		if ts == nil {
			// The track's next segment is worth waiting for; anything else
			// has left the window or will never come.
			missing = f.Seq != entries[len(entries)-1].TS.Seq+1
			return missing
		}
		if !ts.Complete {
			return false
		}
		for _, pt := range ts.Parts {
			out = append(out, pt.Data)
		}
		return true
	})
	if errors.Is(err, ErrEnded) || missing {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

func initsOf(v *View) []*Init {
	var out []*Init
	seen := map[*Init]bool{}
	add := func(in *Init) {
		if in != nil && !seen[in] {
			seen[in] = true
			out = append(out, in)
		}
	}
	for _, s := range v.Segments {
		add(s.Init)
	}
	add(v.Init)
	return out
}

// ServeFile answers a request for a fragment file of p, waiting up to wait
// for one still to come. It writes 404 for unknown or expired files and 503
// when the wait runs out.
func (p *Packager) ServeFile(w http.ResponseWriter, r *http.Request, name string, wait time.Duration) {
	f, ok := ParseFile(name)
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	bufs, err := p.Find(ctx, f)
	if err != nil {
		refuseFile(w, r, err)
		return
	}
	size := 0
	for _, b := range bufs {
		size += len(b)
	}
	h := w.Header()
	h.Set("Content-Type", contentType(f.Track))
	h.Set("Content-Length", strconv.Itoa(size))
	// A file name is never reused within a stream, and stream IDs are never
	// reused: what is served once stays true.
	h.Set("Cache-Control", "public, max-age=3600, immutable")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	for _, b := range bufs {
		if _, err := w.Write(b); err != nil {
			return
		}
	}
}

// StreamSegment answers a request for a whole segment as it is made: the
// parts it has at once, then each as it comes (chunked), until it is
// complete. The segment in progress and the next one are worth asking for
// (a low-latency DASH player asks for them early); the next one is waited
// for up to wait. Other files are served as ServeFile does.
func (p *Packager) StreamSegment(w http.ResponseWriter, r *http.Request, name string, wait time.Duration) {
	f, ok := ParseFile(name)
	if !ok || f.Init || f.IsPart {
		p.ServeFile(w, r, name, wait)
		return
	}
	sent := 0
	started := false
	rc := http.NewResponseController(w)
	for {
		var out [][]byte
		var missing, complete bool
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		err := p.Wait(ctx, func(v *View) bool {
			out, missing, complete = nil, false, false
			entries := v.TrackSegments(f.Track)
			if len(entries) == 0 {
				return false
			}
			ts := segmentOf(entries, f.Seq)
			if ts == nil {
				missing = started || f.Seq != entries[len(entries)-1].TS.Seq+1
				return missing
			}
			for _, pt := range ts.Parts[min(sent, len(ts.Parts)):] {
				out = append(out, pt.Data)
			}
			complete = ts.Complete
			return len(out) > 0 || complete
		})
		cancel()
		if !started {
			if errors.Is(err, ErrEnded) || missing {
				err = ErrNotFound
			}
			if err != nil {
				refuseFile(w, r, err)
				return
			}
			h := w.Header()
			h.Set("Content-Type", contentType(f.Track))
			if complete {
				size := 0
				for _, b := range out {
					size += len(b)
				}
				h.Set("Content-Length", strconv.Itoa(size))
			}
			// Its bytes, once complete, never change.
			h.Set("Cache-Control", "public, max-age=3600, immutable")
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodHead {
				return
			}
			started = true
		} else if err != nil || missing {
			return // the stream ended or the segment left the window: cut short
		}
		for _, b := range out {
			if _, err := w.Write(b); err != nil {
				return
			}
		}
		sent += len(out)
		if complete {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// segmentOf finds segment seq among a track's entries.
func segmentOf(entries []TrackEntry, seq uint64) *TrackSegment {
	for _, e := range entries {
		if e.TS.Seq == seq {
			return e.TS
		}
	}
	return nil
}

func contentType(track string) string {
	if track == "audio" {
		return "audio/mp4"
	}
	return "video/mp4"
}

// refuseFile answers a file that cannot be served: ErrNotFound is 404,
// anything else (it did not come in time) 503, unless the client left.
func refuseFile(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		http.Error(w, "not found", http.StatusNotFound)
	case r.Context().Err() == nil:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "not available yet", http.StatusServiceUnavailable)
	}
}
