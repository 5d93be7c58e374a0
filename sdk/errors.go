package sdk

import (
	"errors"
	"fmt"

	"github.com/glasscast/glasscast/protocol"
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
	Code    protocol.ErrorCode
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
	case protocol.CodeAlreadyStreaming:
		return target == ErrAlreadyStreaming
	case protocol.CodeCameraBusy:
		return target == ErrCameraBusy
	case protocol.CodeInvalidURL:
		return target == ErrInvalidURL
	case protocol.CodeInvalidConfig:
		return target == ErrInvalidOptions
	case protocol.CodeTimeout, protocol.CodeKeepAliveTimeout:
		return target == ErrTimeout
	case protocol.CodeGlassesNotConnected, protocol.CodeWifiNotConnected:
		return target == ErrGlassesNotConnected
	case protocol.CodePermissionDenied:
		return target == ErrPermissionDenied
	case protocol.CodeNotOwner, protocol.CodeNotAuthorized:
		return target == ErrNotOwner
	case protocol.CodeMaxOutputsReached, protocol.CodeMaxAppOutputsReached:
		return target == ErrOutputLimit
	case protocol.CodeDuplicateURL:
		return target == ErrDuplicateOutput
	case protocol.CodeInvalidURLFormat:
		return target == ErrInvalidURL
	case protocol.CodeStreamNotFound, protocol.CodeOutputNotFound, protocol.CodeNotAViewer:
		return target == ErrNotFound
	}
	return target == ErrStreamFailed
}
