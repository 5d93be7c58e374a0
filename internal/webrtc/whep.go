// Package webrtc serves live streams to browsers over WebRTC, with WHEP
// (the WebRTC-HTTP egress protocol): POST an SDP offer to /whep/{id}, get the
// answer and a session URL to DELETE when done.
//
// H.264 goes out as the glasses sent it; AAC is turned into Opus by one
// Debian ffmpeg per stream, shared by its viewers and running only while it
// has some (without ffmpeg, viewers get video only). A new viewer starts at
// the cached keyframe at once and is brought to the live edge by sending the
// cached frames faster than real time, stamped to play back quickly, so it
// neither waits for the next keyframe nor stays a GOP behind. ICE uses host
// candidates on one UDP port and ICE-TCP on one TCP port.
package webrtc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/stream"
)

// Config sets the server up. Zero fields take the defaults.
type Config struct {
	// UDP and TCP are the addresses of the ICE ports (both ":8189" by default).
	UDP string
	TCP string
	// PublicIPs are announced instead of the host's own addresses (1:1 NAT).
	PublicIPs []string
	// STUN servers, as stun:host:port URLs.
	STUN []string
	// FFmpeg is the path of the ffmpeg that makes Opus; "" for none.
	FFmpeg string
	// Loopback includes loopback candidates (for tests on one machine).
	Loopback bool
	// MaxViewers caps the WebRTC sessions of the server, connected or not
	// (2000).
	MaxViewers int
	// PendingPerAddr and PendingPerStream cap the sessions not connected
	// yet from one client address (an IPv6 /64 counts as one) and of one
	// stream (8, and MaxViewers/20 but at least 16). An address whose
	// sessions connect earns more: two for each one that connected in the
	// last minute, up to 64 in all (an office or a balancer's audience
	// starting together gets in; offers that never connect earn nothing).
	PendingPerAddr, PendingPerStream int
	// PendingTimeout is how long a session may take to connect (8 s).
	PendingTimeout time.Duration
}

// Lookup finds the hub of a stream that can be watched.
type Lookup func(id string) (*stream.Hub, bool)

// Server is the WHEP endpoint.
type Server struct {
	cfg    Config
	log    *slog.Logger
	lookup Lookup
	api    *webrtc.API
	udp    net.PacketConn
	tcp    net.Listener
	ffmpeg string

	mu          sync.Mutex
	closed      bool
	sessions    map[string]*session
	transcoders map[*stream.Hub]*transcoder
	wg          sync.WaitGroup
	// Admission: every session holds a slot from its offer on (slots);
	// until it connects it also counts against its address and stream.
	slots         int
	pendingAddr   map[string]int
	pendingStream map[string]int
	// earned is, by client address, its sessions that connected lately.
	earned map[string]earned
	// bytesOut counts the media payload bytes sent to every viewer.
	bytesOut atomic.Uint64
}

// BytesSent is the media payload sent to WebRTC viewers so far.
func (s *Server) BytesSent() uint64 { return s.bytesOut.Load() }

// Counts says how many WebRTC sessions are connected and how many are
// still connecting.
func (s *Server) Counts() (connected, connecting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		if ss.pending {
			connecting++
		} else if !ss.silent {
			connected++
		}
	}
	return connected, connecting
}

// H.264 profiles offered to browsers: constrained baseline, baseline, main,
// high. The stream's own goes out whatever the negotiated one says; only the
// profile byte matters for a match.
var h264Profiles = []struct {
	pt  webrtc.PayloadType
	pli string
}{{102, "42e01f"}, {104, "42001f"}, {106, "4d001f"}, {108, "64001f"}}

// New binds the ICE ports and builds the WebRTC stack.
func New(cfg Config, lookup Lookup, log *slog.Logger) (*Server, error) {
	if cfg.UDP == "" {
		cfg.UDP = ":8189"
	}
	if cfg.TCP == "" {
		cfg.TCP = ":8189"
	}
	if cfg.MaxViewers <= 0 {
		cfg.MaxViewers = 2000
	}
	if cfg.PendingPerAddr <= 0 {
		cfg.PendingPerAddr = 8
	}
	if cfg.PendingPerStream <= 0 {
		cfg.PendingPerStream = max(16, cfg.MaxViewers/20)
	}
	if cfg.PendingTimeout <= 0 {
		cfg.PendingTimeout = 8 * time.Second
	}
	s := &Server{cfg: cfg, log: log, lookup: lookup, sessions: map[string]*session{}, transcoders: map[*stream.Hub]*transcoder{},
		pendingAddr: map[string]int{}, pendingStream: map[string]int{}, earned: map[string]earned{}}
	s.ffmpeg = cfg.FFmpeg
	if s.ffmpeg == "" {
		log.Warn("webrtc: no ffmpeg to turn AAC into Opus: WebRTC viewers get video only")
	}

	me := &webrtc.MediaEngine{}
	for _, p := range h264Profiles {
		err := me.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
				SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + p.pli},
			PayloadType: p.pt,
		}, webrtc.RTPCodecTypeVideo)
		if err != nil {
			return nil, err
		}
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	// NACKs are answered from each session's history and sender reports
	// are the session's own (see readVideoRTCP and sendReports): no
	// interceptors.
	reg := &interceptor.Registry{}
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	me.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)

	var err error
	s.udp, err = net.ListenPacket("udp", cfg.UDP)
	if err != nil {
		return nil, fmt.Errorf("webrtc udp: %w", err)
	}
	s.tcp, err = net.Listen("tcp", cfg.TCP)
	if err != nil {
		s.udp.Close()
		return nil, fmt.Errorf("webrtc tcp: %w", err)
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.Writer = io.Discard
	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICEUDPMux(webrtc.NewICEUDPMux(lf.NewLogger("udp"), s.udp))
	se.SetICETCPMux(webrtc.NewICETCPMux(lf.NewLogger("tcp"), s.tcp, 8))
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6})
	se.SetIncludeLoopbackCandidate(cfg.Loopback)
	// A viewer that goes silent (a closed laptop, a lost network) is not
	// counted after 3 s and is gone after 5 s; browsers answer the 1 s
	// keep-alives and send receiver reports, so a live one never is.
	se.SetICETimeouts(3*time.Second, 2*time.Second, time.Second)
	if len(cfg.PublicIPs) > 0 {
		se.SetNAT1To1IPs(cfg.PublicIPs, webrtc.ICECandidateTypeHost)
	}
	s.api = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	return s, nil
}

// UDPAddr and TCPAddr are the bound ICE addresses.
func (s *Server) UDPAddr() net.Addr { return s.udp.LocalAddr() }

// TCPAddr is the bound ICE-TCP address.
func (s *Server) TCPAddr() net.Addr { return s.tcp.Addr() }

// Viewers counts the connected WebRTC sessions of a stream's hub: an offer
// that never connects is nobody watching.
func (s *Server) Viewers(h *stream.Hub) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ss := range s.sessions {
		if ss.hub == h && !ss.pending && !ss.silent {
			n++
		}
	}
	return n
}

// admission is a session's claim on the server's capacity, from its offer
// until it ends.
type admission struct {
	s        *Server
	addr     string
	streamID string
	pending  bool // counted against addr and streamID
}

// Admission refusals.
var (
	errFull          = errors.New("the server has as many WebRTC viewers as it takes")
	errAddrPending   = errors.New("too many WebRTC sessions from this address are still connecting")
	errStreamPending = errors.New("too many WebRTC sessions of this stream are still connecting")
)

// admit takes a slot for an offer from addr to streamID, or says why not.
// Checking and taking happen under one lock, so the caps hold however many
// offers arrive at once.
func (s *Server) admit(addr, streamID string) (*admission, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed || s.slots >= s.cfg.MaxViewers:
		return nil, errFull
	case s.pendingAddr[addr] >= s.pendingCapLocked(addr):
		return nil, errAddrPending
	case s.pendingStream[streamID] >= s.cfg.PendingPerStream:
		return nil, errStreamPending
	}
	s.slots++
	s.pendingAddr[addr]++
	s.pendingStream[streamID]++
	return &admission{s: s, addr: addr, streamID: streamID, pending: true}, nil
}

// earned counts an address's sessions that connected, over a minute
// from the last one.
type earned struct {
	n    int
	last time.Time
}

const (
	earnWindow   = time.Minute
	earnPerConn  = 2
	maxPerAddr   = 64
	maxEarnAddrs = 100_000 // addresses remembered at once
)

// pendingCapLocked is how many sessions addr may have connecting now.
func (s *Server) pendingCapLocked(addr string) int {
	e, ok := s.earned[addr]
	if !ok || time.Since(e.last) > earnWindow {
		return s.cfg.PendingPerAddr
	}
	return min(maxPerAddr, max(s.cfg.PendingPerAddr, s.cfg.PendingPerAddr+earnPerConn*e.n))
}

// earnLocked credits addr with a session that connected.
func (s *Server) earnLocked(addr string) {
	e := s.earned[addr]
	if time.Since(e.last) > earnWindow {
		e.n = 0
	}
	e.n, e.last = min(e.n+1, maxPerAddr), time.Now()
	if _, ok := s.earned[addr]; !ok && len(s.earned) >= maxEarnAddrs {
		for a, old := range s.earned { // forget the stale, or else one at random
			if time.Since(old.last) > earnWindow {
				delete(s.earned, a)
			}
		}
		if len(s.earned) >= maxEarnAddrs {
			for a := range s.earned {
				delete(s.earned, a)
				break
			}
		}
	}
	s.earned[addr] = e
}

// connectedLocked stops counting the session as pending; s.mu is held.
func (a *admission) connectedLocked() {
	if !a.pending {
		return
	}
	a.pending = false
	s := a.s
	if s.pendingAddr[a.addr]--; s.pendingAddr[a.addr] <= 0 {
		delete(s.pendingAddr, a.addr)
	}
	if s.pendingStream[a.streamID]--; s.pendingStream[a.streamID] <= 0 {
		delete(s.pendingStream, a.streamID)
	}
}

// releaseLocked gives the slot back; s.mu is held. Once only.
func (a *admission) releaseLocked() {
	a.connectedLocked()
	a.s.slots--
}

func (a *admission) release() {
	a.s.mu.Lock()
	a.releaseLocked()
	a.s.mu.Unlock()
}

// MaxOfferBytes bounds an SDP offer.
const MaxOfferBytes = 64 << 10

// Register adds /whep/{id} and /whep/{id}/{session}.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("/whep/{id}", s.offer)
	mux.HandleFunc("/whep/{id}/{session}", s.sessionHandler)
}

func cors(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "POST, DELETE, PATCH, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization, If-Match")
	h.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Retry-After")
}

func (s *Server) offer(w http.ResponseWriter, r *http.Request) {
	cors(w)
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	hub, ok := s.lookup(r.PathValue("id"))
	if !ok {
		http.Error(w, "no such stream", http.StatusNotFound)
		return
	}
	tracks := hub.Tracks()
	if tracks == nil || tracks.Video == nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "the stream has no video yet", http.StatusServiceUnavailable)
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
		http.Error(w, "the offer must be application/sdp", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxOfferBytes))
	if err != nil {
		http.Error(w, "the offer is too large", http.StatusRequestEntityTooLarge)
		return
	}
	ss, answer, err := s.newSession(auth.ClientAddr(r.RemoteAddr), r.PathValue("id"), hub, tracks, string(body))
	switch {
	case errors.Is(err, errAddrPending):
		w.Header().Set("Retry-After", "1")
		http.Error(w, err.Error(), http.StatusTooManyRequests)
		return
	case errors.Is(err, errFull), errors.Is(err, errStreamPending):
		w.Header().Set("Retry-After", "2")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, "bad offer: "+err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/whep/"+r.PathValue("id")+"/"+ss.id)
	w.Header().Set("ETag", `"`+ss.id+`"`)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

// session is the stream's session by its id; nil when there is no such
// session here.
func (s *Server) session(streamID, id string) *session {
	s.mu.Lock()
	ss := s.sessions[id]
	s.mu.Unlock()
	if ss == nil || ss.streamID != streamID {
		return nil
	}
	return ss
}

// HasSession says whether the stream's session by that id is here.
func (s *Server) HasSession(streamID, id string) bool { return s.session(streamID, id) != nil }

// EndSession ends the stream's session by its id, as a DELETE of its URL
// does; false when there is no such session here.
func (s *Server) EndSession(streamID, id string) bool {
	ss := s.session(streamID, id)
	if ss != nil {
		ss.close()
	}
	return ss != nil
}

func (s *Server) sessionHandler(w http.ResponseWriter, r *http.Request) {
	cors(w)
	ss := s.session(r.PathValue("id"), r.PathValue("session"))
	if ss == nil {
		http.Error(w, "no such session", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		ss.close()
		w.WriteHeader(http.StatusOK)
	case http.MethodPatch:
		// Candidates come in the offer and answer: no trickle.
		w.Header().Set("Allow", "DELETE, OPTIONS")
		http.Error(w, "trickle ICE is not supported", http.StatusMethodNotAllowed)
	default:
		w.Header().Set("Allow", "DELETE, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// profileFor picks, from the offer, the H.264 format to answer with: the
// stream's own profile when offered, else any with packetization mode 1.
func profileFor(offer string, profile uint8) (string, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal([]byte(offer)); err != nil {
		return "", err
	}
	want := fmt.Sprintf("%02x", profile)
	var any string
	for _, p := range h264Profiles {
		for _, m := range sd.MediaDescriptions {
			for _, a := range m.Attributes {
				if a.Key == "fmtp" && strings.Contains(a.Value, "packetization-mode=1") && strings.Contains(strings.ToLower(a.Value), "profile-level-id="+p.pli[:4]) {
					if p.pli[:2] == want {
						return p.pli, nil
					}
					if any == "" {
						any = p.pli
					}
				}
			}
		}
	}
	if any == "" {
		return "", errors.New("the offer has no H.264 with packetization-mode=1")
	}
	return any, nil
}

func newID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// CloseStream ends every session watching stream id (its playback tokens
// were revoked) and returns how many there were.
func (s *Server) CloseStream(id string) int {
	s.mu.Lock()
	var list []*session
	for _, ss := range s.sessions {
		if ss.streamID == id {
			list = append(list, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range list {
		ss.close()
	}
	return len(list)
}

// Close ends every session and transcoder and closes the ICE ports.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	all := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		all = append(all, ss)
	}
	trs := make([]*transcoder, 0, len(s.transcoders))
	for _, t := range s.transcoders {
		trs = append(trs, t)
	}
	s.mu.Unlock()
	for _, ss := range all {
		ss.close()
	}
	for _, t := range trs {
		t.close()
	}
	s.wg.Wait()
	s.udp.Close()
	s.tcp.Close()
}

// transcoderFor returns the stream's Opus transcoder, nil without ffmpeg.
func (s *Server) transcoderFor(h *stream.Hub) *transcoder {
	if s.ffmpeg == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.transcoders[h]
	if t == nil {
		t = &transcoder{ffmpeg: s.ffmpeg, hub: h, log: s.log, subs: map[chan opusPacket]struct{}{}}
		s.transcoders[h] = t
	}
	return t
}

// gatherTimeout bounds the ICE gathering of an answer.
const gatherTimeout = 15 * time.Second
