// Package dash serves a stream's CMAF fragments as live MPEG-DASH: a dynamic
// MPD with one adaptation set per track, a SegmentTimeline addressed by
// $Number$, the source's audio channel configuration, and a new Period when
// the tracks' parameters change. The fragments are package cmaf's, the same
// bytes LL-HLS serves.
package dash

import (
	"fmt"
	"github.com/glasscast/glasscast/internal/access"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// Handler serves /dash/{id}/{file}.
type Handler struct {
	lookup cmaf.Lookup
	// FirstWait bounds how long a manifest request for a stream without
	// media yet is held before 503.
	FirstWait time.Duration
	now       func() time.Time
}

// New makes a handler over the streams lookup finds.
func New(lookup cmaf.Lookup) *Handler {
	return &Handler{lookup: lookup, FirstWait: 10 * time.Second, now: time.Now}
}

// ManifestName is the MPD's file name.
const ManifestName = "manifest.mpd"

// ServeHTTP answers GET, HEAD and OPTIONS under /dash/{id}/{file}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := cmaf.Begin(w, r, h.lookup)
	if !ok {
		return
	}
	file := r.PathValue("file")
	if file == TimeName {
		// The clock players set theirs by (the manifest's UTCTiming).
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain")
		if r.Method != http.MethodHead {
			io.WriteString(w, xsTime(h.now()))
		}
		return
	}
	if file != ManifestName {
		// The segment in progress streams as it is made (low-latency
		// DASH); the next one, asked for a little early, when it starts.
		p.StreamSegment(w, r, file, 5*time.Second)
		return
	}
	if !cmaf.WaitPlayable(w, r, p, h.FirstWait) {
		return
	}
	var variants []Rendition
	grant := access.Grant(r, r.PathValue("id"))
	for _, vr := range p.Variants() {
		vr.P.View(func(v *cmaf.View) {
			if rd, ok := renditionOf(vr.ID, v); ok {
				rd.Path = grant + access.VariantSep + vr.ID
				variants = append(variants, rd)
			}
		})
	}
	var body string
	p.View(func(v *cmaf.View) { body = MPD(v, variants...) })
	// The player's refreshes come back to a URL with its session.
	if i := strings.Index(body, "  <Period"); i >= 0 {
		body = body[:i] + "  <Location>" + ManifestName + "?" + cmaf.SessionParam + "=" + cmaf.SessionOf(r) + "</Location>\n" + body[i:]
	}
	cmaf.WriteText(w, r, "application/dash+xml", body)
}

// Rendition is another video rendition of the stream (an ABR rung) on the
// same timeline, listed as a Representation beside the source's.
type Rendition struct {
	ID        string // its stream id
	Path      string // the path element its files are under (../Path/), which the source's grant covers
	Track     cmaf.Track
	Version   int
	Bandwidth int
	Entries   []cmaf.TrackEntry // complete segments of the current version
}

func renditionOf(id string, v *cmaf.View) (Rendition, bool) {
	if v.Init == nil {
		return Rendition{}, false
	}
	i := v.Init.Track("video")
	if i < 0 {
		return Rendition{}, false
	}
	rd := Rendition{ID: id, Track: v.Init.Tracks[i], Version: v.Init.Version, Bandwidth: max(v.Bandwidth["video"], 1)}
	for _, e := range v.TrackSegments("video") {
		if e.Seg.Init == v.Init && e.TS.Complete {
			rd.Entries = append(rd.Entries, e)
		}
	}
	return rd, len(rd.Entries) > 0
}

// duration formats an xs:duration.
func duration(d time.Duration) string {
	return "PT" + strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "S"
}

// TimeName is the file that answers the time: the manifests' UTCTiming.
const TimeName = "time"

// MPD renders the manifest of a view. It is a function of the view alone:
// every node that mirrors a stream answers the same manifest, and a player
// sets its clock by the server's through UTCTiming's URL.
func MPD(v *cmaf.View, variants ...Rendition) string {
	maxSeg := max(v.MaxSegment, time.Second)
	var window time.Duration
	var periods [][]*cmaf.Segment
	for _, s := range v.Segments {
		if !s.Tracks[0].Complete {
			continue // listed once complete: a DASH client fetches what is listed
		}
		window += cmaf.Duration(s.Tracks[0].Duration, s.Init.Tracks[0].Timescale)
		if n := len(periods); n > 0 && periods[n-1][0].Init == s.Init {
			periods[n-1] = append(periods[n-1], s)
		} else {
			periods = append(periods, []*cmaf.Segment{s})
		}
	}

	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	fmt.Fprintf(&b, `<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" profiles="urn:mpeg:dash:profile:isoff-live:2011,http://dashif.org/guidelines/dash-if-simple" type="%s"`,
		map[bool]string{false: "dynamic", true: "static"}[v.Ended])
	fmt.Fprintf(&b, ` availabilityStartTime="%s" publishTime="%s"`, xsTime(v.AvailabilityStart), xsTime(published(v)))
	if v.Ended {
		fmt.Fprintf(&b, ` mediaPresentationDuration="%s"`, duration(window))
	} else {
		fmt.Fprintf(&b, ` minimumUpdatePeriod="PT0.25S" timeShiftBufferDepth="%s" suggestedPresentationDelay="%s"`,
			duration(max(window, 2*maxSeg)), duration(maxSeg+time.Second))
	}
	fmt.Fprintf(&b, ` maxSegmentDuration="%s" minBufferTime="%s">`+"\n", duration(maxSeg), duration(maxSeg))

	for pi, segs := range periods {
		in := segs[0].Init
		fmt.Fprintf(&b, `  <Period id="p%d" start="%s">`+"\n", in.Version, duration(in.Start))
		last := pi == len(periods)-1
		for i, t := range in.Tracks {
			// The track's complete segments of this period: a track that
			// lags the lead a little ends a segment earlier. A live stream's
			// last period also lists the segment in progress, which a
			// player may fetch while it is made (availabilityTimeOffset),
			// with the length of the one before as its expected length.
			var entries []cmaf.TrackEntry
			var expect uint64
			for _, e := range v.TrackSegments(t.Name) {
				switch {
				case e.Seg.Init != in:
				case e.TS.Complete:
					entries = append(entries, e)
					expect = e.TS.Duration
				case last && !v.Ended && e.TS.Entered && len(e.TS.Parts) > 0 && expect > 0:
					entries = append(entries, e)
				}
			}
			if len(entries) == 0 {
				continue
			}
			writeAdaptationSet(&b, v, entries, i, t, expect)
			if t.Name == "video" && last {
				for _, rd := range variants {
					writeRendition(&b, in, rd)
				}
			}
			b.WriteString("    </AdaptationSet>\n")
		}
		b.WriteString("  </Period>\n")
	}
	fmt.Fprintf(&b, `  <UTCTiming schemeIdUri="urn:mpeg:dash:utc:http-xsdate:2014" value="%s"/>`+"\n", TimeName)
	b.WriteString("</MPD>\n")
	return b.String()
}

func writeAdaptationSet(b *strings.Builder, v *cmaf.View, entries []cmaf.TrackEntry, id int, t cmaf.Track, expect uint64) {
	if len(entries) == 0 {
		return
	}
	in := entries[0].Seg.Init
	bw := max(v.Bandwidth[t.Name], 1)
	if t.Kind.String() == "video" {
		fmt.Fprintf(b, `    <AdaptationSet id="%d" contentType="video" mimeType="video/mp4" segmentAlignment="true" startWithSAP="1">`+"\n", id)
		fmt.Fprintf(b, `      <Representation id="%s" codecs="%s" bandwidth="%d" width="%d" height="%d"`, t.Name, t.Codec, bw, t.Width, t.Height)
		if t.FrameRate > 0 {
			fmt.Fprintf(b, ` frameRate="%s"`, strconv.FormatFloat(t.FrameRate, 'f', -1, 64))
		}
		b.WriteString(">\n")
	} else {
		fmt.Fprintf(b, `    <AdaptationSet id="%d" contentType="audio" mimeType="audio/mp4" lang="und" segmentAlignment="true" startWithSAP="1">`+"\n", id)
		fmt.Fprintf(b, `      <AudioChannelConfiguration schemeIdUri="urn:mpeg:dash:23003:3:audio_channel_configuration:2011" value="%d"/>`+"\n", t.Channels)
		fmt.Fprintf(b, `      <Representation id="%s" codecs="%s" bandwidth="%d" audioSamplingRate="%d">`+"\n", t.Name, t.Codec, bw, t.SampleRate)
	}
	// Media time is stream time in the track's timescale; the period starts
	// where its initialization version began.
	pto := cmaf.Ticks(in.Start, t.Timescale)
	early := ""
	if last := entries[len(entries)-1].TS; !last.Complete {
		// Available from its start: its parts stream as they are made.
		early = fmt.Sprintf(` availabilityTimeOffset="%s" availabilityTimeComplete="false"`,
			strconv.FormatFloat(cmaf.Duration(max(expect, last.Duration), t.Timescale).Seconds(), 'f', 3, 64))
	}
	fmt.Fprintf(b, `        <SegmentTemplate timescale="%d" presentationTimeOffset="%d" initialization="%s" media="%s-$Number$.m4s" startNumber="%d"%s>`+"\n",
		t.Timescale, pto, cmaf.InitName(t.Name, in.Version), t.Name, entries[0].TS.Seq, early)
	writeTimeline(b, entries, expect)
}

// writeTimeline writes a SegmentTimeline and closes the Representation; a
// segment in progress is listed with the expected length.
func writeTimeline(b *strings.Builder, entries []cmaf.TrackEntry, expect uint64) {
	b.WriteString("          <SegmentTimeline>\n")
	var next uint64
	for n, e := range entries {
		ts := e.TS
		d := ts.Duration
		if !ts.Complete {
			d = max(d, expect)
		}
		if n == 0 || ts.Start != next {
			fmt.Fprintf(b, `            <S t="%d" d="%d"/>`+"\n", ts.Start, d)
		} else {
			fmt.Fprintf(b, `            <S d="%d"/>`+"\n", d)
		}
		next = ts.Start + d
	}
	b.WriteString("          </SegmentTimeline>\n        </SegmentTemplate>\n      </Representation>\n")
}

// writeRendition lists an ABR rung in the period that starts with in: its
// media time is the same stream time as the source's.
func writeRendition(b *strings.Builder, in *cmaf.Init, rd Rendition) {
	t := rd.Track
	fmt.Fprintf(b, `      <Representation id="video-%s" codecs="%s" bandwidth="%d" width="%d" height="%d"`, rd.ID, t.Codec, rd.Bandwidth, t.Width, t.Height)
	if t.FrameRate > 0 {
		fmt.Fprintf(b, ` frameRate="%s"`, strconv.FormatFloat(t.FrameRate, 'f', -1, 64))
	}
	b.WriteString(">\n")
	fmt.Fprintf(b, `        <SegmentTemplate timescale="%d" presentationTimeOffset="%d" initialization="../%s/%s" media="../%s/%s-$Number$.m4s" startNumber="%d">`+"\n",
		t.Timescale, cmaf.Ticks(in.Start, t.Timescale), rd.Path, cmaf.InitName(t.Name, rd.Version), rd.Path, t.Name, rd.Entries[0].TS.Seq)
	writeTimeline(b, rd.Entries, 0)
}

// published is when the view's newest media was made: the manifest's
// publishTime, which changes with what the manifest lists.
func published(v *cmaf.View) time.Time {
	at := v.AvailabilityStart
	if last := v.Last(); last != nil {
		at = last.Wall
		if len(last.Tracks) > 0 && len(last.Init.Tracks) > 0 {
			at = at.Add(cmaf.Duration(last.Tracks[0].Duration, last.Init.Tracks[0].Timescale))
		}
	}
	return at
}

func xsTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}
