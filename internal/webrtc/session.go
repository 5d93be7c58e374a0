package webrtc

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/glasscast/glasscast/internal/stream"
)

// session is one WebRTC viewer.
type session struct {
	s        *Server
	id       string
	streamID string
	hub      *stream.Hub
	pc       *webrtc.PeerConnection
	video    *webrtc.TrackLocalStaticRTP
	audio    *webrtc.TrackLocalStaticRTP
	tr       *transcoder

	ctx       context.Context
	cancel    context.CancelFunc
	connected chan struct{}
	once      sync.Once

	// shift is stream time minus the viewer's own timeline, fixed once the
	// viewer is at the live edge (-1 before), so audio lines up with video.
	shift atomic.Int64
}

const mtu = 1200

func (s *Server) newSession(streamID string, hub *stream.Hub, tracks *stream.Tracks, offer string) (*session, string, error) {
	pli, err := profileFor(offer, tracks.Video.Profile)
	if err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	if s.closed || len(s.sessions) >= s.cfg.MaxViewers {
		s.mu.Unlock()
		return nil, "", errFull
	}
	s.mu.Unlock()

	var iceServers []webrtc.ICEServer
	if len(s.cfg.STUN) > 0 {
		iceServers = []webrtc.ICEServer{{URLs: s.cfg.STUN}}
	}
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: iceServers})
	if err != nil {
		return nil, "", err
	}
	ss := &session{s: s, id: newID(), streamID: streamID, hub: hub, pc: pc, connected: make(chan struct{})}
	ss.shift.Store(-1)
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*session, string, error) {
		pc.Close()
		ss.cancel()
		return nil, "", err
	}
	ss.video, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + pli}, "video", "glasscast")
	if err != nil {
		return fail(err)
	}
	sender, err := pc.AddTrack(ss.video)
	if err != nil {
		return fail(err)
	}
	go drainRTCP(sender)
	if tracks.Audio != nil {
		if ss.tr = s.transcoderFor(hub); ss.tr != nil {
			ss.audio, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "glasscast")
			if err != nil {
				return fail(err)
			}
			asender, err := pc.AddTrack(ss.audio)
			if err != nil {
				return fail(err)
			}
			go drainRTCP(asender)
		}
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			ss.once.Do(func() { close(ss.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go ss.close()
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return fail(err)
	}
	select {
	case <-gathered:
	case <-time.After(waitTimeout):
		return fail(errors.New("ICE gathering did not complete"))
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fail(errFull)
	}
	s.sessions[ss.id] = ss
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		ss.run()
	}()
	s.log.Info("webrtc viewer joined", "stream", streamID, "session", ss.id, "profile", pli, "audio", ss.audio != nil)
	return ss, pc.LocalDescription().SDP, nil
}

// drainRTCP reads what the viewer sends back (reports, NACKs), which the
// interceptors act on.
func drainRTCP(sender *webrtc.RTPSender) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := sender.Read(buf); err != nil {
			return
		}
	}
}

// close ends the session, once.
func (ss *session) close() {
	ss.cancel()
	s := ss.s
	s.mu.Lock()
	_, ok := s.sessions[ss.id]
	delete(s.sessions, ss.id)
	s.mu.Unlock()
	ss.pc.Close()
	if ok {
		s.log.Info("webrtc viewer left", "stream", ss.streamID, "session", ss.id)
	}
}

func randUint32() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// catchUpStep is how far apart the cached frames a new viewer gets are, in
// time sent and in the viewer's timeline: 8x real time at 30 fps.
const catchUpStep = 4 * time.Millisecond

// run sends the stream to the viewer once it is connected.
func (ss *session) run() {
	defer ss.close()
	select {
	case <-ss.connected:
	case <-ss.ctx.Done():
		return
	case <-time.After(waitTimeout):
		ss.s.log.Info("webrtc viewer never connected", "session", ss.id)
		return
	}
	r := ss.hub.NewReader("webrtc "+ss.id, 1024)
	defer r.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	if ss.audio != nil {
		ch, unsubscribe := ss.tr.subscribe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer unsubscribe()
			ss.sendAudio(ch)
		}()
	}
	ss.sendVideo(r)
}

// sendVideo packetizes H.264 and writes it. The viewer's timeline v starts
// at the cached keyframe; cached frames advance it by catchUpStep each and
// go out that far apart, so the browser plays them quickly and reaches the
// live edge; live frames advance it by their real spacing.
func (ss *session) sendVideo(r *stream.Reader) {
	pay := &codecs.H264Payloader{}
	seq := uint16(randUint32())
	base := randUint32()
	var v time.Duration   // viewer time of the last frame
	var last *stream.Unit // last video unit sent
	live := false
	warnedB := false
	pace := time.NewTimer(0)
	defer pace.Stop()
	for {
		u, err := r.Read(ss.ctx)
		if err != nil {
			return
		}
		if u.Kind != stream.KindVideo {
			continue
		}
		if u.PTS != u.DTS && !warnedB {
			warnedB = true
			ss.s.log.Warn("webrtc: the stream has B-frames, which WebRTC cannot carry in order; expect stutter", "stream", ss.streamID)
		}
		catching := !live && r.Len() > 0 && time.Since(u.Arrival) > 50*time.Millisecond
		switch {
		case last == nil:
		case catching:
			v += catchUpStep
			pace.Reset(catchUpStep)
			select {
			case <-pace.C:
			case <-ss.ctx.Done():
				return
			}
		default:
			v += max(u.DTS-last.DTS, time.Millisecond)
		}
		if !catching && !live {
			live = true
			ss.shift.Store(int64(u.DTS - v))
		}
		last = u
		ts := base + uint32(v*90000/time.Second)
		annexB := make([]byte, 0, u.Size()+4*len(u.NALUs))
		for _, n := range u.NALUs {
			annexB = append(annexB, 0, 0, 0, 1)
			annexB = append(annexB, n...)
		}
		payloads := pay.Payload(mtu, annexB)
		for i, p := range payloads {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: i == len(payloads)-1, SequenceNumber: seq, Timestamp: ts}, Payload: p}
			seq++
			if err := ss.video.WriteRTP(pkt); err != nil {
				return
			}
		}
	}
}

// sendAudio writes the transcoder's Opus once the video is live, on the
// same timeline.
func (ss *session) sendAudio(ch <-chan opusPacket) {
	seq := uint16(randUint32())
	base := randUint32()
	for {
		select {
		case <-ss.ctx.Done():
			return
		case p := <-ch:
			shift := ss.shift.Load()
			if shift < 0 {
				continue // video is still catching up
			}
			at := p.at - time.Duration(shift)
			if at < 0 {
				continue
			}
			ts := base + uint32(at*48000/time.Second)
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: false, SequenceNumber: seq, Timestamp: ts}, Payload: p.data}
			seq++
			if err := ss.audio.WriteRTP(pkt); err != nil {
				return
			}
		}
	}
}
