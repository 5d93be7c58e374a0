package record

// A recording on disk: its meta.json, and its journal (a line per
// initialization version and per complete segment, appended after the files
// it names), read back at start.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// meta is a recording's meta.json.
type meta struct {
	ID          string     `json:"id"`
	Name        string     `json:"name,omitempty"`
	StartedAt   time.Time  `json:"startedAt"`
	EndedAt     *time.Time `json:"endedAt,omitempty"`
	Interrupted bool       `json:"interrupted,omitempty"`
	// Truncated is set when the recording stopped at the byte budget
	// while its stream went on, or its end could not be written.
	Truncated bool `json:"truncated,omitempty"`
	// Error is the last failure to write it.
	Error string `json:"error,omitempty"`
	// Public: the stream played without a token, and so does this.
	Public bool `json:"public,omitempty"`
}

// initRec is a journal line for a new initialization version.
type initRec struct {
	Version int          `json:"version"`
	Tracks  []cmaf.Track `json:"tracks"`
}

// segRec is a journal line for one complete segment.
type segRec struct {
	Seq    uint64     `json:"seq"`
	Init   int        `json:"init"`
	Disc   bool       `json:"disc,omitempty"`
	Wall   time.Time  `json:"wall"`
	Tracks []trackRec `json:"tracks"`
}

// trackRec is one track's file of a segment.
type trackRec struct {
	Name  string `json:"name"`
	Start uint64 `json:"start"` // in the track's timescale
	Dur   uint64 `json:"dur"`
	Parts []int  `json:"parts"` // sizes of the moof+mdat fragments, in order
}

type journalLine struct {
	Init *initRec `json:"init,omitempty"`
	Seg  *segRec  `json:"seg,omitempty"`
	// Disc marks the segment of this number as the start of a
	// discontinuity after it was written (a piece recorded on another
	// node came in before it).
	Disc *uint64 `json:"disc,omitempty"`
}

// load reads a recording's meta and journal. A torn last line (the server
// died writing it) is ignored, and so is a line naming a missing file.
func load(dir string) (*Recording, error) {
	rec := &Recording{dir: dir, inits: map[int]*initRec{}, done: make(chan struct{})}
	close(rec.done)
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &rec.meta); err != nil {
		return nil, fmt.Errorf("meta.json: %w", err)
	}
	f, err := os.Open(filepath.Join(dir, "journal.jsonl"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return rec, nil
		}
		return nil, err
	}
	defer f.Close()
	rec.readJournal(f, rec.segFilesSize)
	for v := range rec.inits {
		for _, t := range rec.inits[v].Tracks {
			if st, err := os.Stat(filepath.Join(dir, initFile(t.Name, v))); err == nil {
				rec.bytes += st.Size()
			}
		}
	}
	return rec, nil
}

// readJournal takes a journal's lines up to the first that does not read
// (torn by a crash), and of its segments those whose files have their
// bytes (filesSize says).
func (r *Recording) readJournal(in io.Reader, filesSize func(*segRec) (int64, bool)) {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l journalLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			break
		}
		r.jsize += int64(len(sc.Bytes())) + 1
		switch {
		case l.Init != nil:
			r.inits[l.Init.Version] = l.Init
		case l.Seg != nil:
			if r.inits[l.Seg.Init] == nil || !safeTracks(l.Seg.Tracks) {
				continue
			}
			size, ok := filesSize(l.Seg)
			if !ok {
				continue
			}
			r.segs = append(r.segs, l.Seg)
			r.bytes += size
		case l.Disc != nil:
			for _, sr := range r.segs {
				if sr.Seq == *l.Disc {
					sr.Disc = true
				}
			}
		}
	}
	// A piece taken in from another node is written after the segments
	// it goes before.
	sort.SliceStable(r.segs, func(i, j int) bool { return r.segs[i].Seq < r.segs[j].Seq })
}

func (r *Recording) segFilesSize(sr *segRec) (int64, bool) {
	var total int64
	for _, t := range sr.Tracks {
		st, err := os.Stat(filepath.Join(r.dir, segFile(t.Name, sr.Seq)))
		want := int64(0)
		for _, p := range t.Parts {
			want += int64(p)
		}
		if err != nil || st.Size() < want {
			return 0, false
		}
		total += want
	}
	return total, true
}

// safeTracks says a journal line's track names are file names of this
// recording's directory (video, audio).
func safeTracks(ts []trackRec) bool {
	for _, t := range ts {
		if !trackName.MatchString(t.Name) {
			return false
		}
	}
	return true
}

func initFile(track string, version int) string {
	return fmt.Sprintf("init-%s-%d.mp4", track, version)
}

func segFile(track string, seq uint64) string {
	return fmt.Sprintf("%s-%d.m4s", track, seq)
}

func (r *Recording) writeMeta() error {
	b, err := json.MarshalIndent(r.meta, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(r.dir, "meta.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(r.dir, "meta.json"))
}

// cutJournal drops a torn last line from a journal being continued and
// leaves j at its end.
func (r *Recording) cutJournal(j *os.File) error {
	st, err := j.Stat()
	if err != nil {
		return err
	}
	if r.jsize > st.Size() { // the last whole line lost only its newline
		if _, err := j.WriteAt([]byte("\n"), st.Size()); err != nil {
			return err
		}
	} else if err := j.Truncate(r.jsize); err != nil {
		return err
	}
	_, err = j.Seek(r.jsize, io.SeekStart)
	return err
}

// appendJournal writes one line; a line written in part (a full disk) is
// cut off again, so the journal stays whole lines.
func (r *Recording) appendJournal(l journalLine) error {
	r.jmu.Lock()
	defer r.jmu.Unlock()
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	n, err := r.journal.Write(append(b, '\n'))
	if err != nil {
		if n > 0 {
			r.journal.Truncate(r.jsize)
			r.journal.Seek(r.jsize, io.SeekStart)
		}
		return err
	}
	r.jsize += int64(n)
	return nil
}
