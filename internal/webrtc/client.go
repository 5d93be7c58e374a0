package webrtc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/glasscast/glasscast/internal/sei"
)

// Frame is a video frame a Client received.
type Frame struct {
	Received time.Time
	Sent     time.Time // the source's SEI stamp; zero when the frame has none
	RTPTime  uint32
	Key      bool
	Size     int
}

// AudioPacket is an Opus packet a Client received.
type AudioPacket struct {
	Received time.Time
	RTPTime  uint32
	Payload  []byte
}

// SenderReport is an RTCP sender report a Client received: the server's
// mapping of a track's RTP time to wall-clock time, by which a player
// synchronises audio with video.
type SenderReport struct {
	Video    bool
	NTP      time.Time
	RTPTime  uint32
	Received time.Time
}

// Options are a Client's handlers, which receive what it gets (each may be
// nil; they are called from the client's goroutines, one per track), and
// its interceptors.
type Options struct {
	Frame        func(Frame)
	Audio        func(AudioPacket)
	SenderReport func(SenderReport)
	// Interceptors act on the RTP and RTCP, the first nearest the network
	// (tests lose packets and send NACKs with them). They see packets after
	// SRTP, whose replay protection would refuse the retransmission of a
	// packet one of them dropped: with interceptors, it is off.
	Interceptors []interceptor.Factory
	// UDP, when set, is the only socket ICE uses: closing it makes the
	// viewer vanish without a word, as a closed laptop does.
	UDP net.PacketConn
	// HTTP, when set, makes the WHEP requests (from a chosen address, say).
	HTTP *http.Client
	// RetryBusy offers again, as a player does, when the server answers
	// 429 or 503 with Retry-After: after that long, until ctx ends.
	RetryBusy bool
}

// Client is a WHEP viewer in Go: the tests and the load tool watch streams
// with it and read the source's send times out of the frames.
type Client struct {
	pc       *webrtc.PeerConnection
	location string

	h      Options
	once   sync.Once
	tracks sync.WaitGroup
}

// Dial offers to watch the stream at a WHEP URL.
func Dial(ctx context.Context, whepURL string, h Options) (*Client, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	if h.UDP != nil {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, h.UDP))
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	reg := &interceptor.Registry{}
	for _, f := range h.Interceptors {
		reg.Add(f)
	}
	if len(h.Interceptors) > 0 {
		se.DisableSRTPReplayProtection(true)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &Client{pc: pc, h: h}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			pc.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		video := t.Kind() == webrtc.RTPCodecTypeVideo
		c.tracks.Add(2)
		go func() {
			defer c.tracks.Done()
			if video {
				c.readVideo(t)
			} else {
				c.readAudio(t)
			}
		}()
		go func() {
			defer c.tracks.Done()
			c.readRTCP(r, video)
		}()
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		pc.Close()
		return nil, err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		pc.Close()
		return nil, err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		pc.Close()
		return nil, ctx.Err()
	}
	hc := h.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	var resp *http.Response
	var answer []byte
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, whepURL, strings.NewReader(pc.LocalDescription().SDP))
		if err != nil {
			pc.Close()
			return nil, err
		}
		req.Header.Set("Content-Type", "application/sdp")
		resp, err = hc.Do(req)
		if err != nil {
			pc.Close()
			return nil, err
		}
		answer, _ = io.ReadAll(io.LimitReader(resp.Body, MaxOfferBytes))
		resp.Body.Close()
		wait, busy := retryAfter(resp)
		if resp.StatusCode == http.StatusCreated || !h.RetryBusy || !busy {
			break
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			pc.Close()
			return nil, ctx.Err()
		}
	}
	if resp.StatusCode != http.StatusCreated {
		pc.Close()
		return nil, &HTTPError{Status: resp.StatusCode, Body: string(bytes.TrimSpace(answer))}
	}
	if loc, err := url.Parse(resp.Header.Get("Location")); err == nil {
		base, _ := url.Parse(whepURL)
		c.location = base.ResolveReference(loc).String()
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		pc.Close()
		return nil, err
	}
	return c, nil
}

// retryAfter says how long a busy server (429, 503) asked to be left
// alone; false for another answer.
func retryAfter(resp *http.Response) (time.Duration, bool) {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0, false
	}
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || secs < 0 || secs > 60 {
		return 0, false
	}
	return time.Duration(secs) * time.Second, true
}

// HTTPError is a WHEP endpoint's refusal.
type HTTPError struct {
	Status int
	Body   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("whep: %d %s", e.Status, e.Body) }

// Location is the session's URL.
func (c *Client) Location() string { return c.location }

// Connected waits for the connection.
func (c *Client) Connected(ctx context.Context) error {
	ch := make(chan struct{})
	var once sync.Once
	c.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(ch) })
		}
	})
	if c.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) readVideo(t *webrtc.TrackRemote) {
	var frame []byte
	var depack codecs.H264Packet
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		data, err := depack.Unmarshal(pkt.Payload)
		if err != nil {
			continue
		}
		frame = append(frame, data...)
		if !pkt.Marker {
			continue
		}
		f := Frame{Received: time.Now(), RTPTime: pkt.Timestamp, Size: len(frame)}
		for _, n := range splitAnnexB(frame) {
			if len(n) == 0 {
				continue
			}
			if n[0]&0x1f == 5 {
				f.Key = true
			}
			if ts, ok := sei.Parse(n); ok {
				f.Sent = ts
			}
		}
		frame = frame[:0]
		if c.h.Frame != nil {
			c.h.Frame(f)
		}
	}
}

func (c *Client) readAudio(t *webrtc.TrackRemote) {
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		if c.h.Audio != nil {
			c.h.Audio(AudioPacket{Received: time.Now(), RTPTime: pkt.Timestamp, Payload: bytes.Clone(pkt.Payload)})
		}
	}
}

func (c *Client) readRTCP(r *webrtc.RTPReceiver, video bool) {
	for {
		pkts, _, err := r.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && c.h.SenderReport != nil {
				c.h.SenderReport(SenderReport{Video: video, NTP: ntpTime(sr.NTPTime), RTPTime: sr.RTPTime, Received: time.Now()})
			}
		}
	}
}

// ntpTime converts a 64-bit NTP timestamp.
func ntpTime(t uint64) time.Time {
	const unixToNTP = 2208988800
	sec := int64(t>>32) - unixToNTP
	frac := int64(t & 0xffffffff)
	return time.Unix(sec, frac*1e9>>32)
}

// splitAnnexB cuts a byte stream at its start codes.
func splitAnnexB(b []byte) [][]byte {
	var out [][]byte
	for {
		i := bytes.Index(b, []byte{0, 0, 1})
		if i < 0 {
			if len(b) > 0 {
				out = append(out, b)
			}
			return out
		}
		if i > 0 {
			out = append(out, bytes.TrimRight(b[:i], "\x00"))
		}
		b = b[i+3:]
	}
}

// Close ends the session (DELETE) and the connection.
func (c *Client) Close() error {
	var err error
	c.once.Do(func() {
		if c.location != "" {
			req, _ := http.NewRequest(http.MethodDelete, c.location, nil)
			if resp, e := http.DefaultClient.Do(req); e == nil {
				resp.Body.Close()
			} else {
				err = e
			}
		}
		err = errors.Join(err, c.pc.Close())
		c.tracks.Wait()
	})
	return err
}
