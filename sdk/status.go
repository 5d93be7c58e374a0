package sdk

import "github.com/glasscast/glasscast/protocol"

// StreamStatus is a managed or unmanaged stream's status; it prints and
// encodes as its wire name ("active").
type StreamStatus = protocol.StreamStatus

// Stream statuses.
const (
	StatusInitializing = protocol.StreamInitializing
	StatusActive       = protocol.StreamActive
	StatusReconnecting = protocol.StreamReconnecting
	StatusStopping     = protocol.StreamStopping
	StatusStopped      = protocol.StreamStopped
	StatusError        = protocol.StreamError
	StatusTimeout      = protocol.StreamTimeout
)

// OutputState is a restream output's state.
type OutputState = protocol.OutputState

// Output states.
const (
	OutputConnecting   = protocol.OutputConnecting
	OutputActive       = protocol.OutputActive
	OutputReconnecting = protocol.OutputReconnecting
	OutputError        = protocol.OutputError
	OutputStopped      = protocol.OutputStopped
)
