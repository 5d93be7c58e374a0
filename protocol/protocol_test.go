package protocol

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// Messages as the 2.1.29 SDK and the phone send them (protocol reference §2-§5).
var appSamples = []string{
	`{"type":"tpa_connection_init","sessionId":"u1@example.com-com.example.app","packageName":"com.example.app","apiKey":"k","timestamp":"2026-01-01T00:00:00.000Z"}`,
	`{"type":"subscription_update","packageName":"com.example.app","subscriptions":["managed_stream_status",{"stream":"location_stream","rate":"standard"}],"sessionId":"s","timestamp":"t"}`,
	`{"type":"managed_stream_request","packageName":"p","quality":"720p","enableWebRTC":true,"video":{"width":1280,"height":720,"bitrate":2000000,"frameRate":30},"audio":{"bitrate":128000,"sampleRate":44100,"echoCancellation":true,"noiseSuppression":true},"stream":{"durationLimit":1800},"restreamDestinations":[{"url":"rtmp://a/b/c","name":"YouTube"}],"timestamp":"t"}`,
	`{"type":"managed_stream_stop","packageName":"p","timestamp":"t"}`,
	`{"type":"rtmp_stream_request","packageName":"p","sessionId":"s","rtmpUrl":"rtmp://127.0.0.1/live/key","timestamp":"t"}`,
	`{"type":"rtmp_stream_stop","packageName":"p","sessionId":"s","streamId":"s123","timestamp":"t"}`,
	`{"type":"stream_status_check","packageName":"p","sessionId":"unknown-session-id","timestamp":"t"}`,
	`{"type":"display_event","packageName":"p","view":"main","layout":{"layoutType":"text_wall","text":"hi"},"durationMs":5000,"timestamp":"t"}`,
	`{"type":"ownership_release","packageName":"p","sessionId":"s","reason":"switching_clouds","timestamp":"t"}`,
}

var glassesSamples = []string{
	`{"type":"glasses_connection_state","modelName":"Mentra Live","status":"CONNECTED","wifi":{"connected":true,"ssid":"home"},"timestamp":1700000000000}`,
	`{"type":"rtmp_stream_status","status":"reconnecting","attempt":2,"maxAttempts":10,"reason":"io","streamId":"m1"}`,
	`{"type":"rtmp_stream_status","status":"error","errorDetails":"Battery level too low (9%) - minimum 15% required","timestamp":1700000000000}`,
	`{"type":"keep_alive_ack","streamId":"m1","ackId":"a1b2c3","timestamp":1700000000000}`,
	`{"type":"local_transcription","text":"stop stream","isFinal":true,"startTime":0,"endTime":900,"speakerId":0,"transcribeLanguage":"en-US","provider":"simulator"}`,
	`{"type":"ping"}`,
}

func TestDecodeFromApp(t *testing.T) {
	for _, s := range appSamples {
		m, err := DecodeFromApp([]byte(s))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if _, ok := m.(*Unknown); ok {
			t.Fatalf("%s decoded as unknown", s)
		}
	}
	m, _ := DecodeFromApp([]byte(appSamples[1]))
	if got := m.(*SubscriptionUpdate).Streams(); strings.Join(got, ",") != "managed_stream_status,location_stream" {
		t.Fatalf("subscriptions %v", got)
	}
	m, _ = DecodeFromApp([]byte(appSamples[2]))
	if r := m.(*ManagedStreamRequest); r.Video.Bitrate != 2000000 || *r.EnableWebRTC != true || r.Stream.DurationLimit != 1800 || r.RestreamDestinations[0].Name != "YouTube" {
		t.Fatalf("managed request %+v", r)
	}
	if m, err := DecodeFromApp([]byte(`{"type":"photo_request"}`)); err != nil || m.(*Unknown).Type != "photo_request" {
		t.Fatalf("unknown type: %v %v", m, err)
	}
	for _, bad := range []string{``, `{}`, `{"type":""}`, `[1]`, `{"type":"managed_stream_request","video":7}`} {
		if _, err := DecodeFromApp([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if _, err := DecodeFromApp([]byte(`{"type":"x","pad":"` + strings.Repeat("a", MaxMessageBytes) + `"}`)); err != ErrTooLarge {
		t.Errorf("oversized message: %v", err)
	}
}

func TestDecodeFromGlasses(t *testing.T) {
	for _, s := range glassesSamples {
		if _, err := DecodeFromGlasses([]byte(s)); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// toGlasses are messages the cloud sends the phone.
var toGlasses = []any{
	StartRTMPStream{Type: TypeStartRTMPStream, SessionID: "u", RTMPURL: "rtmp://h/live/k", AppID: ManagedAppID, StreamID: "m1", Video: &VideoConfig{}, Audio: &AudioConfig{}, Stream: &StreamConfig{}, Flash: true, Sound: true},
	StopRTMPStream{Type: TypeStopRTMPStream, SessionID: "u", AppID: "p", StreamID: "s1"},
	KeepRTMPStreamAlive{Type: TypeKeepRTMPStreamAlive, StreamID: "s1", AckID: "a1"},
	ConnectionAck{Type: TypeConnectionAck, SessionID: "u", Timestamp: Now()},
}

func TestRoundTripToGlassesAndApps(t *testing.T) {
	for _, m := range toGlasses {
		b, _ := json.Marshal(m)
		if d, err := DecodeToGlasses(b); err != nil {
			t.Fatalf("%s: %v", b, err)
		} else if _, ok := d.(*Unknown); ok {
			t.Fatalf("%s decoded as unknown", b)
		}
	}
	b, _ := json.Marshal(StartRTMPStream{Type: TypeStartRTMPStream, Video: &VideoConfig{}, Audio: &AudioConfig{}, Stream: &StreamConfig{}})
	if !strings.Contains(string(b), `"video":{}`) {
		t.Fatalf("absent configs must go out as {}: %s", b)
	}
	cloud := []any{
		ManagedStreamStatus{Type: TypeManagedStreamStatus, Status: StreamActive, HLSURL: "h", DASHURL: "d", StreamID: "m1"},
		RTMPStreamStatus{Type: TypeRTMPStreamStatus, Status: StreamActive, StreamID: "s1", Stats: &StreamStats{Bitrate: 1}},
		AppConnectionAck{Type: TypeAppConnectionAck, Settings: []any{}},
		StreamStatusCheckResponse{Type: TypeStreamStatusCheckResponse},
		DataStream{Type: TypeDataStream, StreamType: StreamTranscriptEnUS, Data: Transcription{Type: StreamTranscription, Text: "x"}},
	}
	for _, m := range cloud {
		b, _ := json.Marshal(m)
		if d, err := DecodeFromCloud(b); err != nil {
			t.Fatalf("%s: %v", b, err)
		} else if _, ok := d.(*Unknown); ok {
			t.Fatalf("%s decoded as unknown", b)
		}
	}
}

func FuzzDecodeFromApp(f *testing.F) {
	for _, s := range appSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeFromApp(b)
		if err == nil && m == nil {
			t.Fatal("nil message without an error")
		}
		if s, ok := m.(*SubscriptionUpdate); ok {
			s.Streams()
		}
	})
}

func FuzzDecodeFromGlasses(f *testing.F) {
	for _, s := range glassesSamples {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeFromGlasses(b)
		if err == nil && m == nil {
			t.Fatal("nil message without an error")
		}
	})
}

func FuzzDecodeFromCloud(f *testing.F) {
	f.Add([]byte(`{"type":"managed_stream_status","status":"active","hlsUrl":"h"}`))
	f.Add([]byte(`{"type":"data_stream","streamType":"transcription:en-US","data":{"text":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		DecodeFromCloud(b)
	})
}

func FuzzDecodeToGlasses(f *testing.F) {
	for _, m := range toGlasses {
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"display_event","layout":{"layoutType":"text_wall","text":"x"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeToGlasses(b)
		if err == nil && m == nil {
			t.Fatal("nil message without an error")
		}
		// What decodes as a known message encodes again and decodes as
		// the same type.
		if _, unknown := m.(*Unknown); err != nil || unknown {
			return
		}
		again, err := json.Marshal(m)
		if err != nil {
			return // a field the glasses' own type cannot write back (a raw timestamp)
		}
		m2, err := DecodeToGlasses(again)
		if err != nil || fmt.Sprintf("%T", m2) != fmt.Sprintf("%T", m) {
			t.Fatalf("%s decoded as %T, written as %s, decoded again as %T, %v", b, m, again, m2, err)
		}
	})
}
