package protocol

import "github.com/glasscast/glasscast/internal/enum"

// StreamStatus is the state of an app's stream, managed or unmanaged, as
// managed_stream_status, rtmp_stream_status and stream status checks carry
// it. The zero value is invalid: it does not encode.
type StreamStatus int

// Stream statuses.
const (
	StreamInitializing StreamStatus = iota + 1
	StreamActive
	StreamReconnecting
	StreamStopping
	StreamStopped
	StreamError
	StreamTimeout
)

var streamStatusNames = enum.New[StreamStatus]("stream status",
	"initializing", "active", "reconnecting", "stopping", "stopped", "error", "timeout")

func (s StreamStatus) String() string { return streamStatusNames.String(s) }

// Valid says s is one of the statuses.
func (s StreamStatus) Valid() bool { return streamStatusNames.Valid(s) }

// MarshalJSON writes the status's name.
func (s StreamStatus) MarshalJSON() ([]byte, error) { return streamStatusNames.Marshal(s) }

// UnmarshalJSON reads a status's name.
func (s *StreamStatus) UnmarshalJSON(b []byte) (err error) {
	*s, err = streamStatusNames.Unmarshal(b)
	return err
}

// OutputState is the state of a restream output. The zero value is
// invalid.
type OutputState int

// Output states.
const (
	OutputConnecting OutputState = iota + 1
	OutputActive
	OutputReconnecting
	OutputError
	OutputStopped
)

var outputStateNames = enum.New[OutputState]("output state", "connecting", "active", "reconnecting", "error", "stopped")

func (s OutputState) String() string { return outputStateNames.String(s) }

// Valid says s is one of the states.
func (s OutputState) Valid() bool { return outputStateNames.Valid(s) }

// MarshalJSON writes the state's name.
func (s OutputState) MarshalJSON() ([]byte, error) { return outputStateNames.Marshal(s) }

// UnmarshalJSON reads a state's name.
func (s *OutputState) UnmarshalJSON(b []byte) (err error) {
	*s, err = outputStateNames.Unmarshal(b)
	return err
}
