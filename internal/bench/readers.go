package bench

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

	"github.com/glasscast/glasscast/internal/hls"
	"github.com/glasscast/glasscast/internal/sei"
)

// recorder collects per-frame latencies: receipt time minus the send time
// the source stamped into the frame.
type recorder struct {
	mu     sync.Mutex
	lat    []time.Duration
	frames int
	bytes  int64
	errs   int
}

func (r *recorder) fragment(body []byte, received time.Time) {
	var parts fmp4.Parts
	if err := parts.Unmarshal(body); err != nil {
		r.mu.Lock()
		r.errs++
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bytes += int64(len(body))
	for _, p := range parts {
		for _, t := range p.Tracks {
			for _, s := range t.Samples {
				r.frames++
				if sent, ok := sei.FindAVCC(s.Payload); ok {
					r.lat = append(r.lat, received.Sub(sent))
				}
			}
		}
	}
}

func (r *recorder) failed() {
	r.mu.Lock()
	r.errs++
	r.mu.Unlock()
}

// percentiles of the recorded latencies.
type latencySummary struct {
	N                  int
	P50, P95, P99, Max time.Duration
}

func (r *recorder) summary() latencySummary {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarize(r.lat)
}

func summarize(d []time.Duration) latencySummary {
	if len(d) == 0 {
		return latencySummary{}
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return latencySummary{N: len(s), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: s[len(s)-1]}
}

func (l latencySummary) String() string {
	if l.N == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %v  p95 %v  p99 %v  max %v  (%d frames)", ms(l.P50), ms(l.P95), ms(l.P99), ms(l.Max), l.N)
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0, IdleConnTimeout: 30 * time.Second}}

func get(ctx context.Context, url string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := benchClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// llhlsReader plays one track the way a low-latency player does: a blocking
// playlist reload for the part after the newest, then the new parts.
type llhlsReader struct {
	base  string // …/hls/{id}/
	track string
	rec   *recorder // nil: fetch without measuring
}

var partURI = regexp.MustCompile(`#EXT-X-PART:[^\n]*URI="(\w+)-p(\d+)\.m4s"`)

func (r *llhlsReader) run(ctx context.Context) error {
	pl, code, err := get(ctx, r.base+r.track+".m3u8")
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s playlist: %d", r.track, code)
	}
	var next uint64
	first := true
	for ctx.Err() == nil {
		parts := partURI.FindAllSubmatch(pl, -1)
		if len(parts) == 0 {
			return errors.New("a playlist without parts")
		}
		if first {
			// Start at the live edge: the newest part only.
			id, _ := strconv.ParseUint(string(parts[len(parts)-1][2]), 10, 64)
			next, first = id, false
		}
		for _, m := range parts {
			id, _ := strconv.ParseUint(string(m[2]), 10, 64)
			if id < next {
				continue
			}
			body, code, err := get(ctx, fmt.Sprintf("%s%s-p%d.m4s", r.base, r.track, id))
			received := time.Now()
			if err != nil || code != http.StatusOK {
				if ctx.Err() != nil {
					return nil
				}
				if r.rec != nil {
					r.rec.failed()
				}
				continue
			}
			if r.rec != nil {
				r.rec.fragment(body, received)
			}
			next = id + 1
		}
		msn, part := hls.LastPart(string(pl))
		pl, code, err = get(ctx, fmt.Sprintf("%s%s.m3u8?_HLS_msn=%d&_HLS_part=%d", r.base, r.track, msn, part+1))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if code != http.StatusOK {
			pl, _, err = get(ctx, r.base+r.track+".m3u8")
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// dashReader fetches each video segment as soon as the server has it: the
// newest listed one, then each next one (the server holds the request until
// the segment is complete).
type dashReader struct {
	mpd string
	rec *recorder
}

type mpdDoc struct {
	Periods []struct {
		Sets []struct {
			ContentType string `xml:"contentType,attr"`
			Reps        []struct {
				Template struct {
					StartNumber uint64 `xml:"startNumber,attr"`
					Timeline    struct {
						S []struct{} `xml:"S"`
					} `xml:"SegmentTimeline"`
				} `xml:"SegmentTemplate"`
			} `xml:"Representation"`
		} `xml:"AdaptationSet"`
	} `xml:"Period"`
}

func newestVideoNumber(body []byte) (uint64, error) {
	var doc mpdDoc
	if err := xml.Unmarshal(body, &doc); err != nil {
		return 0, err
	}
	for p := len(doc.Periods) - 1; p >= 0; p-- {
		for _, set := range doc.Periods[p].Sets {
			if set.ContentType == "video" && len(set.Reps) > 0 {
				t := set.Reps[0].Template
				if n := len(t.Timeline.S); n > 0 {
					return t.StartNumber + uint64(n) - 1, nil
				}
			}
		}
	}
	return 0, errors.New("no video segments in the manifest")
}

func (r *dashReader) run(ctx context.Context) error {
	base := strings.TrimSuffix(r.mpd, "manifest.mpd")
	body, code, err := get(ctx, r.mpd)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("manifest: %d %v", code, err)
	}
	n, err := newestVideoNumber(body)
	if err != nil {
		return err
	}
	n++ // the newest listed one is old news: measure from the next
	for ctx.Err() == nil {
		seg, code, err := get(ctx, fmt.Sprintf("%svideo-%d.m4s", base, n))
		received := time.Now()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil || code != http.StatusOK {
			r.rec.failed()
			body, _, err = get(ctx, r.mpd)
			if err != nil {
				return err
			}
			if n, err = newestVideoNumber(body); err != nil {
				return err
			}
			continue
		}
		r.rec.fragment(seg, received)
		n++
	}
	return nil
}
