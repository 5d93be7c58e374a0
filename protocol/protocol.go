// Package protocol holds the wire types of the MentraOS app and glasses
// protocols as glasscast speaks them: the JSON messages on /app-ws and
// /glasses-ws, and the webhooks sent to app servers. Field names and values
// are those of @mentra/sdk 2.1.29 and the MentraOS cloud, so that an
// unmodified app works against glasscast. It imports only the standard
// library; glasscast's Go SDK and simulator use it as the server does.
package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Message types, app to cloud.
const (
	TypeAppConnectionInit    = "tpa_connection_init"
	TypeSubscriptionUpdate   = "subscription_update"
	TypeDisplayEvent         = "display_event"
	TypeRTMPStreamRequest    = "rtmp_stream_request"
	TypeRTMPStreamStop       = "rtmp_stream_stop"
	TypeManagedStreamRequest = "managed_stream_request"
	TypeManagedStreamStop    = "managed_stream_stop"
	TypeStreamStatusCheck    = "stream_status_check"
	TypeOwnershipRelease     = "ownership_release"
)

// Message types, cloud to app.
const (
	TypeAppConnectionAck          = "tpa_connection_ack"
	TypeAppConnectionError        = "tpa_connection_error"
	TypeAppStopped                = "app_stopped"
	TypeDeviceStateUpdate         = "device_state_update"
	TypeDataStream                = "data_stream"
	TypeRTMPStreamStatus          = "rtmp_stream_status"
	TypeManagedStreamStatus       = "managed_stream_status"
	TypeStreamStatusCheckResponse = "stream_status_check_response"
)

// Message types between the cloud and the phone/glasses.
const (
	TypeConnectionInit         = "connection_init"
	TypeConnectionAck          = "connection_ack"
	TypeConnectionError        = "connection_error"
	TypeGlassesConnectionState = "glasses_connection_state"
	TypeGlassesBatteryUpdate   = "glasses_battery_update"
	TypePing                   = "ping"
	TypePong                   = "pong"
	TypeStartRTMPStream        = "start_rtmp_stream"
	TypeStopRTMPStream         = "stop_rtmp_stream"
	TypeKeepRTMPStreamAlive    = "keep_rtmp_stream_alive"
	TypeKeepAliveAck           = "keep_alive_ack"
	TypeLocalTranscription     = "local_transcription"
)

// Webhook types.
const (
	WebhookSessionRequest = "session_request"
	WebhookStopRequest    = "stop_request"
)

// Stream types apps subscribe to.
const (
	StreamManagedStatus  = "managed_stream_status"
	StreamRTMPStatus     = "rtmp_stream_status"
	StreamTranscription  = "transcription"
	StreamTranscriptEnUS = "transcription:en-US"
)

// ManagedAppID is the appId of a managed stream in start_rtmp_stream.
const ManagedAppID = "MANAGED_STREAM"

// MaxMessageBytes bounds one WebSocket message glasscast reads.
const MaxMessageBytes = 256 << 10

// Now is the timestamp format of cloud messages: ISO 8601 in UTC.
func Now() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

// VideoConfig is the video an app asks the glasses for.
type VideoConfig struct {
	Width     int `json:"width,omitempty"`
	Height    int `json:"height,omitempty"`
	Bitrate   int `json:"bitrate,omitempty"`
	FrameRate int `json:"frameRate,omitempty"`
}

// AudioConfig is the audio an app asks the glasses for.
type AudioConfig struct {
	Bitrate          int   `json:"bitrate,omitempty"`
	SampleRate       int   `json:"sampleRate,omitempty"`
	EchoCancellation *bool `json:"echoCancellation,omitempty"`
	NoiseSuppression *bool `json:"noiseSuppression,omitempty"`
}

// StreamConfig holds limits of a stream.
type StreamConfig struct {
	// DurationLimit is in seconds; glasscast stops the stream there.
	DurationLimit int `json:"durationLimit,omitempty"`
}

// RestreamDestination is an extra RTMP output of a managed stream.
type RestreamDestination struct {
	URL  string `json:"url"`
	Name string `json:"name,omitempty"`
}

// StreamStats are a stream's figures as statuses carry them.
type StreamStats struct {
	Bitrate       int64   `json:"bitrate"`
	FPS           float64 `json:"fps"`
	DroppedFrames int64   `json:"droppedFrames"`
	Duration      float64 `json:"duration"`
}

// ---- app to cloud ----

// AppConnectionInit opens an app session on /app-ws.
type AppConnectionInit struct {
	Type        string `json:"type"`
	SessionID   string `json:"sessionId"`
	PackageName string `json:"packageName"`
	APIKey      string `json:"apiKey"`
	Timestamp   string `json:"timestamp,omitempty"`
}

// SubscriptionUpdate lists what an app wants relayed. Items are stream type
// strings or objects (location with a rate).
type SubscriptionUpdate struct {
	Type          string            `json:"type"`
	PackageName   string            `json:"packageName"`
	Subscriptions []json.RawMessage `json:"subscriptions"`
	SessionID     string            `json:"sessionId,omitempty"`
}

// Streams returns the subscription items that are plain stream types, and
// the "stream" name of object items.
func (s *SubscriptionUpdate) Streams() []string {
	out := make([]string, 0, len(s.Subscriptions))
	for _, raw := range s.Subscriptions {
		var name string
		if json.Unmarshal(raw, &name) == nil {
			out = append(out, name)
			continue
		}
		var obj struct {
			Stream string `json:"stream"`
		}
		if json.Unmarshal(raw, &obj) == nil && obj.Stream != "" {
			out = append(out, obj.Stream)
		}
	}
	return out
}

// DisplayEvent asks the glasses to show a layout.
type DisplayEvent struct {
	Type        string          `json:"type"`
	PackageName string          `json:"packageName,omitempty"`
	View        string          `json:"view,omitempty"`
	Layout      json.RawMessage `json:"layout"`
	DurationMs  *int            `json:"durationMs,omitempty"`
	Timestamp   string          `json:"timestamp,omitempty"`
}

// TextWall is the layout of a text wall.
type TextWall struct {
	LayoutType string `json:"layoutType"`
	Text       string `json:"text"`
}

// ManagedStreamRequest asks for a managed stream.
type ManagedStreamRequest struct {
	Type                 string                `json:"type"`
	PackageName          string                `json:"packageName"`
	Quality              string                `json:"quality,omitempty"`
	EnableWebRTC         *bool                 `json:"enableWebRTC,omitempty"`
	Video                *VideoConfig          `json:"video,omitempty"`
	Audio                *AudioConfig          `json:"audio,omitempty"`
	Stream               *StreamConfig         `json:"stream,omitempty"`
	RestreamDestinations []RestreamDestination `json:"restreamDestinations,omitempty"`
	Timestamp            string                `json:"timestamp,omitempty"`
}

// ManagedStreamStop leaves the managed stream.
type ManagedStreamStop struct {
	Type        string `json:"type"`
	PackageName string `json:"packageName"`
	Timestamp   string `json:"timestamp,omitempty"`
}

// RTMPStreamRequest asks for an unmanaged stream to the app's own server.
type RTMPStreamRequest struct {
	Type        string        `json:"type"`
	PackageName string        `json:"packageName"`
	SessionID   string        `json:"sessionId,omitempty"`
	RTMPURL     string        `json:"rtmpUrl"`
	Video       *VideoConfig  `json:"video,omitempty"`
	Audio       *AudioConfig  `json:"audio,omitempty"`
	Stream      *StreamConfig `json:"stream,omitempty"`
	Timestamp   string        `json:"timestamp,omitempty"`
}

// RTMPStreamStop stops the app's unmanaged stream.
type RTMPStreamStop struct {
	Type        string `json:"type"`
	PackageName string `json:"packageName"`
	SessionID   string `json:"sessionId,omitempty"`
	StreamID    string `json:"streamId,omitempty"`
	Timestamp   string `json:"timestamp,omitempty"`
}

// StreamStatusCheck asks what stream the user has. Its sessionId is not to
// be trusted (the 2.1.29 SDK sends "unknown-session-id").
type StreamStatusCheck struct {
	Type        string `json:"type"`
	PackageName string `json:"packageName"`
	SessionID   string `json:"sessionId,omitempty"`
	Timestamp   string `json:"timestamp,omitempty"`
}

// OwnershipRelease says the app is handing its session over.
type OwnershipRelease struct {
	Type        string `json:"type"`
	PackageName string `json:"packageName"`
	SessionID   string `json:"sessionId"`
	Reason      string `json:"reason"`
	Timestamp   string `json:"timestamp,omitempty"`
}

// ---- cloud to app ----

// AppConnectionAck accepts an app session.
type AppConnectionAck struct {
	Type             string          `json:"type"`
	SessionID        string          `json:"sessionId"`
	Settings         []any           `json:"settings"`
	MentraOSSettings map[string]any  `json:"mentraosSettings"`
	Capabilities     json.RawMessage `json:"capabilities"`
	Timestamp        string          `json:"timestamp"`
}

// AppConnectionError reports an error to an app. glasscast does not close
// the socket after one.
type AppConnectionError struct {
	Type      string    `json:"type"`
	Code      ErrorCode `json:"code"`
	Message   string    `json:"message"`
	Timestamp string    `json:"timestamp"`
}

// AppStopped tells an app its session is over.
type AppStopped struct {
	Type      string `json:"type"`
	Reason    string `json:"reason,omitempty"`
	Timestamp string `json:"timestamp"`
}

// DeviceState is the part of the glasses' state apps see.
type DeviceState struct {
	Connected     bool   `json:"connected"`
	ModelName     string `json:"modelName,omitempty"`
	WifiConnected bool   `json:"wifiConnected"`
	WifiSSID      string `json:"wifiSsid,omitempty"`
	BatteryLevel  *int   `json:"batteryLevel,omitempty"`
	Charging      bool   `json:"charging"`
	Timestamp     string `json:"timestamp"`
}

// DeviceStateUpdate sends the glasses' state to an app.
type DeviceStateUpdate struct {
	Type         string      `json:"type"`
	State        DeviceState `json:"state"`
	FullSnapshot bool        `json:"fullSnapshot"`
	Timestamp    string      `json:"timestamp"`
}

// DataStream relays a subscribed stream to an app.
type DataStream struct {
	Type       string `json:"type"`
	SessionID  string `json:"sessionId"`
	StreamType string `json:"streamType"`
	Data       any    `json:"data"`
	Timestamp  string `json:"timestamp"`
}

// Transcription is the data of a transcription stream.
type Transcription struct {
	Type               string `json:"type"`
	Text               string `json:"text"`
	IsFinal            bool   `json:"isFinal"`
	UtteranceID        string `json:"utteranceId,omitempty"`
	TranscribeLanguage string `json:"transcribeLanguage,omitempty"`
	StartTime          int64  `json:"startTime"`
	EndTime            int64  `json:"endTime"`
	Provider           string `json:"provider,omitempty"`
	Timestamp          string `json:"timestamp,omitempty"`
}

// OutputStatus is a restream output in a managed status. ID, AddedBy,
// Bytes, Bitrate and Mode are glasscast's extra fields.
type OutputStatus struct {
	ID      string      `json:"outputId,omitempty"`
	URL     string      `json:"url"`
	Name    string      `json:"name,omitempty"`
	Status  OutputState `json:"status"`
	Error   string      `json:"error,omitempty"`
	AddedBy string      `json:"addedBy,omitempty"`
	Bytes   uint64      `json:"bytes,omitempty"`
	Bitrate int64       `json:"bitrate,omitempty"`
	Mode    string      `json:"mode,omitempty"`
}

// ManagedStreamStatus is the state of the managed stream an app shares.
// Code is glasscast's stable error code (an extra field the TS SDK ignores).
type ManagedStreamStatus struct {
	Type         string         `json:"type"`
	Status       StreamStatus   `json:"status"`
	HLSURL       string         `json:"hlsUrl,omitempty"`
	DASHURL      string         `json:"dashUrl,omitempty"`
	WebRTCURL    string         `json:"webrtcUrl,omitempty"`
	PreviewURL   string         `json:"previewUrl,omitempty"`
	ThumbnailURL string         `json:"thumbnailUrl,omitempty"`
	RecordingURL string         `json:"recordingUrl,omitempty"`
	Message      string         `json:"message,omitempty"`
	StreamID     string         `json:"streamId,omitempty"`
	Outputs      []OutputStatus `json:"outputs,omitempty"`
	Code         ErrorCode      `json:"code,omitempty"`
	Stats        *StreamStats   `json:"stats,omitempty"`
	Timestamp    string         `json:"timestamp,omitempty"`
}

// RTMPStreamStatus is the state of an unmanaged stream, sent to its owner.
type RTMPStreamStatus struct {
	Type         string       `json:"type"`
	SessionID    string       `json:"sessionId,omitempty"`
	StreamID     string       `json:"streamId,omitempty"`
	Status       StreamStatus `json:"status"`
	ErrorDetails string       `json:"errorDetails,omitempty"`
	Stats        *StreamStats `json:"stats,omitempty"`
	AppID        string       `json:"appId,omitempty"`
	Code         ErrorCode    `json:"code,omitempty"`
	Timestamp    string       `json:"timestamp,omitempty"`
}

// StreamInfo describes the user's stream in a status check response.
type StreamInfo struct {
	Type            string       `json:"type"`
	StreamID        string       `json:"streamId"`
	Status          StreamStatus `json:"status"`
	CreatedAt       string       `json:"createdAt"`
	HLSURL          string       `json:"hlsUrl,omitempty"`
	DASHURL         string       `json:"dashUrl,omitempty"`
	WebRTCURL       string       `json:"webrtcUrl,omitempty"`
	PreviewURL      string       `json:"previewUrl,omitempty"`
	ThumbnailURL    string       `json:"thumbnailUrl,omitempty"`
	RecordingURL    string       `json:"recordingUrl,omitempty"`
	ActiveViewers   int          `json:"activeViewers,omitempty"`
	RTMPURL         string       `json:"rtmpUrl,omitempty"`
	RequestingAppID string       `json:"requestingAppId,omitempty"`
}

// StreamStatusCheckResponse answers a stream status check.
type StreamStatusCheckResponse struct {
	Type            string      `json:"type"`
	HasActiveStream bool        `json:"hasActiveStream"`
	StreamInfo      *StreamInfo `json:"streamInfo,omitempty"`
}

// ---- phone/glasses ----

// ConnectionAck accepts the phone's connection.
type ConnectionAck struct {
	Type      string `json:"type"`
	SessionID string `json:"sessionId"`
	Timestamp string `json:"timestamp"`
}

// ConnectionError refuses the phone's connection.
type ConnectionError struct {
	Type      string `json:"type"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp"`
}

// WifiState is the glasses' WiFi.
type WifiState struct {
	Connected bool   `json:"connected"`
	SSID      string `json:"ssid,omitempty"`
}

// GlassesConnectionState is the phone's report of the glasses.
type GlassesConnectionState struct {
	Type      string     `json:"type"`
	ModelName string     `json:"modelName"`
	Status    string     `json:"status"`
	Wifi      *WifiState `json:"wifi,omitempty"`
	Timestamp any        `json:"timestamp,omitempty"`
}

// GlassesBatteryUpdate is the glasses' battery.
type GlassesBatteryUpdate struct {
	Type      string `json:"type"`
	Level     int    `json:"level"`
	Charging  bool   `json:"charging"`
	Timestamp any    `json:"timestamp,omitempty"`
}

// Ping and Pong are the app-level liveness messages of /glasses-ws.
type Ping struct {
	Type string `json:"type"`
}

// StartRTMPStream tells the glasses to push RTMP.
type StartRTMPStream struct {
	Type      string        `json:"type"`
	SessionID string        `json:"sessionId"`
	RTMPURL   string        `json:"rtmpUrl"`
	AppID     string        `json:"appId"`
	StreamID  string        `json:"streamId"`
	Video     *VideoConfig  `json:"video"`
	Audio     *AudioConfig  `json:"audio"`
	Stream    *StreamConfig `json:"stream"`
	Flash     bool          `json:"flash"`
	Sound     bool          `json:"sound"`
	Timestamp string        `json:"timestamp,omitempty"`
}

// StopRTMPStream tells the glasses to stop pushing.
type StopRTMPStream struct {
	Type      string `json:"type"`
	SessionID string `json:"sessionId"`
	AppID     string `json:"appId"`
	StreamID  string `json:"streamId"`
	Timestamp string `json:"timestamp,omitempty"`
}

// KeepRTMPStreamAlive is the cloud's keep-alive for a stream.
type KeepRTMPStreamAlive struct {
	Type     string `json:"type"`
	StreamID string `json:"streamId"`
	AckID    string `json:"ackId"`
}

// KeepAliveAck answers a keep-alive.
type KeepAliveAck struct {
	Type      string `json:"type"`
	StreamID  string `json:"streamId"`
	AckID     string `json:"ackId"`
	Timestamp int64  `json:"timestamp,omitempty"`
}

// GlassesStreamStatus is what the glasses report of their RTMP push.
type GlassesStreamStatus struct {
	Type         string       `json:"type"`
	StreamID     string       `json:"streamId,omitempty"`
	Status       string       `json:"status"`
	ErrorDetails string       `json:"errorDetails,omitempty"`
	Attempt      int          `json:"attempt,omitempty"`
	MaxAttempts  int          `json:"maxAttempts,omitempty"`
	Reason       string       `json:"reason,omitempty"`
	Stats        *StreamStats `json:"stats,omitempty"`
	Timestamp    int64        `json:"timestamp,omitempty"`
}

// LocalTranscription is speech the phone transcribed.
type LocalTranscription struct {
	Type               string `json:"type"`
	Text               string `json:"text"`
	IsFinal            bool   `json:"isFinal"`
	StartTime          int64  `json:"startTime"`
	EndTime            int64  `json:"endTime"`
	SpeakerID          int    `json:"speakerId"`
	TranscribeLanguage string `json:"transcribeLanguage"`
	Provider           string `json:"provider"`
}

// ---- webhooks ----

// SessionRequest is the webhook that starts an app session.
type SessionRequest struct {
	Type                  string `json:"type"`
	SessionID             string `json:"sessionId"`
	UserID                string `json:"userId"`
	Timestamp             string `json:"timestamp"`
	AugmentOSWebsocketURL string `json:"augmentOSWebsocketUrl"`
	MentraOSWebsocketURL  string `json:"mentraOSWebsocketUrl"`
}

// StopRequest is the webhook that stops an app session.
type StopRequest struct {
	Type      string `json:"type"`
	SessionID string `json:"sessionId"`
	UserID    string `json:"userId"`
	Reason    string `json:"reason"`
	Timestamp string `json:"timestamp"`
}

// ---- decoding ----

// Unknown is a message of a type the decoder does not know.
type Unknown struct {
	Type string
}

// Errors of the decoders.
var (
	ErrTooLarge = errors.New("protocol: message too large")
	ErrNoType   = errors.New("protocol: message without a type")
)

func peekType(data []byte) (string, error) {
	if len(data) > MaxMessageBytes {
		return "", ErrTooLarge
	}
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return "", fmt.Errorf("protocol: %w", err)
	}
	if head.Type == "" {
		return "", ErrNoType
	}
	return head.Type, nil
}

func decodeAs[T any](data []byte) (any, error) {
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("protocol: %w", err)
	}
	return v, nil
}

// DecodeFromApp decodes a message an app sends. Types glasscast does not
// handle come back as *Unknown.
func DecodeFromApp(data []byte) (any, error) {
	t, err := peekType(data)
	if err != nil {
		return nil, err
	}
	switch t {
	case TypeAppConnectionInit:
		return decodeAs[AppConnectionInit](data)
	case TypeSubscriptionUpdate:
		return decodeAs[SubscriptionUpdate](data)
	case TypeDisplayEvent:
		return decodeAs[DisplayEvent](data)
	case TypeManagedStreamRequest:
		return decodeAs[ManagedStreamRequest](data)
	case TypeManagedStreamStop:
		return decodeAs[ManagedStreamStop](data)
	case TypeRTMPStreamRequest:
		return decodeAs[RTMPStreamRequest](data)
	case TypeRTMPStreamStop:
		return decodeAs[RTMPStreamStop](data)
	case TypeStreamStatusCheck:
		return decodeAs[StreamStatusCheck](data)
	case TypeOwnershipRelease:
		return decodeAs[OwnershipRelease](data)
	}
	return &Unknown{Type: t}, nil
}

// DecodeFromGlasses decodes a message the phone/glasses send.
func DecodeFromGlasses(data []byte) (any, error) {
	t, err := peekType(data)
	if err != nil {
		return nil, err
	}
	switch t {
	case TypeConnectionInit, TypePing, TypePong:
		return decodeAs[Ping](data)
	case TypeGlassesConnectionState:
		return decodeAs[GlassesConnectionState](data)
	case TypeGlassesBatteryUpdate:
		return decodeAs[GlassesBatteryUpdate](data)
	case TypeRTMPStreamStatus:
		return decodeAs[GlassesStreamStatus](data)
	case TypeKeepAliveAck:
		return decodeAs[KeepAliveAck](data)
	case TypeLocalTranscription:
		return decodeAs[LocalTranscription](data)
	}
	return &Unknown{Type: t}, nil
}

// DecodeFromCloud decodes a message the cloud sends to an app (for SDKs).
func DecodeFromCloud(data []byte) (any, error) {
	t, err := peekType(data)
	if err != nil {
		return nil, err
	}
	switch t {
	case TypeAppConnectionAck:
		return decodeAs[AppConnectionAck](data)
	case TypeAppConnectionError:
		return decodeAs[AppConnectionError](data)
	case TypeAppStopped:
		return decodeAs[AppStopped](data)
	case TypeDeviceStateUpdate:
		return decodeAs[DeviceStateUpdate](data)
	case TypeDataStream:
		return decodeAs[RawDataStream](data)
	case TypeRTMPStreamStatus:
		return decodeAs[RTMPStreamStatus](data)
	case TypeManagedStreamStatus:
		return decodeAs[ManagedStreamStatus](data)
	case TypeStreamStatusCheckResponse:
		return decodeAs[StreamStatusCheckResponse](data)
	}
	return &Unknown{Type: t}, nil
}

// DecodeToGlasses decodes a message the cloud sends to the phone (for the
// simulator).
func DecodeToGlasses(data []byte) (any, error) {
	t, err := peekType(data)
	if err != nil {
		return nil, err
	}
	switch t {
	case TypeConnectionAck:
		return decodeAs[ConnectionAck](data)
	case TypeConnectionError:
		return decodeAs[ConnectionError](data)
	case TypePing, TypePong:
		return decodeAs[Ping](data)
	case TypeStartRTMPStream:
		return decodeAs[StartRTMPStream](data)
	case TypeStopRTMPStream:
		return decodeAs[StopRTMPStream](data)
	case TypeKeepRTMPStreamAlive:
		return decodeAs[KeepRTMPStreamAlive](data)
	case TypeDisplayEvent:
		return decodeAs[DisplayEvent](data)
	}
	return &Unknown{Type: t}, nil
}

// RawDataStream is a data stream as an app receives it, its data undecoded.
type RawDataStream struct {
	Type       string          `json:"type"`
	SessionID  string          `json:"sessionId"`
	StreamType string          `json:"streamType"`
	Data       json.RawMessage `json:"data"`
	Timestamp  string          `json:"timestamp"`
}
