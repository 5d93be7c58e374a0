package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"github.com/glasscast/glasscast/internal/live"
	"strings"
	"sync"
	"time"

	"github.com/glasscast/glasscast/protocol"
)

// User is one user's state: glasses, apps, camera.
type User struct {
	p  *Plane
	id string

	mu        sync.Mutex
	glasses   *GlassesSocket
	device    protocol.DeviceState
	apps      map[string]*appSession
	managed   *managedStream
	unmanaged *unmanagedStream
	grace     Timer
	disposed  bool
	// detached: handed to another node (Plane.Detach); nothing here
	// records it any more.
	detached bool

	keepMu sync.Mutex // orders the saves of the user's running apps
}

func newUser(p *Plane, id string) *User {
	return &User{p: p, id: id, apps: make(map[string]*appSession)}
}

// GlassesSocket is a phone's connection on /glasses-ws.
type GlassesSocket struct {
	u    *User
	peer Peer
}

// ConnectGlasses binds a phone's connection to its user (authenticated by
// the transport) and acknowledges it. A newer connection replaces an older
// one; streams carry on.
func (p *Plane) ConnectGlasses(userID string, peer Peer) (*GlassesSocket, error) {
	u := p.user(userID, true)
	if u == nil {
		return nil, ErrShuttingDown
	}
	if p.users != nil {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		p.users.TouchUser(ctx, userID)
		cancel()
	}
	g := &GlassesSocket{u: u, peer: peer}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.disposed {
		return nil, ErrShuttingDown
	}
	if old := u.glasses; old != nil {
		old.peer.Close(1000, "Replaced by a new connection")
	}
	if u.grace != nil {
		u.grace.Stop()
		u.grace = nil
	}
	u.glasses = g
	peer.Send(protocol.ConnectionAck{Type: protocol.TypeConnectionAck, SessionID: userID, Timestamp: protocol.Now()})
	p.log.Info("glasses connected", "user", userID)
	// A phone back within the grace whose glasses stopped pushing is told
	// to resume its managed stream, to the same ingest: the viewers' URLs
	// stay the same. (Glasses still pushing are left alone.)
	if ms := u.managed; ms != nil && !ms.ended && ms.start.RTMPURL != "" && ms.st.Status() != live.StatusLive {
		resume := ms.start
		resume.Timestamp = protocol.Now()
		peer.Send(resume)
		p.log.Info("glasses asked to resume the managed stream", "user", userID, "stream", ms.id)
	}
	if p.users != nil {
		p.goTracked(func() { p.restartApps(u) })
	}
	return g, nil
}

// Gone is called when the phone's connection closes. The user session waits
// for the phone to come back; streams carry on meanwhile.
func (g *GlassesSocket) Gone() {
	u := g.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.glasses != g {
		return
	}
	u.glasses = nil
	u.p.log.Info("glasses disconnected", "user", u.id, "grace", u.p.cfg.UserGrace)
	u.grace = u.after(u.p.cfg.UserGrace, func() {
		if u.glasses == nil && !u.disposed {
			u.disposeLocked("User session ended")
		}
	})
}

// Receive handles a message from the phone.
func (g *GlassesSocket) Receive(msg any) {
	u := g.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.glasses != g || u.disposed {
		return
	}
	switch m := msg.(type) {
	case *protocol.Ping:
		switch m.Type {
		case protocol.TypePing:
			g.peer.Send(protocol.Ping{Type: protocol.TypePong})
		case protocol.TypeConnectionInit:
			g.peer.Send(protocol.ConnectionAck{Type: protocol.TypeConnectionAck, SessionID: u.id, Timestamp: protocol.Now()})
		}
	case *protocol.GlassesConnectionState:
		st := strings.ToUpper(m.Status)
		u.device.Connected = st == "CONNECTED" || st == "RECONNECTED"
		u.device.ModelName = m.ModelName
		if m.Wifi != nil {
			u.device.WifiConnected, u.device.WifiSSID = m.Wifi.Connected, m.Wifi.SSID
		}
		u.broadcastDeviceLocked()
	case *protocol.GlassesBatteryUpdate:
		level := m.Level
		u.device.BatteryLevel, u.device.Charging = &level, m.Charging
		u.broadcastDeviceLocked()
	case *protocol.GlassesStreamStatus:
		u.glassesStatusLocked(m)
	case *protocol.KeepAliveAck:
		if ms := u.managed; ms != nil && ms.id == m.StreamID {
			ms.ka.ack(m.AckID)
		}
		if us := u.unmanaged; us != nil && us.id == m.StreamID && us.ka != nil {
			us.ka.ack(m.AckID)
		}
	case *protocol.LocalTranscription:
		u.transcriptionLocked(m)
	}
}

func (u *User) deviceSnapshotLocked() protocol.DeviceState {
	d := u.device
	d.Connected = d.Connected && u.glasses != nil
	d.Timestamp = protocol.Now()
	return d
}

func (u *User) broadcastDeviceLocked() {
	msg := protocol.DeviceStateUpdate{Type: protocol.TypeDeviceStateUpdate, State: u.deviceSnapshotLocked(), FullSnapshot: true, Timestamp: protocol.Now()}
	for _, a := range u.apps {
		if a.sock != nil {
			a.sock.peer.Send(msg)
		}
	}
}

// after runs f after d with the user's lock held: timers check, under the
// lock, that what they were set for still stands.
func (u *User) after(d time.Duration, f func()) Timer {
	return u.p.cfg.Clock.AfterFunc(d, func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		f()
	})
}

// sendGlassesLocked sends to the phone if it is connected.
func (u *User) sendGlassesLocked(msg any) bool {
	if u.glasses == nil {
		return false
	}
	u.glasses.peer.Send(msg)
	return true
}

// streamReadyLocked checks the glasses can take a stream request, as the real
// cloud does, and returns an error code and message when they cannot.
func (u *User) streamReadyLocked() (code protocol.ErrorCode, message string) {
	switch {
	case u.glasses == nil:
		return protocol.CodeGlassesNotConnected, "Cannot process stream request - phone is not connected"
	case !u.device.Connected:
		return protocol.CodeGlassesNotConnected, "Cannot process stream request - smart glasses are not connected"
	case needsWifi(u.device.ModelName) && !u.device.WifiConnected:
		return protocol.CodeWifiNotConnected, "Cannot process request - smart glasses must be connected to WiFi for this operation"
	}
	return "", ""
}

// needsWifi is true for glasses that stream over their own WiFi.
func needsWifi(model string) bool {
	return strings.Contains(strings.ToLower(model), "mentra live")
}

// transcriptionLocked relays speech to the apps subscribed to it.
func (u *User) transcriptionLocked(m *protocol.LocalTranscription) {
	lang := m.TranscribeLanguage
	if lang == "" {
		lang = "en-US"
	}
	data := protocol.Transcription{
		Type: protocol.StreamTranscription, Text: m.Text, IsFinal: m.IsFinal, TranscribeLanguage: lang,
		StartTime: m.StartTime, EndTime: m.EndTime, Provider: m.Provider, Timestamp: protocol.Now(),
	}
	for _, a := range u.apps {
		if a.sock == nil {
			continue
		}
		for sub := range a.subs {
			base, _, _ := strings.Cut(sub, "?")
			if base == protocol.StreamTranscription+":"+lang || base == protocol.StreamTranscription {
				a.sock.peer.Send(protocol.DataStream{Type: protocol.TypeDataStream, SessionID: a.sessionID,
					StreamType: sub, Data: data, Timestamp: protocol.Now()})
			}
		}
	}
}

// disposeLocked ends the user session: every app is stopped and told so,
// and the camera is released.
func (u *User) disposeLocked(reason string) {
	if u.disposed {
		return
	}
	u.disposed = true
	if u.grace != nil {
		u.grace.Stop()
	}
	for _, a := range u.apps {
		u.leaveStreamsLocked(a, "The user session ended")
		a.endLocked()
		if a.sock != nil {
			a.sock.peer.Send(protocol.AppStopped{Type: protocol.TypeAppStopped, Reason: "user_session_ended", Timestamp: protocol.Now()})
			a.sock.peer.Close(1000, reason)
			a.sock = nil
		}
	}
	u.apps = map[string]*appSession{}
	if u.managed != nil {
		u.managed.endLocked(protocol.StreamStopped, "", "The user session ended")
	}
	if u.unmanaged != nil {
		u.unmanaged.endLocked(protocol.StreamStopped, "", "The user session ended", true)
	}
	if u.glasses != nil {
		u.glasses.peer.Close(1000, reason)
		u.glasses = nil
	}
	u.p.forget(u)
	u.savedLocked()
	u.p.log.Info("user session ended", "user", u.id, "reason", reason)
}

// newStreamID makes a stream id: a prefix ("m" managed, "s" unmanaged) and
// 64 random bits, as unguessable as the Streams API's ids (the real cloud's
// carry about 21 random bits, which an app could probe).
func newStreamID(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
