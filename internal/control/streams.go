package control

import (
	"context"
	"errors"
	"fmt"
	"github.com/glasscast/glasscast/internal/access"
	"time"

	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/protocol"
)

// Limits of the glasses' encoder (protocol reference §5.2).
const (
	minWidth, maxWidth           = 320, 1920
	minHeight, maxHeight         = 240, 1080
	minVideoBitrate, maxVBitrate = 100_000, 10_000_000
	minFPS, maxFPS               = 10, 60
	minAudioBitrate, maxABitrate = 32_000, 320_000
	minSampleRate, maxSampleRate = 22_050, 48_000
	maxDurationLimit             = 24 * 3600
)

// checkOptions refuses what the glasses cannot do, instead of clamping it in
// silence. quality ("720p"/"1080p") sets the video size when the video does
// not say.
func checkOptions(quality string, v *protocol.VideoConfig, a *protocol.AudioConfig, s *protocol.StreamConfig) (*protocol.VideoConfig, error) {
	out := &protocol.VideoConfig{}
	if v != nil {
		*out = *v
	}
	switch quality {
	case "":
	case "720p":
		if out.Width == 0 && out.Height == 0 {
			out.Width, out.Height = 1280, 720
		}
	case "1080p":
		if out.Width == 0 && out.Height == 0 {
			out.Width, out.Height = 1920, 1080
		}
	default:
		return nil, fmt.Errorf("quality %q is not supported: use 720p or 1080p", quality)
	}
	in := func(name string, val, lo, hi int) error {
		if val != 0 && (val < lo || val > hi) {
			return fmt.Errorf("%s %d is outside what the glasses support (%d to %d)", name, val, lo, hi)
		}
		return nil
	}
	for _, err := range []error{
		in("video width", out.Width, minWidth, maxWidth),
		in("video height", out.Height, minHeight, maxHeight),
		in("video bitrate", out.Bitrate, minVideoBitrate, maxVBitrate),
		in("video frame rate", out.FrameRate, minFPS, maxFPS),
	} {
		if err != nil {
			return nil, err
		}
	}
	if a != nil {
		if err := in("audio bitrate", a.Bitrate, minAudioBitrate, maxABitrate); err != nil {
			return nil, err
		}
		if err := in("audio sample rate", a.SampleRate, minSampleRate, maxSampleRate); err != nil {
			return nil, err
		}
	}
	if s != nil && (s.DurationLimit < 0 || s.DurationLimit > maxDurationLimit) {
		return nil, fmt.Errorf("stream duration limit %d s is outside 0 to %d", s.DurationLimit, maxDurationLimit)
	}
	return out, nil
}

// sendErrorLocked reports a failed request the way both SDKs understand,
// without closing the socket: the connection-error message, then the
// stream's own status.
func (a *appSession) sendErrorLocked(managed bool, code protocol.ErrorCode, message, streamID string) {
	if a.sock == nil {
		return
	}
	a.sock.peer.Send(protocol.AppConnectionError{Type: protocol.TypeAppConnectionError, Code: code, Message: message, Timestamp: protocol.Now()})
	if managed {
		a.sock.peer.Send(protocol.ManagedStreamStatus{Type: protocol.TypeManagedStreamStatus, Status: protocol.StreamError, Message: message, Code: code, StreamID: streamID})
	} else {
		a.sock.peer.Send(protocol.RTMPStreamStatus{Type: protocol.TypeRTMPStreamStatus, SessionID: a.sessionID, StreamID: streamID,
			Status: protocol.StreamError, ErrorDetails: message, Code: code, AppID: a.pkg, Timestamp: protocol.Now()})
	}
	a.u.p.log.Info("stream request refused", "user", a.u.id, "app", a.pkg, "code", code, "message", message)
}

// ---- managed ----

type managedStream struct {
	u         *User
	id        string
	st        Media
	viewers   map[string]bool
	status    protocol.StreamStatus
	createdAt time.Time
	ka        *keepAlive
	stopWatch context.CancelFunc
	stopMedia func()
	lease     Lease
	timers    []Timer
	ended     bool
	// start is what the glasses were told; a phone that comes back is
	// told again, to resume the stream with the same URLs.
	start protocol.StartRTMPStream
	// played: it has been active (playable) once.
	played bool
}

// mediaChangedLocked tells the viewers that the glasses' stream dropped
// (reconnecting) or is back (active); u.mu is held.
func (ms *managedStream) mediaChangedLocked(media live.Status) {
	if ms.u.managed != ms || ms.ended {
		return
	}
	switch {
	case media == live.StatusReconnecting && ms.status == protocol.StreamActive:
		ms.status = protocol.StreamReconnecting
		ms.broadcastLocked(ms.statusMsg(protocol.StreamReconnecting, fmt.Sprintf("The glasses' stream dropped; waiting up to %v for it to come back", ms.u.p.media.ReconnectWindow())))
		ms.u.p.log.Info("managed stream reconnecting", "user", ms.u.id, "stream", ms.id)
	case media == live.StatusLive && ms.status == protocol.StreamReconnecting:
		ms.status = protocol.StreamActive
		ms.broadcastLocked(ms.statusMsg(protocol.StreamActive, "Stream is live again"))
		ms.u.p.log.Info("managed stream live again", "user", ms.u.id, "stream", ms.id)
	}
}

// links are a managed stream's viewer URLs.
type links struct {
	hls, dash, whep, preview, thumb string
	recording                       string // the recording's HLS playlist, when recorded
}

// links builds the viewer URLs handed out now: capabilities whose tokens
// are the same for every app until they are half used up.
func (ms *managedStream) links() links {
	cfg := &ms.u.p.cfg
	id := ms.st.ID()
	grant := func(r access.Right) string {
		if cfg.Grant == nil {
			return id
		}
		return cfg.Grant(id, r)
	}
	live, watch := grant(access.Live), access.Live
	if ms.st.Record() {
		watch |= access.Recording
	}
	l := links{
		hls:  cfg.PublicURL + "/hls/" + live + "/index.m3u8",
		dash: cfg.PublicURL + "/dash/" + live + "/manifest.mpd",
		// WebRTC is always on, so every app gets its URL, asked for or not.
		whep:    cfg.PublicURL + "/whep/" + live,
		preview: cfg.PublicURL + "/watch/" + grant(watch),
		thumb:   cfg.PublicURL + "/thumb/" + live + ".jpg",
	}
	if ms.st.Record() {
		l.recording = cfg.PublicURL + "/recordings/" + grant(access.Recording) + "/index.m3u8"
	}
	return l
}

func (ms *managedStream) statusMsg(status protocol.StreamStatus, message string) protocol.ManagedStreamStatus {
	l := ms.links()
	return protocol.ManagedStreamStatus{Type: protocol.TypeManagedStreamStatus, Status: status, HLSURL: l.hls, DASHURL: l.dash,
		WebRTCURL: l.whep, PreviewURL: l.preview, ThumbnailURL: l.thumb, RecordingURL: l.recording, Message: message, StreamID: ms.id}
}

func (ms *managedStream) sendLocked(pkg string, msg protocol.ManagedStreamStatus) {
	if a := ms.u.apps[pkg]; a != nil && a.sock != nil {
		msg.Outputs = ms.outputsFor(pkg)
		a.sock.peer.Send(msg)
	}
}

// outputsFor lists the stream's restream outputs as app pkg may see them:
// the URLs of outputs another app added keep their stream keys hidden.
func (ms *managedStream) outputsFor(pkg string) []protocol.OutputStatus {
	if mgr := ms.u.p.cfg.Outputs; mgr != nil {
		return mgr.Statuses(ms.st.ID(), pkg)
	}
	return nil
}

// addDestinationsLocked starts the outputs a managed request asks for. A
// destination the stream already has is kept as it is.
func (ms *managedStream) addDestinationsLocked(pkg string, dests []protocol.RestreamDestination) {
	mgr := ms.u.p.cfg.Outputs
	if mgr == nil {
		return
	}
	for _, d := range dests {
		st, ok := ms.st.Local()
		if !ok {
			ms.u.p.log.Warn("restream destination not added: the stream's media is on another node", "stream", ms.id, "app", pkg)
			continue
		}
		if err := mgr.Add(st, d.URL, d.Name, pkg); err != nil {
			ms.u.p.log.Warn("restream destination not added", "stream", ms.id, "app", pkg, "err", err)
		}
	}
}

// checkDestinations refuses restream destinations that can never work.
func (p *Plane) checkDestinations(dests []protocol.RestreamDestination) error {
	if len(dests) == 0 {
		return nil
	}
	mgr := p.cfg.Outputs
	if mgr == nil {
		return errors.New("restreamDestinations: this server does not restream")
	}
	if len(dests) > mgr.MaxPerStream() {
		return fmt.Errorf("at most %d restreamDestinations", mgr.MaxPerStream())
	}
	for i, d := range dests {
		if err := mgr.Check(d.URL, d.Name); err != nil {
			return fmt.Errorf("restreamDestinations[%d]: %v", i, err)
		}
	}
	return nil
}

func (ms *managedStream) broadcastLocked(msg protocol.ManagedStreamStatus) {
	for pkg := range ms.viewers {
		ms.sendLocked(pkg, msg)
	}
}

func (u *User) managedRequestLocked(a *appSession, req *protocol.ManagedStreamRequest) {
	p := u.p
	video, err := checkOptions(req.Quality, req.Video, req.Audio, req.Stream)
	if err == nil {
		err = p.checkDestinations(req.RestreamDestinations)
	}
	if err != nil {
		a.sendErrorLocked(true, protocol.CodeInvalidConfig, "Invalid stream options: "+err.Error(), "")
		return
	}
	if held, ok := p.cfg.Camera.Held(u.id); ok && held.Exclusive {
		a.sendErrorLocked(true, protocol.CodeCameraBusy, "Camera busy: Already streaming - "+(&BusyError{held}).Error(), "")
		return
	}
	if !a.app.Has(store.PermissionCamera) {
		a.sendErrorLocked(true, protocol.CodePermissionDenied, "Camera permission required for managed streams", "")
		return
	}
	if code, msg := u.streamReadyLocked(); code != "" {
		a.sendErrorLocked(true, code, msg, "")
		return
	}
	if ms := u.managed; ms != nil {
		// Join: the app shares the stream, and hears where it stands now.
		ms.viewers[a.pkg] = true
		ms.addDestinationsLocked(a.pkg, req.RestreamDestinations)
		switch ms.status {
		case protocol.StreamActive:
			ms.sendLocked(a.pkg, ms.statusMsg(protocol.StreamActive, "Stream is live"))
		case protocol.StreamReconnecting:
			ms.sendLocked(a.pkg, ms.statusMsg(protocol.StreamReconnecting, "The glasses' stream dropped; waiting for it to come back"))
		default:
			ms.sendLocked(a.pkg, ms.statusMsg(protocol.StreamInitializing, "Waiting for stream to start..."))
		}
		p.log.Info("app joined the managed stream", "user", u.id, "app", a.pkg, "stream", ms.id, "viewers", len(ms.viewers))
		u.savedLocked()
		return
	}

	id := newStreamID("m")
	lease := Lease{StreamID: id}
	if err := p.cfg.Camera.Acquire(u.id, lease); err != nil {
		a.sendErrorLocked(true, protocol.CodeCameraBusy, "Camera busy: Already streaming - "+err.Error(), "")
		return
	}
	st, err := p.media.Create(live.CreateOptions{Name: "managed stream of " + u.id, Record: p.cfg.Record})
	if err != nil {
		p.cfg.Camera.Release(u.id, lease)
		a.sendErrorLocked(true, protocol.CodeInternal, "Failed to create the stream: "+err.Error(), "")
		return
	}
	ms := &managedStream{
		u: u, id: id, st: LocalMedia(p.media, st), lease: lease, viewers: map[string]bool{a.pkg: true}, status: protocol.StreamInitializing,
		createdAt: p.cfg.Clock.Now(),
	}
	u.managed = ms
	p.cfg.Directory.Put(id, u.id)
	ms.addDestinationsLocked(a.pkg, req.RestreamDestinations)
	ms.start = protocol.StartRTMPStream{
		Type: protocol.TypeStartRTMPStream, SessionID: u.id, RTMPURL: p.cfg.RTMPBase + st.Key(), AppID: protocol.ManagedAppID,
		StreamID: ms.id, Video: video, Audio: orEmptyAudio(req.Audio), Stream: orEmptyStream(req.Stream),
		Flash: true, Sound: true, Timestamp: protocol.Now(),
	}
	u.sendGlassesLocked(ms.start)
	ms.sendLocked(a.pkg, ms.statusMsg(protocol.StreamInitializing, "Waiting for stream to start..."))
	ms.ka = u.startKeepAlive(ms.id, func() {
		ms.endLocked(protocol.StreamError, protocol.CodeKeepAliveTimeout, "Stream timed out waiting for keep-alive")
	})
	ms.timers = append(ms.timers, u.after(p.cfg.ManagedStartTimeout, func() {
		if u.managed == ms && !ms.played {
			ms.endLocked(protocol.StreamError, protocol.CodeTimeout, fmt.Sprintf("Stream start timeout: nothing playable came from the glasses within %v", p.cfg.ManagedStartTimeout))
		}
	}))
	if req.Stream != nil && req.Stream.DurationLimit > 0 {
		limit := time.Duration(req.Stream.DurationLimit) * time.Second
		ms.timers = append(ms.timers, u.after(limit, func() {
			if u.managed == ms {
				ms.endLocked(protocol.StreamStopped, "", fmt.Sprintf("Stream reached its duration limit of %v", limit))
			}
		}))
	}
	ms.followLocked(ms.st)
	u.savedLocked()
	p.log.Info("managed stream starting", "user", u.id, "app", a.pkg, "stream", ms.id, "media", st.ID())
}

func orEmptyAudio(a *protocol.AudioConfig) *protocol.AudioConfig {
	if a == nil {
		return &protocol.AudioConfig{}
	}
	return a
}

func orEmptyStream(s *protocol.StreamConfig) *protocol.StreamConfig {
	if s == nil {
		return &protocol.StreamConfig{}
	}
	return s
}

func (u *User) managedStopLocked(a *appSession) {
	ms := u.managed
	if ms == nil || !ms.viewers[a.pkg] {
		// Nothing to leave; say so, which also settles the SDK's state.
		if a.sock != nil {
			a.sock.peer.Send(protocol.ManagedStreamStatus{Type: protocol.TypeManagedStreamStatus, Status: protocol.StreamStopped, Message: "No managed stream to stop"})
		}
		return
	}
	ms.leaveLocked(a.pkg, "Stream stopped")
}

// leaveLocked takes one app out of the stream; the last one out ends it.
func (ms *managedStream) leaveLocked(pkg, why string) {
	msg := ms.statusMsg(protocol.StreamStopped, why)
	ms.sendLocked(pkg, msg)
	delete(ms.viewers, pkg)
	ms.u.p.log.Info("app left the managed stream", "user", ms.u.id, "app", pkg, "stream", ms.id, "viewers", len(ms.viewers))
	if len(ms.viewers) == 0 {
		ms.endLocked(protocol.StreamStopped, "", why)
	}
	ms.u.savedLocked()
}

// endLocked ends the managed stream: the apps still on it hear the final
// status, the glasses are told to stop, and the media stream ends.
func (ms *managedStream) endLocked(status protocol.StreamStatus, code protocol.ErrorCode, message string) {
	if ms.ended {
		return
	}
	ms.ended = true
	u := ms.u
	if u.managed == ms {
		u.managed = nil
	}
	u.p.cfg.Camera.Release(u.id, ms.lease)
	u.p.cfg.Directory.Delete(ms.id)
	ms.stopLocked()
	// The URLs stop answering before anyone hears the stream is over; what
	// follows (the packager's last part, outputs stopping) does not hold
	// the user's lock.
	ms.st.End()
	final := ms.statusMsg(status, message)
	final.Code = code
	ms.broadcastLocked(final)
	ms.viewers = map[string]bool{}
	u.sendGlassesLocked(protocol.StopRTMPStream{Type: protocol.TypeStopRTMPStream, SessionID: u.id, AppID: protocol.ManagedAppID, StreamID: ms.id, Timestamp: protocol.Now()})
	u.savedLocked()
	u.p.log.Info("managed stream ended", "user", u.id, "stream", ms.id, "status", status, "message", message)
}

// stopLocked stops what runs for the stream here: keep-alives, timers,
// the watch of its media.
func (ms *managedStream) stopLocked() {
	ms.ka.stop()
	if ms.stopWatch != nil {
		ms.stopWatch()
	}
	if ms.stopMedia != nil {
		ms.stopMedia()
	}
	for _, t := range ms.timers {
		t.Stop()
	}
}

// followLocked makes the managed stream follow media m: "active" once it
// is playable (the first LL-HLS segment exists), and the apps hear when the
// glasses' stream drops and when it is back; a media stream that ends on
// its own (the glasses did not come back within the reconnect window)
// ends the managed stream. u.mu is held.
func (ms *managedStream) followLocked(m Media) {
	u, p := ms.u, ms.u.p
	if ms.stopWatch != nil {
		ms.stopWatch()
	}
	if ms.stopMedia != nil {
		ms.stopMedia()
	}
	ms.st = m
	if !ms.played {
		ctx, cancel := context.WithCancel(p.ctx)
		ms.stopWatch = cancel
		p.goTracked(func() {
			if m.WaitPlayable(ctx) != nil {
				return
			}
			u.mu.Lock()
			defer u.mu.Unlock()
			if u.managed == ms && !ms.ended && ms.st == m && !ms.played {
				ms.status, ms.played = protocol.StreamActive, true
				ms.broadcastLocked(ms.statusMsg(protocol.StreamActive, "Stream is now live"))
				u.savedLocked()
				p.log.Info("managed stream active", "user", u.id, "stream", ms.id, "after", p.cfg.Clock.Now().Sub(ms.createdAt).Round(time.Millisecond))
			}
		})
	}
	ms.stopMedia = m.Watch("managed stream "+ms.id, func(ev live.Event) {
		u.mu.Lock()
		defer u.mu.Unlock()
		if ms.st != m {
			return // a media stream it no longer follows
		}
		switch ev.Kind {
		case live.EventLive:
			ms.mediaChangedLocked(live.StatusLive)
		case live.EventReconnecting:
			ms.mediaChangedLocked(live.StatusReconnecting)
		case live.EventEnded:
			if u.managed == ms {
				ms.endLocked(protocol.StreamError, protocol.CodeGlassesError, "The glasses' stream ended: they did not reconnect in time")
			}
		}
	})
	// What the media did before it was watched: a stream that played
	// and is live again (or dropped) by now is said so.
	if ms.played {
		ms.mediaChangedLocked(m.Status())
	}
}

// ---- unmanaged ----

type unmanagedStream struct {
	u         *User
	id        string
	owner     string
	rtmpURL   string
	status    protocol.StreamStatus
	createdAt time.Time
	ka        *keepAlive
	limit     Timer
	lease     Lease
	stats     *protocol.StreamStats
	ended     bool
}

func (us *unmanagedStream) sendLocked(status protocol.StreamStatus, details string, code protocol.ErrorCode) {
	u := us.u
	msg := protocol.RTMPStreamStatus{Type: protocol.TypeRTMPStreamStatus, SessionID: u.id + "-" + us.owner, StreamID: us.id,
		Status: status, ErrorDetails: details, Stats: us.stats, AppID: us.owner, Code: code, Timestamp: protocol.Now()}
	if a := u.apps[us.owner]; a != nil && a.sock != nil {
		a.sock.peer.Send(msg)
	}
	// Other apps that subscribed hear it as a data stream, as on the real
	// cloud; the owner already has it.
	for pkg, a := range u.apps {
		if pkg != us.owner && a.sock != nil && a.subs[protocol.StreamRTMPStatus] {
			a.sock.peer.Send(protocol.DataStream{Type: protocol.TypeDataStream, SessionID: a.sessionID,
				StreamType: protocol.StreamRTMPStatus, Data: msg, Timestamp: protocol.Now()})
		}
	}
}

func (u *User) unmanagedRequestLocked(a *appSession, req *protocol.RTMPStreamRequest) {
	p := u.p
	if err := p.cfg.CheckURL(req.RTMPURL); err != nil {
		a.sendErrorLocked(false, protocol.CodeInvalidURL, err.Error(), "")
		return
	}
	if _, err := checkOptions("", req.Video, req.Audio, req.Stream); err != nil {
		a.sendErrorLocked(false, protocol.CodeInvalidConfig, "Invalid stream options: "+err.Error(), "")
		return
	}
	if !a.app.Has(store.PermissionCamera) {
		a.sendErrorLocked(false, protocol.CodePermissionDenied, "Camera permission required to start video streams", "")
		return
	}
	held, busy := p.cfg.Camera.Held(u.id)
	if busy && refuseUnmanaged(a, held) {
		return
	}
	if code, msg := u.streamReadyLocked(); code != "" {
		a.sendErrorLocked(false, code, msg, "")
		return
	}
	us := &unmanagedStream{u: u, id: newStreamID("s"), owner: a.pkg, rtmpURL: req.RTMPURL, status: protocol.StreamInitializing, createdAt: p.cfg.Clock.Now()}
	us.lease = Lease{Exclusive: true, Holder: a.pkg, StreamID: us.id}
	if err := p.cfg.Camera.Acquire(u.id, us.lease); err != nil {
		var b *BusyError
		if errors.As(err, &b) {
			refuseUnmanaged(a, b.Held)
		} else {
			a.sendErrorLocked(false, protocol.CodeInternal, "The camera could not be taken: "+err.Error(), "")
		}
		return
	}
	u.unmanaged = us
	u.sendGlassesLocked(protocol.StartRTMPStream{
		Type: protocol.TypeStartRTMPStream, SessionID: u.id, RTMPURL: req.RTMPURL, AppID: a.pkg, StreamID: us.id,
		Video: orEmptyVideo(req.Video), Audio: orEmptyAudio(req.Audio), Stream: orEmptyStream(req.Stream),
		Flash: true, Sound: true, Timestamp: protocol.Now(),
	})
	us.sendLocked(protocol.StreamInitializing, "", "")
	if req.Stream != nil && req.Stream.DurationLimit > 0 {
		limit := time.Duration(req.Stream.DurationLimit) * time.Second
		us.limit = u.after(limit, func() {
			if u.unmanaged == us {
				us.endLocked(protocol.StreamStopped, "", fmt.Sprintf("Stream reached its duration limit of %v", limit), true)
			}
		})
	}
	p.log.Info("unmanaged stream starting", "user", u.id, "app", a.pkg, "stream", us.id)
}

// refuseUnmanaged answers an unmanaged request while lease held is taken:
// the app's own stream, another app's, or the managed one.
func refuseUnmanaged(a *appSession, held Lease) bool {
	switch {
	case held.Exclusive && held.Holder == a.pkg:
		a.sendErrorLocked(false, protocol.CodeAlreadyStreaming, "Already streaming: stop the current stream before starting a new one", "")
	case held.Exclusive:
		a.sendErrorLocked(false, protocol.CodeCameraBusy, fmt.Sprintf("Camera busy: Already streaming - %s holds the camera", held.Holder), "")
	default:
		a.sendErrorLocked(false, protocol.CodeCameraBusy, "Camera busy: managed stream active - an unmanaged stream needs the camera to itself", "")
	}
	return true
}

func orEmptyVideo(v *protocol.VideoConfig) *protocol.VideoConfig {
	if v == nil {
		return &protocol.VideoConfig{}
	}
	return v
}

func (u *User) unmanagedStopLocked(a *appSession, streamID string) {
	us := u.unmanaged
	switch {
	case us != nil && us.owner != a.pkg && (streamID == "" || streamID == us.id):
		if streamID == "" {
			break // "stop my streams": this app has none
		}
		msg := fmt.Sprintf("App %s cannot stop stream %s owned by %s", a.pkg, us.id, us.owner)
		a.sock.peer.Send(protocol.AppConnectionError{Type: protocol.TypeAppConnectionError, Code: protocol.CodeNotOwner, Message: msg, Timestamp: protocol.Now()})
		return
	case us != nil && us.owner == a.pkg && (streamID == "" || streamID == us.id):
		us.endLocked(protocol.StreamStopped, "", "", true)
		return
	}
	// Nothing of this app's to stop: settle its state.
	a.sock.peer.Send(protocol.RTMPStreamStatus{Type: protocol.TypeRTMPStreamStatus, SessionID: a.sessionID, StreamID: streamID,
		Status: protocol.StreamStopped, AppID: a.pkg, Timestamp: protocol.Now()})
}

// endLocked ends the unmanaged stream and releases the camera; stopGlasses
// tells the glasses to stop pushing.
func (us *unmanagedStream) endLocked(status protocol.StreamStatus, code protocol.ErrorCode, details string, stopGlasses bool) {
	if us.ended {
		return
	}
	us.ended = true
	u := us.u
	if u.unmanaged == us {
		u.unmanaged = nil
	}
	u.p.cfg.Camera.Release(u.id, us.lease)
	us.ka.stop()
	if us.limit != nil {
		us.limit.Stop()
	}
	us.status = status
	us.sendLocked(status, details, code)
	if stopGlasses {
		u.sendGlassesLocked(protocol.StopRTMPStream{Type: protocol.TypeStopRTMPStream, SessionID: u.id, AppID: us.owner, StreamID: us.id, Timestamp: protocol.Now()})
	}
	u.p.log.Info("unmanaged stream ended", "user", u.id, "app", us.owner, "stream", us.id, "status", status, "details", details)
}

// ---- glasses statuses ----

func (u *User) glassesStatusLocked(m *protocol.GlassesStreamStatus) {
	id := m.StreamID
	if id == "" {
		// The glasses refuse a start (battery, WiFi, URL) without a stream
		// id: it belongs to the stream still starting, if there is one.
		switch {
		case u.managed != nil && u.managed.status == protocol.StreamInitializing && m.Status == "error":
			id = u.managed.id
		case u.unmanaged != nil && u.unmanaged.status == protocol.StreamInitializing && m.Status == "error":
			id = u.unmanaged.id
		default:
			return
		}
	}
	if ms := u.managed; ms != nil && ms.id == id {
		switch m.Status {
		case "error", "reconnect_failed":
			details := m.ErrorDetails
			if details == "" {
				details = "Stream error reported by glasses"
				if m.Status == "reconnect_failed" {
					details = "The glasses could not reconnect to the stream"
				}
			}
			ms.endLocked(protocol.StreamError, protocol.CodeGlassesError, details)
		case "stopped":
			ms.endLocked(protocol.StreamStopped, "", "The glasses stopped streaming")
		}
		return
	}
	us := u.unmanaged
	if us == nil || us.id != id {
		return
	}
	if m.Stats != nil {
		us.stats = m.Stats
	}
	switch m.Status {
	case "initializing", "connecting":
		us.sendLocked(protocol.StreamInitializing, "", "")
	case "streaming", "active", "reconnected":
		if us.ka == nil {
			us.ka = u.startKeepAlive(us.id, func() {
				us.endLocked(protocol.StreamTimeout, protocol.CodeKeepAliveTimeout, "Stream timed out waiting for keep-alive", true)
			})
		}
		us.status = protocol.StreamActive
		us.sendLocked(protocol.StreamActive, "", "")
	case "reconnecting":
		us.sendLocked(protocol.StreamReconnecting, m.Reason, "")
	case "stopping":
		us.sendLocked(protocol.StreamStopping, "", "")
	case "error", "reconnect_failed", "disconnected":
		details := m.ErrorDetails
		if details == "" {
			details = "The glasses reported " + m.Status
		}
		us.endLocked(protocol.StreamError, protocol.CodeGlassesError, details, false)
	case "stopped":
		us.endLocked(protocol.StreamStopped, "", "", false)
	case "timeout":
		us.endLocked(protocol.StreamTimeout, protocol.CodeTimeout, "The glasses timed out", false)
	}
}

// statusCheckLocked describes the user's stream.
func (u *User) statusCheckLocked() protocol.StreamStatusCheckResponse {
	out := protocol.StreamStatusCheckResponse{Type: protocol.TypeStreamStatusCheckResponse}
	if ms := u.managed; ms != nil {
		out.HasActiveStream = true
		l := ms.links()
		out.StreamInfo = &protocol.StreamInfo{Type: "managed", StreamID: ms.id, Status: ms.status,
			CreatedAt: ms.createdAt.UTC().Format(time.RFC3339Nano), HLSURL: l.hls, DASHURL: l.dash, WebRTCURL: l.whep,
			PreviewURL: l.preview, ThumbnailURL: l.thumb, RecordingURL: l.recording, ActiveViewers: len(ms.viewers)}
	} else if us := u.unmanaged; us != nil {
		out.HasActiveStream = true
		out.StreamInfo = &protocol.StreamInfo{Type: "unmanaged", StreamID: us.id, Status: us.status,
			CreatedAt: us.createdAt.UTC().Format(time.RFC3339Nano), RTMPURL: us.rtmpURL, RequestingAppID: us.owner}
	}
	return out
}

// Errors of the restream routes.
var (
	ErrNoManagedStream = errors.New("Managed stream not found")
	ErrNotViewer       = errors.New("App must be viewing the stream to manage its outputs")
	// ErrMediaElsewhere: the glasses publish the managed stream to another
	// node of the cluster; its outputs are not managed from there yet.
	ErrMediaElsewhere = errors.New("The stream's media is on another node: its outputs cannot be managed now")
)

// managedByID finds a managed stream by its id, through the directory.
func (p *Plane) managedByID(streamID string) (*User, *managedStream) {
	userID, ok := p.cfg.Directory.Lookup(streamID)
	if !ok {
		return nil, nil
	}
	u := p.user(userID, false)
	if u == nil {
		return nil, nil
	}
	u.mu.Lock()
	ms := u.managed
	u.mu.Unlock()
	if ms != nil && ms.id == streamID {
		return u, ms
	}
	return nil, nil
}

// ManagedStream returns the media stream of managed stream streamID, which
// app pkg must be a viewer of: what the restream routes act on.
func (p *Plane) ManagedStream(streamID, pkg string) (*live.Stream, error) {
	return p.managedMedia(streamID, pkg, true)
}

// ManagedMedia returns the media stream of managed stream streamID.
func (p *Plane) ManagedMedia(streamID string) (*live.Stream, error) {
	return p.managedMedia(streamID, "", false)
}

func (p *Plane) managedMedia(streamID, pkg string, viewer bool) (*live.Stream, error) {
	u, ms := p.managedByID(streamID)
	if ms == nil {
		return nil, ErrNoManagedStream
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.managed != ms || ms.ended {
		return nil, ErrNoManagedStream
	}
	if viewer && !ms.viewers[pkg] {
		return nil, ErrNotViewer
	}
	st, ok := ms.st.Local()
	if !ok {
		return nil, ErrMediaElsewhere
	}
	return st, nil
}

// OutputsChanged tells the viewers of the managed stream over media stream
// mediaID that its outputs changed ("Outputs updated").
func (p *Plane) OutputsChanged(mediaID string) {
	for _, u := range p.allUsers() {
		u.mu.Lock()
		if ms := u.managed; ms != nil && !ms.ended && ms.st.ID() == mediaID && ms.status == protocol.StreamActive {
			ms.broadcastLocked(ms.statusMsg(protocol.StreamActive, "Outputs updated"))
		}
		u.mu.Unlock()
	}
}
