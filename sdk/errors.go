package sdk

import (
	"errors"
	"fmt"
)

// Errors apps branch on with errors.Is. A refused request comes back as a
// *StreamError that matches one of them.
var (
	// ErrAlreadyStreaming: this app already has a stream of this kind.
	ErrAlreadyStreaming = errors.New("already streaming")
	// ErrCameraBusy: another stream holds the camera (an unmanaged stream
	// holds it exclusively; a managed one keeps unmanaged ones out).
	ErrCameraBusy = errors.New("camera busy")
	// ErrInvalidURL: the RTMP URL is not rtmp:// or rtmps:// with a host.
	ErrInvalidURL = errors.New("invalid URL")
	// ErrInvalidOptions: video, audio or stream options the glasses cannot do.
	ErrInvalidOptions = errors.New("invalid stream options")
	// ErrTimeout: the stream did not start in time, or its keep-alive failed.
	ErrTimeout = errors.New("timeout")
	// ErrNotConnected: the session's socket is not open.
	ErrNotConnected = errors.New("not connected")
	// ErrGlassesNotConnected: the user's glasses or phone are offline, or
	// the glasses are not on WiFi.
	ErrGlassesNotConnected = errors.New("glasses not connected")
	// ErrPermissionDenied: the app lacks the CAMERA permission.
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNotOwner: the stream belongs to another app.
	ErrNotOwner = errors.New("not the stream's owner")
	// ErrStreamFailed: the glasses or the server ended the stream with an error.
	ErrStreamFailed = errors.New("stream failed")
	// ErrStopped: the stream stopped before the call was answered.
	ErrStopped = errors.New("stream stopped")
	// ErrOutputLimit: the stream (or this app on it) has the most restream
	// outputs it may have.
	ErrOutputLimit = errors.New("too many outputs")
	// ErrDuplicateOutput: the stream already restreams to that URL.
	ErrDuplicateOutput = errors.New("duplicate output")
	// ErrNotFound: no such managed stream or output (or the app does not
	// view the stream).
	ErrNotFound = errors.New("not found")
)

// StreamError is a refusal or failure reported by glasscast, with its
// stable code and message.
type StreamError struct {
	Code    string
	Message string
}

func (e *StreamError) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// Is matches the error to the sentinel its code stands for.
func (e *StreamError) Is(target error) bool {
	switch e.Code {
	case "ALREADY_STREAMING":
		return target == ErrAlreadyStreaming
	case "CAMERA_BUSY":
		return target == ErrCameraBusy
	case "INVALID_URL":
		return target == ErrInvalidURL
	case "INVALID_CONFIG":
		return target == ErrInvalidOptions
	case "TIMEOUT", "KEEP_ALIVE_TIMEOUT":
		return target == ErrTimeout
	case "GLASSES_NOT_CONNECTED", "WIFI_NOT_CONNECTED":
		return target == ErrGlassesNotConnected
	case "PERMISSION_DENIED":
		return target == ErrPermissionDenied
	case "NOT_OWNER", "NOT_AUTHORIZED":
		return target == ErrNotOwner
	case "MAX_OUTPUTS_REACHED", "MAX_APP_OUTPUTS_REACHED":
		return target == ErrOutputLimit
	case "DUPLICATE_URL":
		return target == ErrDuplicateOutput
	case "INVALID_URL_FORMAT":
		return target == ErrInvalidURL
	case "STREAM_NOT_FOUND", "OUTPUT_NOT_FOUND", "NOT_A_VIEWER":
		return target == ErrNotFound
	}
	return target == ErrStreamFailed
}
