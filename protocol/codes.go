package protocol

// ErrorCode is a stable error code on the wire: in app_connection_error
// and the stream statuses' code field, and in the error field of the
// restream routes' answers. The server and the Go SDK both use these; the
// messages beside them keep the phrases apps already look for ("Already
// streaming", "Camera busy", "managed stream active", "Invalid URL",
// "timeout").
type ErrorCode string

// Codes of stream requests (app_connection_error, managed_stream_status,
// rtmp_stream_status).
const (
	CodeAlreadyStreaming    ErrorCode = "ALREADY_STREAMING"
	CodeCameraBusy          ErrorCode = "CAMERA_BUSY"
	CodeInvalidURL          ErrorCode = "INVALID_URL"
	CodeInvalidConfig       ErrorCode = "INVALID_CONFIG"
	CodeTimeout             ErrorCode = "TIMEOUT"
	CodeKeepAliveTimeout    ErrorCode = "KEEP_ALIVE_TIMEOUT"
	CodeGlassesNotConnected ErrorCode = "GLASSES_NOT_CONNECTED"
	CodeWifiNotConnected    ErrorCode = "WIFI_NOT_CONNECTED"
	CodePermissionDenied    ErrorCode = "PERMISSION_DENIED"
	CodeNotOwner            ErrorCode = "NOT_OWNER"
	CodeGlassesError        ErrorCode = "GLASSES_ERROR"
	CodeInternal            ErrorCode = "INTERNAL_ERROR"
)

// Codes an app's tpa_connection_init is refused with, as the MentraOS
// cloud's.
const (
	CodeInvalidSession  ErrorCode = "INVALID_SESSION"
	CodeSessionNotFound ErrorCode = "SESSION_NOT_FOUND"
	CodeAppNotStarted   ErrorCode = "APP_NOT_STARTED"
)

// Codes of the restream routes (/api/streams/{id}/outputs), as the
// MentraOS cloud answers them.
const (
	CodeUnauthorized         ErrorCode = "UNAUTHORIZED"
	CodeMissingPackageName   ErrorCode = "MISSING_PACKAGE_NAME"
	CodeTooManyFailures      ErrorCode = "TOO_MANY_FAILURES"
	CodeInvalidAPIKey        ErrorCode = "INVALID_API_KEY" // also refuses an app's init
	CodeStreamNotFound       ErrorCode = "STREAM_NOT_FOUND"
	CodeNotAViewer           ErrorCode = "NOT_A_VIEWER"
	CodeBodyTooLarge         ErrorCode = "BODY_TOO_LARGE"
	CodeInvalidURLFormat     ErrorCode = "INVALID_URL_FORMAT"
	CodeMaxOutputsReached    ErrorCode = "MAX_OUTPUTS_REACHED"
	CodeMaxAppOutputsReached ErrorCode = "MAX_APP_OUTPUTS_REACHED"
	CodeDuplicateURL         ErrorCode = "DUPLICATE_URL"
	CodeNotAuthorized        ErrorCode = "NOT_AUTHORIZED"
	CodeOutputNotFound       ErrorCode = "OUTPUT_NOT_FOUND"
)

// Codes of glasscast's own HTTP API (/api/v1, the stream and recording
// routes) in its error bodies: {"error":{"code":…,"message":…}}.
const (
	APIBadRequest       ErrorCode = "bad_request"
	APIUnauthorized     ErrorCode = "unauthorized"
	APINotFound         ErrorCode = "not_found"
	APIMethodNotAllowed ErrorCode = "method_not_allowed"
	APITooLarge         ErrorCode = "too_large"
	APILimit            ErrorCode = "limit_reached"
	APIUnavailable      ErrorCode = "unavailable"
	APIConflict         ErrorCode = "conflict"
	APITooManyFailures  ErrorCode = "too_many_failures"
)
