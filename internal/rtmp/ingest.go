// Package rtmp is glasscast's RTMP side: the ingest that takes streams from
// glasses, encoders and the simulator at rtmp://HOST:PORT/live/{streamKey},
// and the URL handling shared with the clients that push RTMP out.
//
// The ingest checks the stream key before it accepts a publish, accepts only
// H.264 and AAC-LC (refusing anything else with a reason the publisher and
// the log both see), and finds the tracks from the stream's metadata and
// configuration packets instead of waiting seconds of media to detect them.
package rtmp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/glasscast/glasscast/internal/clientip"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortmplib"
	"github.com/bluenviron/gortmplib/pkg/amf0"
	"github.com/bluenviron/gortmplib/pkg/message"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"

	"github.com/glasscast/glasscast/internal/stream"
)

// App is the RTMP application publishers use: rtmp://HOST:PORT/live/KEY.
const App = "live"

// Destination is where an admitted publisher's media goes.
type Destination interface {
	// Publish starts a publisher session with the tracks found.
	Publish(t *stream.Tracks) (*stream.Publisher, error)
	// Refuse records why a publisher was turned away after its key was
	// accepted (an unsupported codec, say), for the stream's status.
	Refuse(reason error)
	// ID names the stream in logs.
	ID() string
}

// Authorizer maps a stream key to its destination.
type Authorizer interface {
	// AuthorizePublish returns the destination for key, or an error when the
	// key is unknown or its stream has ended.
	AuthorizePublish(key string) (Destination, error)
}

// Config tunes the ingest. Zero fields take the defaults.
type Config struct {
	// HandshakeTimeout bounds the time from connect to an accepted publish.
	HandshakeTimeout time.Duration
	// TrackTimeout bounds the wait for the tracks' configuration.
	TrackTimeout time.Duration
	// ReadTimeout is how long a publisher may send nothing before it is
	// treated as gone.
	ReadTimeout time.Duration
	// MaxConns caps concurrent connections.
	MaxConns int
	// Throttle, when set, slows down guessing of stream keys.
	Throttle Throttle
	// TLS, when set, makes the listener RTMPS (each connection's handshake
	// runs under HandshakeTimeout, in its own goroutine).
	TLS *tls.Config
	// Proxies are the balancers whose PROXY protocol header (before TLS,
	// with RTMPS) gives a connection's client address; a PROXY header
	// from anyone else is refused.
	Proxies *clientip.Trusted
}

// Throttle counts failed authentications per client address (see
// auth.Throttle).
type Throttle interface {
	Blocked(addr string) time.Duration
	Failed(addr string)
}

func (c *Config) setDefaults() {
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.TrackTimeout <= 0 {
		c.TrackTimeout = 5 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.MaxConns <= 0 {
		c.MaxConns = 1024
	}
}

// Server is the RTMP ingest.
type Server struct {
	cfg  Config
	ln   net.Listener
	auth Authorizer
	log  *slog.Logger

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Listen binds addr. Run serves it.
func Listen(addr string, auth Authorizer, cfg Config, log *slog.Logger) (*Server, error) {
	cfg.setDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rtmp: %w", err)
	}
	return &Server{cfg: cfg, ln: ln, auth: auth, log: log, conns: make(map[net.Conn]struct{})}, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run accepts publishers until ctx ends, then closes every connection and
// returns once all of them are done.
func (s *Server) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, s.close)
	defer stop()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.close()
			s.wg.Wait()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("rtmp: accept: %w", err)
		}
		if !s.track(c) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.serve(c)
		}()
	}
}

// Close stops a server that is not running, or stops Run.
func (s *Server) Close() { s.close() }

func (s *Server) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if len(s.conns) >= s.cfg.MaxConns {
		s.log.Warn("rtmp: too many connections, refusing one", "remote", c.RemoteAddr().String(), "max", s.cfg.MaxConns)
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// errRefused wraps reasons a publisher is turned away for.
var errRefused = errors.New("refused")

func (s *Server) serve(raw net.Conn) {
	raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	nc, err := s.cfg.Proxies.Conn(raw)
	if err != nil {
		s.log.Warn("rtmp: refused a connection", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	if s.cfg.TLS != nil {
		nc = tls.Server(nc, s.cfg.TLS)
	}
	remote := nc.RemoteAddr().String()
	log := s.log.With("remote", remote)

	sc := &gortmplib.ServerConn{RW: nc}
	if err := sc.Initialize(); err != nil {
		log.Debug("rtmp: handshake failed", "err", err)
		return
	}
	if err := sc.AcceptConn(); err != nil {
		log.Debug("rtmp: connect failed", "err", err)
		return
	}
	if !sc.Publish {
		log.Warn("rtmp: refused a play request: glasscast serves viewers over HLS, DASH and WebRTC", "url", redact(sc.URL))
		sendStatus(sc, "error", "NetStream.Play.Failed", "playback over RTMP is not offered")
		return
	}
	key, ok := streamKey(sc.URL)
	if !ok {
		log.Warn("rtmp: refused a publish to an unknown path", "path", redactPath(sc.URL))
		sendStatus(sc, "error", "NetStream.Publish.BadName", "publish to rtmp://HOST/live/STREAM_KEY")
		return
	}
	addr := nc.RemoteAddr().String()
	if s.cfg.Throttle != nil && s.cfg.Throttle.Blocked(addr) > 0 {
		log.Warn("rtmp: refused a publish from an address with too many failed stream keys")
		sendStatus(sc, "error", "NetStream.Publish.BadName", "too many failed stream keys from this address; try again later")
		return
	}
	dest, err := s.auth.AuthorizePublish(key)
	if err != nil {
		if s.cfg.Throttle != nil {
			s.cfg.Throttle.Failed(addr)
		}
		log.Warn("rtmp: refused a publish with a bad stream key", "err", err)
		sendStatus(sc, "error", "NetStream.Publish.BadName", "unknown or ended stream key")
		return
	}
	log = log.With("stream", dest.ID())
	if err := sc.AcceptAction(); err != nil {
		return
	}

	nc.SetDeadline(time.Now().Add(s.cfg.TrackTimeout))
	tracks, pending, err := detectTracks(sc)
	if err != nil {
		if errors.Is(err, errRefused) {
			log.Warn("rtmp: publisher refused", "reason", err)
			dest.Refuse(err)
			sendStatus(sc, "error", "NetStream.Publish.Rejected", err.Error())
		} else {
			log.Info("rtmp: publisher left before its tracks were known", "err", err)
		}
		return
	}
	pub, err := dest.Publish(tracks)
	if err != nil {
		log.Warn("rtmp: publish failed", "err", err)
		sendStatus(sc, "error", "NetStream.Publish.Rejected", err.Error())
		return
	}
	log.Info("rtmp: publishing", "video", describeVideo(tracks.Video), "audio", describeAudio(tracks.Audio))

	// A publisher replaced by a newer one, or a stream ended, is cut off.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-pub.Done():
			nc.Close()
		case <-done:
		}
	}()

	err = s.pump(nc, sc, pub, pending)
	switch {
	case errors.Is(err, errRefused):
		log.Warn("rtmp: publisher refused", "reason", err)
		dest.Refuse(err)
		sendStatus(sc, "error", "NetStream.Publish.Rejected", err.Error())
	case pub.Err() != nil:
		log.Info("rtmp: publisher cut off", "reason", pub.Err())
	default:
		log.Info("rtmp: publisher left", "err", err)
	}
	pub.Close(err)
}

// pump moves media from the connection into the hub until either ends.
func (s *Server) pump(nc net.Conn, sc *gortmplib.ServerConn, pub *stream.Publisher, pending []message.Message) error {
	for _, m := range pending {
		if err := writeMessage(pub, m); err != nil {
			return refusal(err)
		}
	}
	for {
		// Reading may write (acknowledgements): both directions get the deadline.
		nc.SetDeadline(time.Now().Add(s.cfg.ReadTimeout))
		m, err := sc.Read()
		if err != nil {
			return classifyReadError(err)
		}
		if err := checkMessage(m); err != nil {
			return err
		}
		if err := writeMessage(pub, m); err != nil {
			return refusal(err)
		}
	}
}

// refusal makes media the hub would not take (a broken access unit, video
// on a stream without a video track) a refusal the publisher and the
// stream's lastError are told of; a stream that ended or a publisher
// replaced is not one.
func refusal(err error) error {
	if errors.Is(err, stream.ErrClosed) || errors.Is(err, stream.ErrReplaced) || errors.Is(err, errRefused) {
		return err
	}
	return fmt.Errorf("%w: %v", errRefused, err)
}

func writeMessage(pub *stream.Publisher, m message.Message) error {
	switch m := m.(type) {
	case *message.Video:
		switch m.Type {
		case message.VideoTypeConfig:
			if m.AVCConfig == nil {
				return nil
			}
			au := [][]byte{m.AVCConfig.SequenceParameterSets[0].NALUnit, m.AVCConfig.PictureParameterSets[0].NALUnit}
			return pub.WriteVideo(m.DTS+m.PTSDelta, m.DTS, au)
		case message.VideoTypeAU:
			var au h264.AVCC
			if err := au.Unmarshal(m.AU); err != nil {
				if errors.Is(err, h264.ErrAVCCNoNALUs) {
					return nil
				}
				return fmt.Errorf("bad H.264 access unit: %w", err)
			}
			return pub.WriteVideo(m.DTS+m.PTSDelta, m.DTS, au)
		}
	case *message.Audio:
		if m.AACType == message.AudioAACTypeAU {
			return pub.WriteAudio(m.DTS, m.AU)
		}
	}
	return nil
}

// checkMessage refuses media the ingest does not take.
func checkMessage(m message.Message) error {
	switch m := m.(type) {
	case *message.Video:
		if m.Codec != message.CodecH264 {
			return fmt.Errorf("%w: video codec %s is not supported: publish H.264", errRefused, videoCodecName(float64(m.Codec)))
		}
	case *message.Audio:
		if m.Codec != message.CodecMPEG4Audio {
			return fmt.Errorf("%w: audio codec %s is not supported: publish AAC-LC", errRefused, audioCodecName(float64(m.Codec)))
		}
	case *message.VideoExSequenceStart, *message.VideoExCodedFrames, *message.VideoExFramesX,
		*message.VideoExMultitrack, *message.VideoExMetadata:
		return fmt.Errorf("%w: enhanced RTMP video is not supported: publish H.264", errRefused)
	case *message.AudioExSequenceStart, *message.AudioExCodedFrames, *message.AudioExMultitrack,
		*message.AudioExMultichannelConfig:
		return fmt.Errorf("%w: enhanced RTMP audio is not supported: publish AAC-LC", errRefused)
	}
	return nil
}

// classifyReadError turns the reader's complaints about codecs into refusals.
func classifyReadError(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "unsupported video codec") || strings.Contains(msg, "unsupported audio") ||
		strings.Contains(msg, "unsupported video") {
		return fmt.Errorf("%w: %s: publish H.264 and AAC-LC", errRefused, msg)
	}
	return err
}

// maxPending bounds what is held while the tracks are being found.
const maxPending = 512

// detectTracks reads until every track the publisher announced has its
// configuration. It does not wait for seconds of media: the metadata says
// which tracks come, and their configuration packets arrive first.
func detectTracks(sc *gortmplib.ServerConn) (*stream.Tracks, []message.Message, error) {
	var (
		meta       bool
		wantVideo  bool
		wantAudio  bool
		tracks     stream.Tracks
		pending    []message.Message
		firstMedia = time.Duration(-1)
	)
	ready := func() bool {
		if meta {
			return (!wantVideo || tracks.Video != nil) && (!wantAudio || tracks.Audio != nil)
		}
		return tracks.Video != nil && tracks.Audio != nil
	}
	// Without metadata, a track whose configuration has not come within
	// half a second of media is taken as absent.
	settle := func(dts time.Duration) bool {
		if firstMedia < 0 {
			firstMedia = dts
		}
		return dts-firstMedia >= 500*time.Millisecond || len(pending) >= maxPending
	}

	for {
		m, err := sc.Read()
		if err != nil {
			return nil, nil, classifyReadError(err)
		}
		if err := checkMessage(m); err != nil {
			return nil, nil, err
		}
		switch m := m.(type) {
		case *message.DataAMF0:
			if obj, ok := metadata(m.Payload); ok {
				v, hasV := obj.Get("videocodecid")
				a, hasA := obj.Get("audiocodecid")
				meta = true
				wantVideo = hasV && !isZero(v)
				wantAudio = hasA && !isZero(a)
				if wantVideo && !isCodec(v, message.CodecH264, "avc1") {
					return nil, nil, fmt.Errorf("%w: video codec %s is not supported: publish H.264", errRefused, codecValue(v, videoCodecName))
				}
				if wantAudio && !isCodec(a, message.CodecMPEG4Audio, "mp4a") {
					return nil, nil, fmt.Errorf("%w: audio codec %s is not supported: publish AAC-LC", errRefused, codecValue(a, audioCodecName))
				}
			}
		case *message.Video:
			if m.Type == message.VideoTypeConfig && m.AVCConfig != nil {
				v, err := stream.NewVideo(m.AVCConfig.SequenceParameterSets[0].NALUnit, m.AVCConfig.PictureParameterSets[0].NALUnit)
				if err != nil {
					return nil, nil, fmt.Errorf("%w: %v", errRefused, err)
				}
				tracks.Video = v
			} else if m.Type == message.VideoTypeAU {
				pending = append(pending, m)
				if !meta && settle(m.DTS) && tracks.Video != nil {
					return finish(&tracks, pending)
				}
			}
		case *message.Audio:
			if m.AACType == message.AudioAACTypeConfig {
				a, err := stream.NewAudio(m.AACConfig)
				if err != nil {
					return nil, nil, fmt.Errorf("%w: %v", errRefused, err)
				}
				tracks.Audio = a
			} else {
				pending = append(pending, m)
				if !meta && settle(m.DTS) && tracks.Audio != nil {
					return finish(&tracks, pending)
				}
			}
		}
		if ready() {
			return finish(&tracks, pending)
		}
		if len(pending) >= maxPending {
			return nil, nil, fmt.Errorf("%w: no configuration for the announced tracks", errRefused)
		}
	}
}

func finish(t *stream.Tracks, pending []message.Message) (*stream.Tracks, []message.Message, error) {
	// Media of a track that never got its configuration cannot be used.
	kept := pending[:0]
	for _, m := range pending {
		switch m.(type) {
		case *message.Video:
			if t.Video == nil {
				continue
			}
		case *message.Audio:
			if t.Audio == nil {
				continue
			}
		}
		kept = append(kept, m)
	}
	return t, kept, nil
}

// metadata finds the onMetaData object in a data message.
func metadata(d amf0.Data) (amf0.Object, bool) {
	for i, item := range d {
		if s, ok := item.(string); ok && s == "onMetaData" && i+1 < len(d) {
			switch o := d[i+1].(type) {
			case amf0.Object:
				return o, true
			case amf0.ECMAArray:
				return amf0.Object(o), true
			}
		}
	}
	return nil, false
}

func isZero(v any) bool {
	switch v := v.(type) {
	case float64:
		return v == 0
	case string:
		return v == ""
	case nil:
		return true
	}
	return false
}

func isCodec(v any, id int, fourCC string) bool {
	switch v := v.(type) {
	case float64:
		return int(v) == id
	case string:
		return v == fourCC
	}
	return false
}

func codecValue(v any, name func(float64) string) string {
	switch v := v.(type) {
	case float64:
		return name(v)
	case string:
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprint(v)
}

func videoCodecName(id float64) string {
	names := map[int]string{2: "Sorenson H.263", 3: "Screen video", 4: "VP6", 5: "VP6 alpha", 6: "Screen video 2", 7: "H.264", 12: "H.265"}
	if n, ok := names[int(id)]; ok {
		return n
	}
	return fmt.Sprintf("#%v", id)
}

func audioCodecName(id float64) string {
	names := map[int]string{0: "PCM", 1: "ADPCM", 2: "MP3", 3: "PCM", 4: "Nellymoser", 5: "Nellymoser", 6: "Nellymoser", 7: "G.711 A-law", 8: "G.711 mu-law", 10: "AAC", 11: "Speex", 14: "MP3 8 kHz"}
	if n, ok := names[int(id)]; ok {
		return n
	}
	return fmt.Sprintf("#%v", id)
}

func describeVideo(v *stream.Video) string {
	if v == nil {
		return "none"
	}
	return fmt.Sprintf("H.264 %dx%d %s", v.Width, v.Height, v.Codec())
}

func describeAudio(a *stream.Audio) string {
	if a == nil {
		return "none"
	}
	return fmt.Sprintf("AAC-LC %d Hz %d ch", a.SampleRate, a.Channels)
}

// sendStatus tells the publisher why it is being turned away, best effort.
func sendStatus(sc *gortmplib.ServerConn, level, code, description string) {
	sc.Write(&message.CommandAMF0{
		ChunkStreamID:   5,
		MessageStreamID: 0x1000000,
		Name:            "onStatus",
		Arguments: []any{
			nil,
			amf0.Object{
				{Key: "level", Value: level},
				{Key: "code", Value: code},
				{Key: "description", Value: description},
			},
		},
	})
}

// streamKey takes KEY out of rtmp://HOST/live/KEY (query ignored).
func streamKey(u *url.URL) (string, bool) {
	if u == nil {
		return "", false
	}
	p := strings.Trim(u.Path, "/")
	app, key, ok := strings.Cut(p, "/")
	if !ok || app != App || key == "" || strings.Contains(key, "/") {
		return "", false
	}
	return key, true
}

func redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + redactPath(u)
}

// redactPath hides a possible stream key in logs.
func redactPath(u *url.URL) string {
	if u == nil {
		return ""
	}
	app, _, _ := strings.Cut(strings.Trim(u.Path, "/"), "/")
	return "/" + app + "/…"
}
