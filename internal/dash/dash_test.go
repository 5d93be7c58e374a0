package dash_test

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/glasscast/glasscast/internal/cmaf"
	"github.com/glasscast/glasscast/internal/cmaf/cmaftest"
	"github.com/glasscast/glasscast/internal/dash"
)

type mpd struct {
	Type    string `xml:"type,attr"`
	Periods []struct {
		Sets []struct {
			ContentType string `xml:"contentType,attr"`
			Reps        []struct {
				ID       string `xml:"id,attr"`
				Template struct {
					StartNumber uint64 `xml:"startNumber,attr"`
					Offset      string `xml:"availabilityTimeOffset,attr"`
					Complete    string `xml:"availabilityTimeComplete,attr"`
					Timeline    []struct {
						T *uint64 `xml:"t,attr"`
						D uint64  `xml:"d,attr"`
					} `xml:"SegmentTimeline>S"`
				} `xml:"SegmentTemplate"`
			} `xml:"Representation"`
		} `xml:"AdaptationSet"`
	} `xml:"Period"`
}

func parse(t *testing.T, body string) mpd {
	t.Helper()
	var m mpd
	if err := xml.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("the manifest is not XML: %v\n%s", err, body)
	}
	return m
}

// The manifest lists, per track, every segment of the view by number with
// a gapless timeline; live, the last is the one in progress, available
// early; ended, the manifest is static and lists complete segments only.
func TestManifestListsTheView(t *testing.T) {
	src := cmaftest.New(t, cmaf.Config{Window: 6})
	src.Feed(t, 2)
	check := func(live bool) {
		var body string
		var segs map[string][]cmaf.TrackEntry
		src.P.View(func(v *cmaf.View) {
			body = dash.MPD(v)
			segs = map[string][]cmaf.TrackEntry{}
			for _, tr := range v.Init.Tracks {
				segs[tr.Name] = v.TrackSegments(tr.Name)
			}
		})
		m := parse(t, body)
		if want := map[bool]string{true: "dynamic", false: "static"}[live]; m.Type != want || len(m.Periods) != 1 {
			t.Fatalf("type %q with %d periods, want %q with 1", m.Type, len(m.Periods), want)
		}
		sets := m.Periods[0].Sets
		if len(sets) != 2 {
			t.Fatalf("%d adaptation sets", len(sets))
		}
		for _, set := range sets {
			rep := set.Reps[0]
			entries := segs[rep.ID]
			var listed []cmaf.TrackEntry
			for _, e := range entries {
				if e.TS.Complete || live && len(e.TS.Parts) > 0 {
					listed = append(listed, e)
				}
			}
			tl := rep.Template.Timeline
			if len(tl) != len(listed) || rep.Template.StartNumber != listed[0].TS.Seq {
				t.Fatalf("%s: %d segments from %d listed, want %d from %d", rep.ID, len(tl), rep.Template.StartNumber, len(listed), listed[0].TS.Seq)
			}
			if tl[0].T == nil || *tl[0].T != listed[0].TS.Start {
				t.Fatalf("%s: the timeline does not start at the first segment's time", rep.ID)
			}
			for i := 1; i < len(tl); i++ {
				if tl[i].T != nil {
					t.Fatalf("%s: a gap in the timeline at %d", rep.ID, i)
				}
				if i < len(tl)-1 || !live {
					if tl[i].D != listed[i].TS.Duration {
						t.Fatalf("%s: segment %d lasts %d, listed %d", rep.ID, i, listed[i].TS.Duration, tl[i].D)
					}
				}
			}
			inProgress := !listed[len(listed)-1].TS.Complete
			if inProgress != (rep.Template.Offset != "") || inProgress && rep.Template.Complete != "false" {
				t.Fatalf("%s: in progress %v, availabilityTimeOffset %q", rep.ID, inProgress, rep.Template.Offset)
			}
			if !live && inProgress {
				t.Fatalf("%s: an ended manifest lists a segment in progress", rep.ID)
			}
		}
		if live != strings.Contains(body, "minimumUpdatePeriod") {
			t.Fatalf("minimumUpdatePeriod in a live manifest only:\n%s", body)
		}
	}
	check(true)
	src.End(t)
	check(false)
}
