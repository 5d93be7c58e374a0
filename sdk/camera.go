package sdk

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/glasscast/glasscast/protocol"
)

// Option types of stream requests.
type (
	VideoConfig         = protocol.VideoConfig
	AudioConfig         = protocol.AudioConfig
	StreamConfig        = protocol.StreamConfig
	RestreamDestination = protocol.RestreamDestination
	StreamStats         = protocol.StreamStats
	ManagedStreamStatus = protocol.ManagedStreamStatus
	RTMPStreamStatus    = protocol.RTMPStreamStatus
	StreamInfo          = protocol.StreamInfo
)

// ManagedStreamOptions are what a managed stream may ask for; all optional.
type ManagedStreamOptions struct {
	Quality              string // "720p" or "1080p"
	EnableWebRTC         bool
	Video                *VideoConfig
	Audio                *AudioConfig
	Stream               *StreamConfig
	RestreamDestinations []RestreamDestination
}

// ManagedStreamResult holds a managed stream's viewer URLs.
type ManagedStreamResult struct {
	StreamID     string
	HLSURL       string
	DASHURL      string
	WebRTCURL    string
	PreviewURL   string
	ThumbnailURL string
	// RecordingURL is the HLS playlist of the stream's recording (VOD once
	// the stream ends; /recordings/{id}.mp4 downloads it), when recorded.
	RecordingURL string
	// Active is true once the URLs play.
	Active bool
}

// RTMPStreamOptions are an unmanaged stream's: the app's own RTMP server.
type RTMPStreamOptions struct {
	RTMPURL string
	Video   *VideoConfig
	Audio   *AudioConfig
	Stream  *StreamConfig
}

// StartTimeout is how long a start waits for glasscast's first answer.
const StartTimeout = 30 * time.Second

// Camera streams from the user's glasses.
type Camera struct {
	s *Session

	mu       sync.Mutex
	changed  chan struct{}
	managed  *protocol.ManagedStreamStatus // latest
	mCount   int                           // managed statuses received
	stream   *protocol.RTMPStreamStatus    // latest unmanaged status
	sCount   int
	streamOn bool
	url      string
	checks   []chan protocol.StreamStatusCheckResponse
}

func (c *Camera) notifyLocked() {
	if c.changed != nil {
		close(c.changed)
	}
	c.changed = make(chan struct{})
}

// wait blocks until ok reports true for the camera's state (checked under
// its lock at every change), ctx ends, or the session ends.
func (c *Camera) wait(ctx context.Context, ok func() (bool, error)) error {
	for {
		c.mu.Lock()
		done, err := ok()
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		if done {
			return err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.s.done:
			return ErrNotConnected
		}
	}
}

func (c *Camera) managedStatus(m *protocol.ManagedStreamStatus) {
	c.mu.Lock()
	c.managed = m
	c.mCount++
	c.notifyLocked()
	c.mu.Unlock()
}

func (c *Camera) streamStatus(m *protocol.RTMPStreamStatus) {
	c.mu.Lock()
	c.stream = m
	c.sCount++
	switch m.Status {
	case protocol.StreamStopped, protocol.StreamError, protocol.StreamTimeout:
		c.streamOn, c.url = false, ""
	}
	c.notifyLocked()
	c.mu.Unlock()
}

func (c *Camera) checkResponse(m *protocol.StreamStatusCheckResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.checks) > 0 {
		c.checks[0] <- *m
		c.checks = c.checks[1:]
	}
}

func (c *Camera) cleanup() {
	c.mu.Lock()
	c.streamOn, c.url = false, ""
	c.notifyLocked()
	c.mu.Unlock()
}

func resultOf(m *protocol.ManagedStreamStatus) ManagedStreamResult {
	return ManagedStreamResult{StreamID: m.StreamID, HLSURL: m.HLSURL, DASHURL: m.DASHURL, WebRTCURL: m.WebRTCURL,
		PreviewURL: m.PreviewURL, ThumbnailURL: m.ThumbnailURL, RecordingURL: m.RecordingURL, Active: m.Status == protocol.StreamActive}
}

func statusError(code protocol.ErrorCode, message string) error {
	if message == "" {
		message = "managed stream failed"
	}
	return &StreamError{Code: code, Message: message}
}

// StartManagedStream asks for a managed stream (or joins the user's) and
// returns its URLs as soon as glasscast answers, normally before they play:
// Active says whether they already do. WaitManagedActive waits until they
// play. A refusal comes back as an error matching ErrCameraBusy,
// ErrGlassesNotConnected, ErrInvalidOptions…
func (c *Camera) StartManagedStream(ctx context.Context, opts ManagedStreamOptions) (ManagedStreamResult, error) {
	c.mu.Lock()
	before := c.mCount
	c.mu.Unlock()
	req := protocol.ManagedStreamRequest{Type: protocol.TypeManagedStreamRequest, PackageName: c.s.srv.cfg.PackageName,
		Quality: opts.Quality, Video: opts.Video, Audio: opts.Audio, Stream: opts.Stream,
		RestreamDestinations: opts.RestreamDestinations, Timestamp: protocol.Now()}
	if opts.EnableWebRTC {
		t := true
		req.EnableWebRTC = &t
	}
	if err := c.s.send(req); err != nil {
		return ManagedStreamResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	var res ManagedStreamResult
	err := c.wait(ctx, func() (bool, error) {
		if c.mCount == before {
			return false, nil
		}
		m := c.managed
		switch m.Status {
		case protocol.StreamInitializing, protocol.StreamActive:
			res = resultOf(m)
			return true, nil
		case protocol.StreamError:
			return true, statusError(m.Code, m.Message)
		case protocol.StreamStopped:
			return true, &StreamError{Code: m.Code, Message: "stopped: " + m.Message}
		}
		return false, nil
	})
	if err == context.DeadlineExceeded {
		err = &StreamError{Code: protocol.CodeTimeout, Message: "managed stream request timeout"}
	}
	return res, err
}

// WaitManagedActive waits until the managed stream plays and returns its
// URLs; it fails if the stream errs or stops first.
func (c *Camera) WaitManagedActive(ctx context.Context) (ManagedStreamResult, error) {
	var res ManagedStreamResult
	err := c.wait(ctx, func() (bool, error) {
		m := c.managed
		if m == nil {
			return false, nil
		}
		switch m.Status {
		case protocol.StreamActive:
			res = resultOf(m)
			return true, nil
		case protocol.StreamError:
			return true, statusError(m.Code, m.Message)
		case protocol.StreamStopped:
			return true, ErrStopped
		}
		return false, nil
	})
	return res, err
}

// ManagedStreamStatus returns the latest managed status, if any.
func (c *Camera) ManagedStreamStatus() *ManagedStreamStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.managed
}

// OnManagedStreamStatus calls h with every managed status; the returned
// func unsubscribes.
func (c *Camera) OnManagedStreamStatus(h func(ManagedStreamStatus)) (unsubscribe func()) {
	return c.s.on("msg:"+protocol.TypeManagedStreamStatus, func(data json.RawMessage) {
		var m ManagedStreamStatus
		if json.Unmarshal(data, &m) == nil {
			h(m)
		}
	})
}

// StopManagedStream leaves the managed stream (the last app out ends it)
// and returns once glasscast has said so, so that a start right after it
// is not answered by the stop's "stopped".
func (c *Camera) StopManagedStream(ctx context.Context) error {
	c.mu.Lock()
	before := c.mCount
	c.mu.Unlock()
	if err := c.s.send(protocol.ManagedStreamStop{Type: protocol.TypeManagedStreamStop, PackageName: c.s.srv.cfg.PackageName, Timestamp: protocol.Now()}); err != nil {
		return err
	}
	return c.settle(ctx, func() bool {
		return c.mCount != before && (c.managed.Status == protocol.StreamStopped || c.managed.Status == protocol.StreamError)
	})
}

// settle waits, for at most StartTimeout, until done says glasscast has
// answered a stop.
func (c *Camera) settle(ctx context.Context, done func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	err := c.wait(ctx, func() (bool, error) { return done(), nil })
	if err == context.DeadlineExceeded {
		err = &StreamError{Code: protocol.CodeTimeout, Message: "no answer to the stop"}
	}
	return err
}

// StartStream starts an unmanaged stream to the app's own RTMP server. It
// returns once glasscast has accepted the request (status initializing) or
// refused it (ErrInvalidURL, ErrCameraBusy, ErrAlreadyStreaming…).
func (c *Camera) StartStream(ctx context.Context, opts RTMPStreamOptions) error {
	c.mu.Lock()
	if c.streamOn {
		c.mu.Unlock()
		return &StreamError{Code: protocol.CodeAlreadyStreaming, Message: "Already streaming. Stop the current stream before starting a new one."}
	}
	before := c.sCount
	c.mu.Unlock()
	err := c.s.send(protocol.RTMPStreamRequest{Type: protocol.TypeRTMPStreamRequest, PackageName: c.s.srv.cfg.PackageName,
		SessionID: c.s.ID, RTMPURL: opts.RTMPURL, Video: opts.Video, Audio: opts.Audio, Stream: opts.Stream, Timestamp: protocol.Now()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	err = c.wait(ctx, func() (bool, error) {
		if c.sCount == before {
			return false, nil
		}
		switch m := c.stream; m.Status {
		case protocol.StreamError, protocol.StreamTimeout:
			return true, &StreamError{Code: m.Code, Message: m.ErrorDetails}
		case protocol.StreamStopped:
			return true, ErrStopped
		default:
			c.streamOn, c.url = true, opts.RTMPURL
			return true, nil
		}
	})
	if err == context.DeadlineExceeded {
		err = &StreamError{Code: protocol.CodeTimeout, Message: "no answer to the stream request"}
	}
	return err
}

// WaitStreamActive waits until the unmanaged stream reports active.
func (c *Camera) WaitStreamActive(ctx context.Context) error {
	return c.wait(ctx, func() (bool, error) {
		m := c.stream
		if m == nil {
			return false, nil
		}
		switch m.Status {
		case protocol.StreamActive:
			return true, nil
		case protocol.StreamError, protocol.StreamTimeout:
			return true, &StreamError{Code: m.Code, Message: m.ErrorDetails}
		case protocol.StreamStopped:
			return true, ErrStopped
		}
		return false, nil
	})
}

// StopStream stops the app's unmanaged stream and returns once glasscast
// has said it stopped.
func (c *Camera) StopStream(ctx context.Context) error {
	c.mu.Lock()
	id := ""
	if c.stream != nil {
		id = c.stream.StreamID
	}
	before := c.sCount
	c.mu.Unlock()
	if err := c.s.send(protocol.RTMPStreamStop{Type: protocol.TypeRTMPStreamStop, PackageName: c.s.srv.cfg.PackageName,
		SessionID: c.s.ID, StreamID: id, Timestamp: protocol.Now()}); err != nil {
		return err
	}
	return c.settle(ctx, func() bool { return c.sCount != before && !c.streamOn })
}

// OnStreamStatus calls h with every status of the app's unmanaged stream.
func (c *Camera) OnStreamStatus(h func(RTMPStreamStatus)) (unsubscribe func()) {
	return c.s.on("msg:"+protocol.TypeRTMPStreamStatus, func(data json.RawMessage) {
		var m RTMPStreamStatus
		if json.Unmarshal(data, &m) == nil {
			h(m)
		}
	})
}

// IsCurrentlyStreaming reports whether the app's unmanaged stream runs.
func (c *Camera) IsCurrentlyStreaming() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamOn
}

// CurrentStreamURL is the RTMP URL of the running unmanaged stream.
func (c *Camera) CurrentStreamURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.url
}

// StreamStatus returns the latest unmanaged status, if any.
func (c *Camera) StreamStatus() *RTMPStreamStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream
}

// CheckExistingStream asks glasscast what stream the user has.
func (c *Camera) CheckExistingStream(ctx context.Context) (protocol.StreamStatusCheckResponse, error) {
	ch := make(chan protocol.StreamStatusCheckResponse, 1)
	c.mu.Lock()
	c.checks = append(c.checks, ch)
	c.mu.Unlock()
	if err := c.s.send(protocol.StreamStatusCheck{Type: protocol.TypeStreamStatusCheck, PackageName: c.s.srv.cfg.PackageName, SessionID: c.s.ID, Timestamp: protocol.Now()}); err != nil {
		return protocol.StreamStatusCheckResponse{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return protocol.StreamStatusCheckResponse{}, ctx.Err()
	}
}
