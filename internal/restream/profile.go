package restream

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/stream"
)

// Profile is a platform's ingest rules. An output to a platform is passed
// through when the source keeps every rule, and otherwise transcoded: only
// the track that breaks one.
type Profile struct {
	Name string
	// Hosts are the ingest host suffixes that name the platform.
	Hosts []string
	// KeyInterval is the longest keyframe interval accepted.
	KeyInterval time.Duration
	// MinVideoKbps and MaxVideoKbps bound the video bitrate (0: no bound).
	MinVideoKbps, MaxVideoKbps int
	// MinAudioKbps is the least AAC bitrate; SampleRates the rates accepted.
	MinAudioKbps int
	SampleRates  []int
	// TargetVideoKbps is the bitrate a transcode aims at (capped at
	// MaxVideoKbps); the audio is transcoded to 128 kbit/s stereo.
	TargetVideoKbps int
}

// Profiles are the known platforms, by name. The numbers are each
// platform's published ingest recommendations for 720p to 1080p at 30 fps;
// docs/restream.md has the table.
var Profiles = map[string]*Profile{
	"youtube": {Name: "youtube", Hosts: []string{"youtube.com"}, KeyInterval: 2 * time.Second,
		MinVideoKbps: 1500, MaxVideoKbps: 9000, MinAudioKbps: 128, SampleRates: []int{44100, 48000}, TargetVideoKbps: 4000},
	"twitch": {Name: "twitch", Hosts: []string{"twitch.tv", "live-video.net"}, KeyInterval: 2 * time.Second,
		MaxVideoKbps: 6000, MinAudioKbps: 128, SampleRates: []int{44100, 48000}, TargetVideoKbps: 4500},
	"x": {Name: "x", Hosts: []string{"pscp.tv", "periscope.tv", "x.com", "twitter.com"}, KeyInterval: 2 * time.Second,
		MaxVideoKbps: 9000, MinAudioKbps: 128, SampleRates: []int{44100, 48000}, TargetVideoKbps: 4000},
	"facebook": {Name: "facebook", Hosts: []string{"facebook.com", "fbcdn.net"}, KeyInterval: 2 * time.Second,
		MaxVideoKbps: 6000, MinAudioKbps: 128, SampleRates: []int{44100, 48000}, TargetVideoKbps: 4000},
}

// ProfileFor returns the profile named, or the one whose ingest the URL
// points at; nil for a destination glasscast knows nothing about (passed
// through as it is). name "none" asks for no profile.
func ProfileFor(name, rawURL string) (*Profile, error) {
	switch name {
	case "none":
		return nil, nil
	case "":
	default:
		p, ok := Profiles[strings.ToLower(name)]
		if !ok {
			return nil, fmt.Errorf("unknown profile %q (known: youtube, twitch, x, facebook, none)", name)
		}
		return p, nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil
	}
	host := strings.ToLower(u.Hostname())
	for _, p := range Profiles {
		for _, h := range p.Hosts {
			if host == h || strings.HasSuffix(host, "."+h) {
				return p, nil
			}
		}
	}
	return nil, nil
}

// Violation is one rule the source breaks.
type Violation struct {
	Track string // "video" or "audio"
	Rule  string
}

func (v Violation) String() string { return v.Track + ": " + v.Rule }

// Check lists the rules of p that a source with these stats breaks. Stats
// not measured yet (a keyframe interval before the second keyframe) are not
// judged; callers wait for them.
func (p *Profile) Check(st stream.Stats) []Violation {
	var out []Violation
	t := st.Tracks
	if t == nil {
		return nil
	}
	if t.Video != nil {
		if st.KeyInterval > p.KeyInterval+p.KeyInterval/20 {
			out = append(out, Violation{"video", fmt.Sprintf("a keyframe every %.1f s; %s wants one every %v", st.KeyInterval.Seconds(), p.Name, p.KeyInterval)})
		}
		if st.FrameDurMax > 0 && st.FrameDurMax-st.FrameDurMin > max(3*time.Millisecond, st.FrameDurMin/4) {
			out = append(out, Violation{"video", fmt.Sprintf("a variable frame rate (frames of %v to %v); %s wants a fixed one", st.FrameDurMin, st.FrameDurMax, p.Name)})
		}
		kbps := int((st.Bitrate - st.AudioBitrate) / 1000)
		if p.MinVideoKbps > 0 && kbps > 0 && kbps < p.MinVideoKbps {
			out = append(out, Violation{"video", fmt.Sprintf("%d kbit/s of video; %s wants at least %d", kbps, p.Name, p.MinVideoKbps)})
		}
		if p.MaxVideoKbps > 0 && kbps > p.MaxVideoKbps {
			out = append(out, Violation{"video", fmt.Sprintf("%d kbit/s of video; %s takes at most %d", kbps, p.Name, p.MaxVideoKbps)})
		}
	}
	if a := t.Audio; a != nil {
		ok := false
		for _, r := range p.SampleRates {
			ok = ok || r == a.SampleRate
		}
		if !ok {
			out = append(out, Violation{"audio", fmt.Sprintf("AAC at %d Hz; %s wants 44.1 or 48 kHz", a.SampleRate, p.Name)})
		}
		if kbps := int(st.AudioBitrate / 1000); p.MinAudioKbps > 0 && kbps > 0 && kbps < p.MinAudioKbps-8 {
			out = append(out, Violation{"audio", fmt.Sprintf("AAC at %d kbit/s; %s wants at least %d", kbps, p.Name, p.MinAudioKbps)})
		}
	}
	return out
}

// measured reports whether the stats say enough to be checked.
func measured(st stream.Stats) bool {
	if st.Tracks == nil || st.Bitrate == 0 {
		return false
	}
	if st.Tracks.Video != nil && (st.KeyInterval == 0 || st.FrameDurMax == 0) {
		return false
	}
	return true
}
