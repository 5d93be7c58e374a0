package webrtc

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
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
	// adm is the session's slot; pending (under s.mu) until it connects.
	adm     *admission
	pending bool
	offered time.Time
	silent  bool // ICE disconnected: not a viewer unless it comes back

	// shift is stream time minus the viewer's own timeline, fixed once the
	// viewer is at the live edge (-1 before), so audio lines up with video.
	shift atomic.Int64

	// The tracks' RTP clocks: both count the viewer's timeline from their
	// own random base.
	vSSRC, aSSRC uint32
	vBase, aBase uint32
	vSent, aSent counts
	clockMu      sync.Mutex
	clockV       time.Duration // the viewer time of the last video frame sent
	clockWall    time.Time     // the wall-clock time that frame stands for
	clockSet     bool

	// sent keeps the last video packets for retransmission on NACK.
	sentMu sync.Mutex
	sent   [historySize]sentPacket
}

// historySize is how many video packets a viewer can ask again for: at
// 2.5 Mbit/s about a second. The payloads are the stream's, shared by all
// viewers; a viewer holds only their headers.
const historySize = 256

type sentPacket struct {
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
}

// payloads is a video unit cut into RTP payloads, once for all viewers.
func payloads(u *stream.Unit) [][]byte {
	return u.Derived(func() any {
		annexB := make([]byte, 0, u.Size()+4*len(u.NALUs))
		for _, n := range u.NALUs {
			annexB = append(annexB, 0, 0, 0, 1)
			annexB = append(annexB, n...)
		}
		return (&codecs.H264Payloader{}).Payload(mtu, annexB)
	}).([][]byte)
}

// readVideoRTCP answers the viewer's NACKs from the history.
func (ss *session) readVideoRTCP(sender *webrtc.RTPSender) {
	for {
		pkts, _, err := sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			nack, ok := p.(*rtcp.TransportLayerNack)
			if !ok {
				continue
			}
			for _, pair := range nack.Nacks {
				for _, seq := range pair.PacketList() {
					ss.sentMu.Lock()
					sp := ss.sent[seq%historySize]
					ss.sentMu.Unlock()
					if sp.payload == nil || sp.seq != seq {
						continue // too old
					}
					pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: sp.marker, SequenceNumber: sp.seq, Timestamp: sp.ts}, Payload: sp.payload}
					if ss.video.WriteRTP(pkt) != nil {
						return
					}
				}
			}
		}
	}
}

// counts are a track's packets and payload bytes sent, for sender reports.
type counts struct{ packets, octets atomic.Uint32 }

func (c *counts) add(payload int) {
	c.packets.Add(1)
	c.octets.Add(uint32(payload))
}

// rtpTime is a track's RTP time at viewer time v.
func rtpTime(base uint32, v time.Duration, rate int64) uint32 {
	return base + uint32(v.Microseconds()*rate/1e6)
}

const mtu = 1200

func (s *Server) newSession(addr, streamID string, hub *stream.Hub, tracks *stream.Tracks, offer string) (*session, string, error) {
	pli, err := profileFor(offer, tracks.Video.Profile)
	if err != nil {
		return nil, "", err
	}
	adm, err := s.admit(addr, streamID)
	if err != nil {
		return nil, "", err
	}

	var iceServers []webrtc.ICEServer
	if len(s.cfg.STUN) > 0 {
		iceServers = []webrtc.ICEServer{{URLs: s.cfg.STUN}}
	}
	pc, err := s.api.NewPeerConnection(webrtc.Configuration{ICEServers: iceServers})
	if err != nil {
		adm.release()
		return nil, "", err
	}
	ss := &session{s: s, id: newID(), streamID: streamID, hub: hub, pc: pc, connected: make(chan struct{}),
		vBase: randUint32(), aBase: randUint32(), adm: adm, pending: true, offered: time.Now()}
	ss.shift.Store(-1)
	ss.ctx, ss.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*session, string, error) {
		pc.Close()
		ss.cancel()
		adm.release()
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
	go ss.readVideoRTCP(sender)
	ss.vSSRC = ssrcOf(sender)
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
			ss.aSSRC = ssrcOf(asender)
		}
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			ss.once.Do(func() {
				s.mu.Lock()
				ss.pending = false
				adm.connectedLocked()
				s.earnLocked(adm.addr)
				s.mu.Unlock()
				close(ss.connected)
			})
			s.mu.Lock()
			ss.silent = false // back after a silence
			s.mu.Unlock()
		case webrtc.PeerConnectionStateDisconnected:
			s.mu.Lock()
			ss.silent = true
			s.mu.Unlock()
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
	case <-time.After(gatherTimeout):
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

func ssrcOf(s *webrtc.RTPSender) uint32 {
	if enc := s.GetParameters().Encodings; len(enc) > 0 {
		return uint32(enc[0].SSRC)
	}
	return 0
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
	pending := ss.pending
	if ok {
		delete(s.sessions, ss.id)
		ss.adm.releaseLocked()
	}
	s.mu.Unlock()
	ss.pc.Close()
	switch {
	case ok && pending:
		s.log.Info("webrtc viewer never connected", "stream", ss.streamID, "session", ss.id, "after", time.Since(ss.offered).Round(time.Millisecond))
	case ok:
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
	case <-time.After(ss.s.cfg.PendingTimeout):
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
	wg.Add(1)
	go func() {
		defer wg.Done()
		ss.sendReports()
	}()
	ss.sendVideo(r)
}

// tick records that the video frame at viewer time v went out, standing
// for the wall-clock time wall.
func (ss *session) tick(v time.Duration, wall time.Time) {
	ss.clockMu.Lock()
	ss.clockV, ss.clockWall, ss.clockSet = v, wall, true
	ss.clockMu.Unlock()
}

// sendReports sends RTCP sender reports for both tracks from one mapping of
// the viewer's timeline to the wall clock: the time each live frame reached
// glasscast. Audio comes out of the transcoder tens of milliseconds after
// its video; reports made from send times would tell the browser the audio
// was captured that much later, and it would play it that much late.
func (ss *session) sendReports() {
	t := time.NewTimer(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ss.ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(time.Second)
		ss.clockMu.Lock()
		v, wall, set := ss.clockV, ss.clockWall, ss.clockSet
		ss.clockMu.Unlock()
		if !set {
			continue
		}
		now := time.Now()
		v += now.Sub(wall)
		ntp := ntpStamp(now)
		pkts := []rtcp.Packet{&rtcp.SenderReport{SSRC: ss.vSSRC, NTPTime: ntp, RTPTime: rtpTime(ss.vBase, v, 90000),
			PacketCount: ss.vSent.packets.Load(), OctetCount: ss.vSent.octets.Load()}}
		if ss.audio != nil && ss.shift.Load() >= 0 {
			pkts = append(pkts, &rtcp.SenderReport{SSRC: ss.aSSRC, NTPTime: ntp, RTPTime: rtpTime(ss.aBase, v, 48000),
				PacketCount: ss.aSent.packets.Load(), OctetCount: ss.aSent.octets.Load()})
		}
		if err := ss.pc.WriteRTCP(pkts); err != nil && ss.ctx.Err() == nil {
			ss.s.log.Debug("webrtc: sender report", "session", ss.id, "err", err)
		}
	}
}

// ntpStamp is t as a 64-bit NTP timestamp.
func ntpStamp(t time.Time) uint64 {
	const unixToNTP = 2208988800
	sec := uint64(t.Unix() + unixToNTP)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// sendVideo packetizes H.264 and writes it. The viewer's timeline v starts
// at the cached keyframe; cached frames advance it by catchUpStep each and
// go out that far apart, so the browser plays them quickly and reaches the
// live edge; live frames advance it by their real spacing.
func (ss *session) sendVideo(r *stream.Reader) {
	seq := uint16(randUint32())
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
		if catching {
			ss.tick(v, time.Now())
		} else {
			ss.tick(v, u.Arrival)
		}
		ts := rtpTime(ss.vBase, v, 90000)
		ps := payloads(u)
		for i, p := range ps {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: i == len(ps)-1, SequenceNumber: seq, Timestamp: ts}, Payload: p}
			ss.sentMu.Lock()
			ss.sent[seq%historySize] = sentPacket{seq: seq, ts: ts, marker: pkt.Marker, payload: p}
			ss.sentMu.Unlock()
			seq++
			if err := ss.video.WriteRTP(pkt); err != nil {
				return
			}
			ss.vSent.add(len(p))
			ss.s.bytesOut.Add(uint64(len(p)))
		}
	}
}

// sendAudio writes the transcoder's Opus once the video is live, on the
// same timeline.
func (ss *session) sendAudio(ch <-chan opusPacket) {
	seq := uint16(randUint32())
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
			ts := rtpTime(ss.aBase, at, 48000)
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: false, SequenceNumber: seq, Timestamp: ts}, Payload: p.data}
			seq++
			if err := ss.audio.WriteRTP(pkt); err != nil {
				return
			}
			ss.aSent.add(len(p.data))
			ss.s.bytesOut.Add(uint64(len(p.data)))
		}
	}
}
