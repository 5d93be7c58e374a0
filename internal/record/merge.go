package record

// A recording in pieces. A stream that moves between the nodes of a
// cluster (its origin died, or drained) is recorded on each in turn, under
// its one id, numbered on: the segments and initializations made after a
// takeover come after those before it. The node that holds the recording
// now takes another node's piece in (Merge): the piece's files are copied,
// its journal lines appended, and the recording is one again, with a
// discontinuity where the media is not continuous.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// handover is what a node hands over of one of its recordings.
type handover struct {
	Name      string     `json:"name,omitempty"`
	StartedAt time.Time  `json:"startedAt"`
	Public    bool       `json:"public,omitempty"`
	Inits     []*initRec `json:"inits"`
	Segs      []*segRec  `json:"segs"`
}

// maxPiece bounds a piece's description another node sends (its journal's
// lines): a day of 2 s segments is about 10 MB.
const maxPiece = 32 << 20

// Piece describes a finished recording for another node to take in:
// its initializations and segments (the files named by them are read with
// File).
func (s *Store) Piece(id string) ([]byte, error) {
	rec, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.active {
		return nil, ErrBusy
	}
	p := handover{Name: rec.meta.Name, StartedAt: rec.meta.StartedAt, Public: rec.meta.Public, Segs: rec.segs}
	for _, in := range rec.inits {
		p.Inits = append(p.Inits, in)
	}
	sort.Slice(p.Inits, func(i, j int) bool { return p.Inits[i].Version < p.Inits[j].Version })
	return json.Marshal(p)
}

// File opens one of a recording's stored files (an initialization or a
// segment's track, by its file name).
func (s *Store) File(id, name string) (*os.File, error) {
	if !segName.MatchString(name) && !initName.MatchString(name) {
		return nil, ErrNotFound
	}
	rec, err := s.Get(id)
	if err != nil {
		return nil, err
	}
	return os.Open(filepath.Join(rec.dir, name))
}

// segKey tells two copies of one segment apart from two segments: a
// segment relayed to a node that took its stream over is recorded there
// too, under its number, with its wall-clock time.
type segKey struct {
	seq  uint64
	wall int64
}

// Merge takes another node's piece of the recording id in: piece is what
// its Piece said, open reads one of its files. Segments this recording has
// already (the window a takeover kept) are not taken twice; a segment
// whose number this recording uses for other media is left out. It
// returns how many segments came in. A piece taken in again adds nothing.
func (s *Store) Merge(ctx context.Context, id string, desc []byte, open func(ctx context.Context, name string) (io.ReadCloser, error)) (int, error) {
	if len(desc) > maxPiece {
		return 0, fmt.Errorf("the piece's description is over %d bytes", maxPiece)
	}
	var p handover
	if err := json.Unmarshal(desc, &p); err != nil {
		return 0, fmt.Errorf("the piece's description: %w", err)
	}
	rec, err := s.Get(id)
	if err != nil {
		return 0, err
	}
	rec.merging.Lock()
	defer rec.merging.Unlock()

	rec.mu.Lock()
	seqs := map[uint64]bool{}
	have := map[segKey]bool{}
	versions := map[int]*initRec{}
	top := 0
	for _, sr := range rec.segs {
		seqs[sr.Seq] = true
		have[segKey{sr.Seq, sr.Wall.UnixNano()}] = true
	}
	for v, in := range rec.inits {
		versions[v] = in
		top = max(top, v)
	}
	dir := rec.dir
	rec.mu.Unlock()

	// The piece's initializations: one this recording has under the same
	// version (the same stream's, relayed) is the same one; a version
	// used here for another is given a new number.
	theirs := map[int]*initRec{}
	for _, in := range p.Inits {
		if in == nil || len(in.Tracks) == 0 || len(in.Tracks) > 4 {
			return 0, errors.New("the piece's description: a bad initialization")
		}
		for _, t := range in.Tracks {
			if !trackName.MatchString(t.Name) {
				return 0, errors.New("the piece's description: a bad track name")
			}
		}
		theirs[in.Version] = in
		top = max(top, in.Version)
	}
	remap := map[int]int{}
	var newInits []*initRec
	initFiles := map[string]string{} // local name ← their name
	for _, in := range p.Inits {
		if mine := versions[in.Version]; mine != nil {
			same, err := sameInit(ctx, dir, in, open)
			if err != nil {
				return 0, err
			}
			if same {
				remap[in.Version] = in.Version
				continue
			}
			top++
			remap[in.Version] = top
		} else {
			remap[in.Version] = in.Version
		}
		local := &initRec{Version: remap[in.Version], Tracks: in.Tracks}
		newInits = append(newInits, local)
		for _, t := range in.Tracks {
			initFiles[initFile(t.Name, local.Version)] = initFile(t.Name, in.Version)
		}
	}
	var add []*segRec
	for _, sr := range p.Segs {
		if sr == nil || theirs[sr.Init] == nil || !safeTracks(sr.Tracks) || len(sr.Tracks) == 0 {
			continue
		}
		if have[segKey{sr.Seq, sr.Wall.UnixNano()}] || seqs[sr.Seq] {
			continue // this one's, or a number this recording uses
		}
		c := *sr
		c.Init = remap[sr.Init]
		add = append(add, &c)
	}
	if len(add) == 0 {
		return 0, nil
	}

	// The files first: a journal line is written after the files it
	// names, here as when recording.
	var size int64
	for local, remote := range initFiles {
		n, err := fetchFile(ctx, dir, local, remote, open)
		if err != nil {
			return 0, err
		}
		size += n
	}
	for _, sr := range add {
		for _, t := range sr.Tracks {
			name := segFile(t.Name, sr.Seq)
			n, err := fetchFile(ctx, dir, name, name, open)
			if err != nil {
				return 0, err
			}
			size += n
		}
	}

	rec.mu.Lock()
	for _, in := range newInits {
		rec.inits[in.Version] = in
	}
	mine := map[*segRec]bool{}
	for _, sr := range rec.segs {
		mine[sr] = true
	}
	all := append(append([]*segRec(nil), rec.segs...), add...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Seq < all[j].Seq })
	// Where one node's media meets the other's, a discontinuity, unless
	// the two follow on (the window a takeover kept ends where the new
	// origin's copy of it goes on).
	var marked []uint64
	for i := 1; i < len(all); i++ {
		prev, sr := all[i-1], all[i]
		if mine[prev] == mine[sr] || sr.Disc || rec.follows(prev, sr) {
			continue
		}
		if mine[sr] { // a copy: snapshots being served hold the segment
			c := *sr
			sr = &c
			all[i] = sr
			mine[sr] = true
			marked = append(marked, sr.Seq)
		}
		sr.Disc = true
	}
	rec.segs = all
	rec.bytes += size
	if !p.StartedAt.IsZero() && p.StartedAt.Before(rec.meta.StartedAt) {
		rec.meta.StartedAt = p.StartedAt
	}
	metaErr := rec.writeMeta()
	active := rec.active
	rec.mu.Unlock()

	lines := make([]journalLine, 0, len(newInits)+len(add)+len(marked))
	for _, in := range newInits {
		lines = append(lines, journalLine{Init: in})
	}
	for _, sr := range add {
		lines = append(lines, journalLine{Seg: sr})
	}
	for i := range marked {
		lines = append(lines, journalLine{Disc: &marked[i]})
	}
	if err := rec.appendLines(lines, active); err != nil {
		return len(add), err
	}
	s.mu.Lock()
	for k := range s.mp4Cache {
		if len(k) > len(id) && k[:len(id)+1] == id+"/" {
			delete(s.mp4Cache, k)
		}
	}
	s.mu.Unlock()
	s.log.Info("recording: a piece recorded on another node taken in", "recording", id, "segments", len(add), "bytes", size)
	return len(add), metaErr
}

// follows says whether sr goes on from prev with no gap: the same
// initialization, and its lead track starting where prev's ends.
func (r *Recording) follows(prev, sr *segRec) bool {
	if prev.Init != sr.Init {
		return false
	}
	a, b := r.lead(prev), r.lead(sr)
	return a != nil && b != nil && a.Name == b.Name && a.Start+a.Dur == b.Start
}

// appendLines writes lines to the journal: the recorder's open one, or
// the file of a finished recording.
func (r *Recording) appendLines(lines []journalLine, active bool) error {
	if active {
		for _, l := range lines {
			if err := r.appendJournal(l); err != nil {
				return err
			}
		}
		return nil
	}
	r.jmu.Lock()
	defer r.jmu.Unlock()
	var buf bytes.Buffer
	for _, l := range lines {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		buf.Write(append(b, '\n'))
	}
	f, err := os.OpenFile(filepath.Join(r.dir, "journal.jsonl"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	n, err := f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	r.jsize += int64(n)
	return err
}

// sameInit says whether the piece's initialization in has the same files
// as this recording's of the same version.
func sameInit(ctx context.Context, dir string, in *initRec, open func(context.Context, string) (io.ReadCloser, error)) (bool, error) {
	for _, t := range in.Tracks {
		name := initFile(t.Name, in.Version)
		mine, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return false, nil
		}
		rc, err := open(ctx, name)
		if err != nil {
			return false, err
		}
		theirs, err := io.ReadAll(io.LimitReader(rc, 1<<20))
		rc.Close()
		if err != nil {
			return false, err
		}
		if !bytes.Equal(mine, theirs) {
			return false, nil
		}
	}
	return true, nil
}

// fetchFile copies the piece's file remote into dir as local, whole or not
// at all.
func fetchFile(ctx context.Context, dir, local, remote string, open func(context.Context, string) (io.ReadCloser, error)) (int64, error) {
	rc, err := open(ctx, remote)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", remote, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(dir, ".incoming-*")
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(tmp, rc)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, local))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return 0, fmt.Errorf("%s: %w", remote, err)
	}
	return n, nil
}
