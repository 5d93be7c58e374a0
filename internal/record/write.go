package record

// Writing: following a stream's packager and writing its complete segments,
// a failing disk, and a recording's end.

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// pendingSeg is a complete segment copied out of the packager's view.
type pendingSeg struct {
	seq    uint64
	init   *cmaf.Init
	disc   bool
	wall   time.Time
	tracks []pendingTrack
}

type pendingTrack struct {
	name  string
	start uint64
	dur   uint64
	parts [][]byte
}

// follow writes the packager's complete segments as they come. It never
// holds the packager up: it reads the shared view and, if it falls so far
// behind that a segment left the window, marks a discontinuity and goes on.
func (s *Store) follow(rec *Recording, p *cmaf.Packager) {
	defer s.finish(rec)
	var next uint64
	started := false
	var lastInit *cmaf.Init
	for {
		var batch []pendingSeg
		ended := false
		err := p.Wait(s.ctx, func(v *cmaf.View) bool {
			batch = batch[:0]
			for _, seg := range v.Segments {
				if started && seg.Seq < next {
					continue
				}
				if !seg.Complete() {
					break
				}
				batch = append(batch, copySeg(seg))
			}
			ended = v.Ended
			return len(batch) > 0 || ended
		})
		if err != nil && !errors.Is(err, cmaf.ErrEnded) {
			return // the server is stopping
		}
		for i := range batch {
			ps := &batch[i]
			if started && ps.seq > next {
				lost := int(ps.seq - next)
				s.log.Warn("recording fell behind; segments skipped", "recording", rec.meta.ID, "segments", lost)
				rec.mu.Lock()
				rec.skipped += lost
				rec.mu.Unlock()
				ps.disc = true
			}
			if limit := s.maxBytes(); limit > 0 && rec.size()+ps.size() > limit {
				// A stream that never ends must not fill the disk, and
				// retention cannot remove a recording still being written:
				// it stops whole, within the budget.
				s.log.Warn("recording stopped: the next segment would take it past the recordings' byte budget",
					"recording", rec.meta.ID, "bytes", rec.size(), "budget", limit)
				rec.mu.Lock()
				rec.meta.Truncated = true
				rec.mu.Unlock()
				return
			}
			started = true
			next = ps.seq + 1
			// A write that fails (a full disk) loses this segment, not the
			// recording: the next ones are tried, and the first written
			// after the hole starts a new part.
			if ps.init != lastInit {
				if err := rec.writeInit(ps.init); err != nil {
					s.writeFailed(rec, err)
					continue
				}
				lastInit = ps.init
			}
			ps.disc = ps.disc || rec.isFailing()
			if err := rec.writeSeg(ps); err != nil {
				s.writeFailed(rec, err)
				continue
			}
			if rec.recovered() {
				s.log.Info("recording resumed", "recording", rec.meta.ID, "seq", ps.seq)
			}
		}
		if ended || errors.Is(err, cmaf.ErrEnded) {
			return
		}
	}
}

// size is what the segment takes on disk.
func (ps *pendingSeg) size() int64 {
	var n int64
	for _, t := range ps.tracks {
		for _, p := range t.parts {
			n += int64(len(p))
		}
	}
	return n
}

func copySeg(seg *cmaf.Segment) pendingSeg {
	ps := pendingSeg{seq: seg.Seq, init: seg.Init, disc: seg.Discontinuity, wall: seg.Wall}
	for i, ts := range seg.Tracks {
		if !ts.Entered || len(ts.Parts) == 0 {
			continue
		}
		pt := pendingTrack{name: seg.Init.Tracks[i].Name, start: ts.Start, dur: ts.Duration}
		for _, part := range ts.Parts {
			pt.parts = append(pt.parts, part.Data)
		}
		ps.tracks = append(ps.tracks, pt)
	}
	return ps
}

// writeFailed marks the recording failing with err.
func (s *Store) writeFailed(rec *Recording, err error) {
	rec.mu.Lock()
	first := !rec.failing
	rec.failing = true
	rec.meta.Error = err.Error()
	rec.mu.Unlock()
	if first {
		s.log.Error("recording: cannot write; segments are lost until it can", "recording", rec.meta.ID, "err", err)
	}
}

func (r *Recording) isFailing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failing
}

// recovered clears the failing state and says whether there was one.
func (r *Recording) recovered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	was := r.failing
	r.failing = false
	return was
}

func (r *Recording) writeInit(in *cmaf.Init) error {
	var size int64
	var written []string
	undo := func(err error) error {
		for _, f := range written {
			os.Remove(f)
		}
		return err
	}
	version := in.Version + r.initBase
	for i, t := range in.Tracks {
		name := filepath.Join(r.dir, initFile(t.Name, version))
		written = append(written, name)
		if err := os.WriteFile(name, in.Data[i], 0o600); err != nil {
			return undo(err)
		}
		size += int64(len(in.Data[i]))
	}
	ir := &initRec{Version: version, Tracks: in.Tracks}
	if err := r.appendJournal(journalLine{Init: ir}); err != nil {
		return undo(err)
	}
	r.mu.Lock()
	r.inits[version] = ir
	r.bytes += size
	r.mu.Unlock()
	return nil
}

func (r *Recording) writeSeg(ps *pendingSeg) error {
	seq := ps.seq + r.seqBase
	sr := &segRec{Seq: seq, Init: ps.init.Version + r.initBase, Disc: ps.disc || r.resumed, Wall: ps.wall.UTC()}
	var size int64
	var written []string
	undo := func(err error) error {
		for _, f := range written {
			os.Remove(f) // what a full disk took in part gives room back
		}
		return err
	}
	for _, t := range ps.tracks {
		name := filepath.Join(r.dir, segFile(t.name, seq))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return undo(err)
		}
		written = append(written, name)
		tr := trackRec{Name: t.name, Start: t.start, Dur: t.dur}
		for _, d := range t.parts {
			if _, err := f.Write(d); err != nil {
				f.Close()
				return undo(err)
			}
			tr.Parts = append(tr.Parts, len(d))
			size += int64(len(d))
		}
		if err := f.Close(); err != nil {
			return undo(err)
		}
		sr.Tracks = append(sr.Tracks, tr)
	}
	if len(sr.Tracks) == 0 {
		return nil
	}
	if err := r.appendJournal(journalLine{Seg: sr}); err != nil {
		return undo(err)
	}
	r.mu.Lock()
	r.segs = append(r.segs, sr)
	r.bytes += size
	r.resumed = false
	r.mu.Unlock()
	return nil
}

func (r *Recording) size() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

// finish closes a recording whose stream ended.
func (s *Store) finish(rec *Recording) {
	rec.mu.Lock()
	now := time.Now().UTC()
	rec.meta.EndedAt = &now
	rec.active = false
	if rec.failing {
		rec.meta.Truncated = true // its end is missing
	}
	if rec.journal != nil {
		rec.journal.Sync()
		rec.journal.Close()
		rec.journal = nil
	}
	err := rec.writeMeta()
	info := rec.infoLocked()
	close(rec.done)
	rec.mu.Unlock()
	if err != nil {
		s.log.Error("recording meta not written", "recording", info.ID, "err", err)
	}
	s.log.Info("recording finished", "recording", info.ID, "duration", info.Duration.Round(time.Millisecond),
		"bytes", info.Bytes, "gaps", info.Gaps)
	if s.ctx.Err() == nil {
		s.Prune(time.Now())
	}
}
