// Package hls serves a stream's CMAF fragments as Low-Latency HLS: a
// multivariant playlist, one media playlist per track with parts of about
// 200 ms, blocking playlist reload (_HLS_msn/_HLS_part), preload hints,
// discontinuities across publisher reconnects, CORS, and cache headers that
// let a CDN keep the fragments but never a playlist.
//
// The fragments come from package cmaf, shared with DASH. (docs/adr/0001 says
// why glasscast writes its own playlists rather than run gohlslib's muxer.)
package hls

import (
	"context"
	"errors"
	"fmt"
	"github.com/glasscast/glasscast/internal/access"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// Handler serves /hls/{id}/{file}.
type Handler struct {
	lookup cmaf.Lookup
	// FirstWait bounds how long a playlist request for a stream without
	// media yet is held before 503.
	FirstWait time.Duration
}

// New makes a handler over the streams lookup finds.
func New(lookup cmaf.Lookup) *Handler {
	return &Handler{lookup: lookup, FirstWait: 10 * time.Second}
}

// ServeHTTP answers GET, HEAD and OPTIONS under /hls/{id}/{file}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := cmaf.Begin(w, r, h.lookup)
	if !ok {
		return
	}
	file := r.PathValue("file")
	switch {
	case file == "index.m3u8":
		h.serveMultivariant(w, r, p)
	case strings.HasSuffix(file, ".m3u8"):
		h.serveMedia(w, r, p, strings.TrimSuffix(file, ".m3u8"))
	default:
		// A preload hint is answered when its part is ready: normally a
		// part away. It is held as long as a blocking playlist request
		// (three target durations): a publisher that reconnects, or a
		// stream that moves to another node, comes back within it, and a
		// player waiting for the part plays on.
		var target time.Duration
		p.View(func(v *cmaf.View) { target = targetDuration(v) })
		p.ServeFile(w, r, file, 3*target)
	}
}

// waitFirst holds a request until the stream can be played.
func (h *Handler) waitFirst(w http.ResponseWriter, r *http.Request, p *cmaf.Packager) bool {
	return cmaf.WaitPlayable(w, r, p, h.FirstWait)
}

// Playable reports whether p's playlists have media to play.
func Playable(p *cmaf.Packager) bool {
	ok := false
	p.View(func(v *cmaf.View) { ok = v.Playable() })
	return ok
}

func writePlaylist(w http.ResponseWriter, r *http.Request, body string) {
	cmaf.WriteText(w, r, "application/vnd.apple.mpegurl", body)
}

func (h *Handler) serveMultivariant(w http.ResponseWriter, r *http.Request, p *cmaf.Packager) {
	if !h.waitFirst(w, r, p) {
		return
	}
	q := "?" + cmaf.SessionParam + "=" + cmaf.SessionOf(r)
	var body string
	p.View(func(v *cmaf.View) { body = multivariant(v, q) })
	body += variantsInf(p, access.Grant(r, r.PathValue("id")), q)
	writePlaylist(w, r, body)
}

// variantsInf lists the stream's other renditions (an ABR ladder), each a
// video playlist of its own stream, with the source's audio, under a path
// element the source's grant covers.
func variantsInf(p *cmaf.Packager, grant, query string) string {
	var b strings.Builder
	var audio *cmaf.Track
	audioBW := 0
	p.View(func(v *cmaf.View) {
		if i := v.Init.Track("audio"); i >= 0 {
			t := v.Init.Tracks[i]
			audio, audioBW = &t, v.Bandwidth["audio"]
		}
	})
	for _, vr := range p.Variants() {
		vr.P.View(func(v *cmaf.View) {
			i := v.Init.Track("video")
			if i < 0 {
				return
			}
			t := v.Init.Tracks[i]
			codecs := t.Codec
			if audio != nil {
				codecs += "," + audio.Codec
			}
			fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,CODECS=\"%s\",RESOLUTION=%dx%d", max(v.Bandwidth["video"]+audioBW, 1), codecs, t.Width, t.Height)
			if t.FrameRate > 0 {
				fmt.Fprintf(&b, ",FRAME-RATE=%.3f", t.FrameRate)
			}
			if audio != nil {
				b.WriteString(",AUDIO=\"audio\"")
			}
			fmt.Fprintf(&b, "\n../%s%s%s/video.m3u8%s\n", grant, access.VariantSep, vr.ID, query)
		})
	}
	return b.String()
}

// multivariant lists the stream's media playlists, each URI followed by
// query (the player's session).
func multivariant(v *cmaf.View, query string) string {
	in := v.Init
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	vi, ai := in.Track("video"), in.Track("audio")
	var codecs []string
	bandwidth := 0
	if vi >= 0 {
		codecs = append(codecs, in.Tracks[vi].Codec)
		bandwidth += v.Bandwidth["video"]
	}
	if ai >= 0 {
		codecs = append(codecs, in.Tracks[ai].Codec)
		bandwidth += v.Bandwidth["audio"]
	}
	bandwidth = max(bandwidth, 1)
	if vi >= 0 && ai >= 0 {
		fmt.Fprintf(&b, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"%d\",URI=\"audio.m3u8%s\"\n",
			in.Tracks[ai].Channels, query)
	}
	fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,CODECS=\"%s\"", bandwidth, strings.Join(codecs, ","))
	if vi >= 0 {
		t := in.Tracks[vi]
		fmt.Fprintf(&b, ",RESOLUTION=%dx%d", t.Width, t.Height)
		if t.FrameRate > 0 {
			fmt.Fprintf(&b, ",FRAME-RATE=%.3f", t.FrameRate)
		}
		if ai >= 0 {
			b.WriteString(",AUDIO=\"audio\"")
		}
		b.WriteString("\nvideo.m3u8" + query + "\n")
	} else {
		b.WriteString("\naudio.m3u8" + query + "\n")
	}
	return b.String()
}

// errBadRequest marks blocking requests that can never be satisfied.
var errBadRequest = errors.New("bad request")

func (h *Handler) serveMedia(w http.ResponseWriter, r *http.Request, p *cmaf.Packager, track string) {
	if track != "video" && track != "audio" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if !h.waitFirst(w, r, p) {
		return
	}
	known := false
	p.View(func(v *cmaf.View) { known = v.Init.Track(track) >= 0 })
	if !known {
		http.Error(w, "no such track", http.StatusNotFound)
		return
	}

	q := r.URL.Query()
	if msnStr := q.Get("_HLS_msn"); msnStr != "" {
		msn, err := strconv.ParseUint(msnStr, 10, 64)
		if err != nil {
			http.Error(w, "bad _HLS_msn", http.StatusBadRequest)
			return
		}
		part := -1
		if ps := q.Get("_HLS_part"); ps != "" {
			part, err = strconv.Atoi(ps)
			if err != nil || part < 0 {
				http.Error(w, "bad _HLS_part", http.StatusBadRequest)
				return
			}
		}
		if err := h.block(r, p, track, msn, part); err != nil {
			switch {
			case errors.Is(err, errBadRequest):
				http.Error(w, "_HLS_msn is too far ahead", http.StatusBadRequest)
			case errors.Is(err, cmaf.ErrEnded):
				http.Error(w, "stream ended", http.StatusNotFound)
			case r.Context().Err() == nil:
				w.Header().Set("Retry-After", "1")
				http.Error(w, "the requested part did not come in time", http.StatusServiceUnavailable)
			}
			return
		}
	} else if q.Get("_HLS_part") != "" {
		http.Error(w, "_HLS_part without _HLS_msn", http.StatusBadRequest)
		return
	}

	var body string
	p.View(func(v *cmaf.View) { body = mediaPlaylist(v, track) })
	writePlaylist(w, r, body)
}

// block waits until the playlist would contain part `part` of segment msn
// (the whole segment when part < 0), for at most three target durations.
func (h *Handler) block(r *http.Request, p *cmaf.Packager, track string, msn uint64, part int) error {
	var bad bool
	var target time.Duration
	p.View(func(v *cmaf.View) {
		entries := v.TrackSegments(track)
		bad = len(entries) == 0 || msn > entries[len(entries)-1].TS.Seq+2
		target = targetDuration(v)
	})
	if bad {
		return errBadRequest
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*target)
	defer cancel()
	return p.Wait(ctx, func(v *cmaf.View) bool { return hasPart(v.TrackSegments(track), msn, part) })
}

// hasPart reports whether a playlist of these entries lists part of segment
// msn (the whole segment when part < 0). A part index past the segment's last
// part means the next segment's first part (RFC 8216bis 6.2.5.2).
func hasPart(entries []cmaf.TrackEntry, msn uint64, part int) bool {
	if len(entries) == 0 {
		return false
	}
	if msn < entries[0].TS.Seq {
		return true
	}
	for _, e := range entries {
		ts := e.TS
		if ts.Seq != msn {
			continue
		}
		switch {
		case part < 0:
			return ts.Complete
		case part < len(ts.Parts):
			return true
		case !ts.Complete:
			return false
		}
		msn, part = msn+1, 0
	}
	return false
}

// targetDuration is EXT-X-TARGETDURATION: the longest segment, rounded up.
func targetDuration(v *cmaf.View) time.Duration {
	return max(time.Second, v.MaxSegment.Round(time.Second))
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 5, 64)
}

// partsShown is how many of the newest complete segments list their parts.
const partsShown = 2

func mediaPlaylist(v *cmaf.View, track string) string {
	target := targetDuration(v)
	partTarget := v.PartTarget[track]
	if partTarget == 0 {
		partTarget = 200 * time.Millisecond
	}
	partTarget = partTarget.Round(time.Millisecond)

	list := v.TrackSegments(track)
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:9\n")
	fmt.Fprintf(&b, "#EXT-X-TARGETDURATION:%d\n", int(target/time.Second))
	fmt.Fprintf(&b, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=%s\n", seconds(3*partTarget))
	fmt.Fprintf(&b, "#EXT-X-PART-INF:PART-TARGET=%s\n", seconds(partTarget))
	first := uint64(0)
	if len(list) > 0 {
		first = list[0].TS.Seq
	}
	fmt.Fprintf(&b, "#EXT-X-MEDIA-SEQUENCE:%d\n", first)
	// The count of discontinuity tags no longer shown, the first entry's
	// included: a playlist does not start with one.
	disc := v.DroppedDiscontinuities
	if len(list) > 0 && list[0].Seg.Discontinuity {
		disc++
	}
	if disc > 0 {
		fmt.Fprintf(&b, "#EXT-X-DISCONTINUITY-SEQUENCE:%d\n", disc)
	}

	complete := 0
	for _, e := range list {
		if e.TS.Complete {
			complete++
		}
	}
	var lastInit *cmaf.Init
	for n, e := range list {
		ts, scale := e.TS, e.Track.Timescale
		if e.Seg.Discontinuity && n > 0 {
			b.WriteString("#EXT-X-DISCONTINUITY\n")
		}
		if e.Seg.Init != lastInit {
			lastInit = e.Seg.Init
			fmt.Fprintf(&b, "#EXT-X-MAP:URI=\"%s\"\n", cmaf.InitName(track, e.Seg.Init.Version))
		}
		wall := e.Seg.Wall.Add(cmaf.Duration(ts.Start, scale) - e.Seg.Start)
		fmt.Fprintf(&b, "#EXT-X-PROGRAM-DATE-TIME:%s\n", wall.UTC().Format("2006-01-02T15:04:05.000Z"))
		if !ts.Complete || complete-n <= partsShown {
			for _, pt := range ts.Parts {
				fmt.Fprintf(&b, "#EXT-X-PART:DURATION=%s,URI=\"%s\"", seconds(cmaf.Duration(pt.Duration, scale)), cmaf.PartName(track, pt.ID))
				if pt.Independent {
					b.WriteString(",INDEPENDENT=YES")
				}
				b.WriteByte('\n')
			}
		}
		if ts.Complete {
			fmt.Fprintf(&b, "#EXTINF:%s,\n%s\n", seconds(cmaf.Duration(ts.Duration, scale)), cmaf.SegmentName(track, ts.Seq))
		}
	}
	if v.Ended {
		b.WriteString("#EXT-X-ENDLIST\n")
	} else {
		fmt.Fprintf(&b, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"%s\"\n", cmaf.PartName(track, v.NextPart[track]))
	}
	return b.String()
}

// LastPart reads a media playlist and returns the media sequence number of
// the newest part it lists and that part's index within its segment (-1 when
// it lists none): what a player asks for next with _HLS_msn and _HLS_part.
func LastPart(playlist string) (msn uint64, part int) {
	var cur uint64
	idx := -1
	part = -1
	for _, line := range strings.Split(playlist, "\n") {
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			cur, _ = strconv.ParseUint(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
		case strings.HasPrefix(line, "#EXT-X-PART:"):
			idx++
			msn, part = cur, idx
		case strings.HasPrefix(line, "#EXTINF:"):
			cur++
			idx = -1
		}
	}
	return msn, part
}
