package record

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// Register adds the recordings' public routes: /recordings/{id}/{file} (the
// HLS playlists and their files) and /recordings/{id}.mp4.
func (s *Store) Register(mux *http.ServeMux) {
	mux.HandleFunc("/recordings/{id}/{file}", s.serveFile)
	mux.HandleFunc("/recordings/{file}", s.serveMP4)
}

var (
	segName  = regexp.MustCompile(`^(video|audio)-([0-9]{1,19})\.m4s$`)
	initName = regexp.MustCompile(`^init-(video|audio)-([0-9]{1,9})\.mp4$`)
)

func (s *Store) lookup(w http.ResponseWriter, id string) (snapshot, bool) {
	rec, err := s.Get(id)
	if err != nil {
		http.Error(w, "no such recording", http.StatusNotFound)
		return snapshot{}, false
	}
	return rec.snapshot(), true
}

func (s *Store) serveFile(w http.ResponseWriter, r *http.Request) {
	if !cmaf.Preflight(w, r) {
		return
	}
	snap, ok := s.lookup(w, r.PathValue("id"))
	if !ok {
		return
	}
	file := r.PathValue("file")
	switch {
	case file == "index.m3u8":
		writePlaylist(w, r, snap.multivariant(), snap.active)
		return
	case file == "video.m3u8" || file == "audio.m3u8":
		body, ok := snap.mediaPlaylist(strings.TrimSuffix(file, ".m3u8"))
		if !ok {
			http.Error(w, "no such track", http.StatusNotFound)
			return
		}
		writePlaylist(w, r, body, snap.active)
		return
	}
	known := false
	if m := segName.FindStringSubmatch(file); m != nil {
		seq, _ := strconv.ParseUint(m[2], 10, 64)
		known = snap.hasSeg(m[1], seq)
		w.Header().Set("Content-Type", "video/iso.segment")
	} else if m := initName.FindStringSubmatch(file); m != nil {
		v, _ := strconv.Atoi(m[2])
		known = snap.inits[v] != nil
		w.Header().Set("Content-Type", "video/mp4")
	}
	if !known {
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	f, err := os.Open(filepath.Join(snap.dir, file))
	if err != nil {
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	defer f.Close()
	w.Header().Set("Cache-Control", "public, max-age=86400, immutable")
	http.ServeContent(w, r, "", time.Time{}, f)
}

func writePlaylist(w http.ResponseWriter, r *http.Request, body string, active bool) {
	h := w.Header()
	h.Set("Content-Type", "application/vnd.apple.mpegurl")
	if active {
		h.Set("Cache-Control", "no-cache")
	} else {
		h.Set("Cache-Control", "public, max-age=60")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

func (sn *snapshot) hasSeg(track string, seq uint64) bool {
	i := sort.Search(len(sn.segs), func(i int) bool { return sn.segs[i].Seq >= seq })
	if i == len(sn.segs) || sn.segs[i].Seq != seq {
		return false
	}
	for _, t := range sn.segs[i].Tracks {
		if t.Name == track {
			return true
		}
	}
	return false
}

func (sn *snapshot) track(version int, name string) (trackInfo, bool) {
	in := sn.inits[version]
	if in == nil {
		return trackInfo{}, false
	}
	for _, t := range in.Tracks {
		if t.Name == name {
			return trackInfo{t.Timescale, t.Codec, t.Width, t.Height, t.FrameRate, t.Channels}, true
		}
	}
	return trackInfo{}, false
}

type trackInfo struct {
	timescale     uint32
	codec         string
	width, height int
	frameRate     float64
	channels      int
}

// bandwidth is a track's peak bits per second over its segments.
func (sn *snapshot) bandwidth(name string) int {
	peak := 0.0
	for _, sr := range sn.segs {
		ti, ok := sn.track(sr.Init, name)
		if !ok {
			continue
		}
		for _, t := range sr.Tracks {
			if t.Name != name || t.Dur == 0 {
				continue
			}
			size := 0
			for _, p := range t.Parts {
				size += p
			}
			peak = max(peak, float64(size*8)/(float64(t.Dur)/float64(ti.timescale)))
		}
	}
	return int(peak)
}

func (sn *snapshot) multivariant() string {
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	if len(sn.segs) == 0 {
		return b.String()
	}
	last := sn.segs[len(sn.segs)-1].Init
	v, hasV := sn.track(last, "video")
	a, hasA := sn.track(last, "audio")
	var codecs []string
	bw := 0
	if hasV {
		codecs = append(codecs, v.codec)
		bw += sn.bandwidth("video")
	}
	if hasA {
		codecs = append(codecs, a.codec)
		bw += sn.bandwidth("audio")
	}
	if hasV && hasA {
		fmt.Fprintf(&b, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"%d\",URI=\"audio.m3u8\"\n", a.channels)
	}
	fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,CODECS=\"%s\"", max(bw, 1), strings.Join(codecs, ","))
	if hasV {
		fmt.Fprintf(&b, ",RESOLUTION=%dx%d", v.width, v.height)
		if v.frameRate > 0 {
			fmt.Fprintf(&b, ",FRAME-RATE=%.3f", v.frameRate)
		}
		if hasA {
			b.WriteString(",AUDIO=\"audio\"")
		}
		b.WriteString("\nvideo.m3u8\n")
	} else {
		b.WriteString("\naudio.m3u8\n")
	}
	return b.String()
}

// mediaPlaylist lists one track's segments: a VOD playlist once the
// recording is finished, an EVENT playlist while it grows. A reconnect or a
// skipped stretch is a discontinuity with the wall-clock time it resumed.
func (sn *snapshot) mediaPlaylist(name string) (string, bool) {
	var body strings.Builder
	maxDur := 0.0
	n := 0
	lastInit := -1
	for _, sr := range sn.segs {
		var tr *trackRec
		for i := range sr.Tracks {
			if sr.Tracks[i].Name == name {
				tr = &sr.Tracks[i]
			}
		}
		ti, ok := sn.track(sr.Init, name)
		if tr == nil || !ok {
			continue
		}
		d := float64(tr.Dur) / float64(ti.timescale)
		maxDur = max(maxDur, d)
		disc := n > 0 && (sr.Disc || sr.Init != lastInit)
		if disc {
			body.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		if sr.Init != lastInit {
			fmt.Fprintf(&body, "#EXT-X-MAP:URI=\"%s\"\n", initFile(name, sr.Init))
			lastInit = sr.Init
		}
		if n == 0 || disc {
			fmt.Fprintf(&body, "#EXT-X-PROGRAM-DATE-TIME:%s\n", sr.Wall.UTC().Format("2006-01-02T15:04:05.000Z"))
		}
		fmt.Fprintf(&body, "#EXTINF:%.5f,\n%s\n", d, segFile(name, sr.Seq))
		n++
	}
	if n == 0 && !sn.active {
		return "", false
	}
	var b strings.Builder
	kind := "VOD"
	if sn.active {
		kind = "EVENT"
	}
	fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:%s\n#EXT-X-INDEPENDENT-SEGMENTS\n",
		max(int(math.Ceil(maxDur)), 1), kind)
	b.WriteString(body.String())
	if !sn.active {
		b.WriteString("#EXT-X-ENDLIST\n")
	}
	return b.String(), true
}

// serveMP4 answers /recordings/{id}.mp4: one MP4 with every track, composed
// from the recording's files as it is read: progressive (see progressive.go),
// or fragmented past 4 GiB.
func (s *Store) serveMP4(w http.ResponseWriter, r *http.Request) {
	if !cmaf.Preflight(w, r) {
		return
	}
	id, ok := strings.CutSuffix(r.PathValue("file"), ".mp4")
	if !ok {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	snap, ok := s.lookup(w, id)
	if !ok {
		return
	}
	if snap.active {
		w.Header().Set("Retry-After", "10")
		http.Error(w, "the recording is still being written; its HLS playlist plays already", http.StatusConflict)
		return
	}
	idx, err := s.mp4Index(id, snap)
	if err != nil {
		http.Error(w, "the recording has no media: "+err.Error(), http.StatusNotFound)
		return
	}
	m := &mp4Reader{mp4Index: idx, files: map[string]*os.File{}}
	defer m.Close()
	h := w.Header()
	h.Set("Content-Type", "video/mp4")
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", id+".mp4"))
	h.Set("Cache-Control", "public, max-age=3600")
	http.ServeContent(w, r, "", time.Time{}, m)
}

// initTracks reads an initialization version's per-track init files, each
// track numbered by its place (1, 2, …) as a file with every track wants.
func (sn *snapshot) initTracks(version int) ([]*fmp4.InitTrack, error) {
	var out []*fmp4.InitTrack
	for i, t := range sn.inits[version].Tracks {
		b, err := os.ReadFile(filepath.Join(sn.dir, initFile(t.Name, version)))
		if err != nil {
			return nil, err
		}
		var one fmp4.Init
		if err := one.Unmarshal(bytes.NewReader(b)); err != nil || len(one.Tracks) != 1 {
			return nil, fmt.Errorf("initialization of %s: %v", t.Name, err)
		}
		tr := *one.Tracks[0]
		tr.ID = i + 1
		out = append(out, &tr)
	}
	return out, nil
}

// mp4Index builds, or finds in the cache, how a finished recording's MP4 is
// laid out. Players ask for many ranges of the same file.
func (s *Store) mp4Index(id string, snap snapshot) (*mp4Index, error) {
	key := fmt.Sprintf("%s/%d", id, len(snap.segs))
	s.mu.Lock()
	idx, ok := s.mp4Cache[key]
	s.mu.Unlock()
	if ok {
		return idx, nil
	}
	idx, err := snap.progressive()
	if errors.Is(err, errTooLarge) {
		idx, err = snap.mp4()
	}
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.mp4Cache) >= 8 {
		for k := range s.mp4Cache {
			delete(s.mp4Cache, k)
			break
		}
	}
	s.mp4Cache[key] = idx
	s.mu.Unlock()
	return idx, nil
}

// Fragmented composition. Each stored fragment is a moof+mdat of track 1 written by
// package cmaf, whose layout fixes where its numbers are: mfhd's sequence
// number at byte 20 and tfhd's track ID at byte 44. The MP4 rewrites those
// two as it reads.
const (
	mfhdSeqAt   = 20
	tfhdTrackAt = 44
)

type piece struct {
	at    int64 // offset in the composed file
	size  int64
	mem   []byte // the header, or nil
	path  string
	off   int64 // in the file
	raw   bool  // copied as it is (no moof numbers to rewrite)
	seq   uint32
	track uint32
}

// mp4Index is an MP4's layout: its pieces, in order.
type mp4Index struct {
	pieces []piece
	size   int64
}

// mp4Reader reads an index's bytes for one request.
type mp4Reader struct {
	*mp4Index
	pos int64

	mu    sync.Mutex
	files map[string]*os.File
	order []string // open files, least recently used first
}

// maxOpenPerDownload bounds the files one download holds open: the MP4
// interleaves a segment's video and audio, so two at a time, and two more
// for the step to the next segment.
const maxOpenPerDownload = 4

func (sn *snapshot) mp4() (*mp4Index, error) {
	if len(sn.segs) == 0 {
		return nil, errors.New("no segments")
	}
	first := sn.segs[0].Init
	tracks, err := sn.initTracks(first)
	if err != nil {
		return nil, err
	}
	ids := map[string]uint32{}
	init := fmp4.Init{Tracks: tracks}
	for i, t := range sn.inits[first].Tracks {
		ids[t.Name] = uint32(i + 1)
	}
	var buf seekablebuffer.Buffer
	if err := init.Marshal(&buf); err != nil {
		return nil, err
	}
	m := &mp4Index{}
	m.add(piece{mem: buf.Bytes(), size: int64(len(buf.Bytes()))})
	seq := uint32(1)
	for _, sr := range sn.segs {
		for _, t := range sr.Tracks {
			id, ok := ids[t.Name]
			if !ok {
				continue
			}
			path := filepath.Join(sn.dir, segFile(t.Name, sr.Seq))
			off := int64(0)
			for _, size := range t.Parts {
				m.add(piece{path: path, off: off, size: int64(size), seq: seq, track: id})
				off += int64(size)
				seq++
			}
		}
	}
	return m, nil
}

func (m *mp4Index) add(p piece) {
	p.at = m.size
	m.pieces = append(m.pieces, p)
	m.size += p.size
}

// touch moves path to the most recently used end; m.mu is held.
func (m *mp4Reader) touch(path string) {
	for i, p := range m.order {
		if p == path {
			copy(m.order[i:], m.order[i+1:])
			m.order[len(m.order)-1] = path
			return
		}
	}
}

func (m *mp4Reader) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.files {
		f.Close()
	}
	m.files = nil
}

func (m *mp4Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += m.pos
	case io.SeekEnd:
		offset += m.size
	default:
		return 0, errors.New("bad whence")
	}
	if offset < 0 {
		return 0, errors.New("negative position")
	}
	m.pos = offset
	return offset, nil
}

func (m *mp4Reader) Read(b []byte) (int, error) {
	if m.pos >= m.size {
		return 0, io.EOF
	}
	i := sort.Search(len(m.pieces), func(i int) bool { return m.pieces[i].at+m.pieces[i].size > m.pos })
	p := &m.pieces[i]
	rel := m.pos - p.at
	n := int(min(int64(len(b)), p.size-rel))
	b = b[:n]
	if p.mem != nil {
		copy(b, p.mem[rel:])
	} else {
		f, err := m.file(p.path)
		if err != nil {
			return 0, err
		}
		if _, err := f.ReadAt(b, p.off+rel); err != nil {
			return 0, fmt.Errorf("recording file %s: %w", filepath.Base(p.path), err)
		}
		if !p.raw {
			patch(b, rel, mfhdSeqAt, p.seq)
			patch(b, rel, tfhdTrackAt, p.track)
		}
	}
	m.pos += int64(n)
	return n, nil
}

// patch writes v big-endian at offset at of a piece into b, which holds the
// piece's bytes from rel on.
func patch(b []byte, rel int64, at int, v uint32) {
	var w [4]byte
	binary.BigEndian.PutUint32(w[:], v)
	for k := range 4 {
		i := int64(at+k) - rel
		if i >= 0 && i < int64(len(b)) {
			b[i] = w[k]
		}
	}
}

func (m *mp4Reader) file(path string) (*os.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.files == nil {
		return nil, os.ErrClosed
	}
	if f, ok := m.files[path]; ok {
		m.touch(path)
		return f, nil
	}
	if len(m.order) >= maxOpenPerDownload {
		old := m.order[0]
		m.files[old].Close()
		delete(m.files, old)
		m.order = m.order[1:]
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	m.files[path] = f
	m.order = append(m.order, path)
	return f, nil
}
