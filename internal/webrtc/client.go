package webrtc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

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
	Size     int
}

// Client is a WHEP viewer in Go: the tests and the load tool watch streams
// with it and read the source's send times out of the frames.
type Client struct {
	pc       *webrtc.PeerConnection
	location string

	onFrame func(Frame)
	onAudio func(AudioPacket)
	once    sync.Once
	tracks  sync.WaitGroup
}

// Dial offers to watch the stream at a WHEP URL. onFrame and onAudio are
// called from the client's goroutines.
func Dial(ctx context.Context, whepURL string, onFrame func(Frame), onAudio func(AudioPacket)) (*Client, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	c := &Client{pc: pc, onFrame: onFrame, onAudio: onAudio}
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := pc.AddTransceiverFromKind(kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			pc.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.tracks.Add(1)
		go func() {
			defer c.tracks.Done()
			if t.Kind() == webrtc.RTPCodecTypeVideo {
				c.readVideo(t)
			} else {
				c.readAudio(t)
			}
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
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, whepURL, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		pc.Close()
		return nil, err
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		pc.Close()
		return nil, err
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, MaxOfferBytes))
	resp.Body.Close()
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
		if c.onFrame != nil {
			c.onFrame(f)
		}
	}
}

func (c *Client) readAudio(t *webrtc.TrackRemote) {
	for {
		pkt, _, err := t.ReadRTP()
		if err != nil {
			return
		}
		if c.onAudio != nil {
			c.onAudio(AudioPacket{Received: time.Now(), RTPTime: pkt.Timestamp, Size: len(pkt.Payload)})
		}
	}
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
