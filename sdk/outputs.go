package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/glasscast/glasscast/protocol"
)

// OutputStatus is one restream output of a managed stream: its id, URL (the
// stream key hidden unless this app added it), who added it, and its status
// (connecting, active, reconnecting, error or stopped) with the last error,
// bytes sent and bitrate.
type OutputStatus = protocol.OutputStatus

// httpBase turns the session's WebSocket URL into the server's HTTP base.
func (s *Session) httpBase() (string, error) {
	u, err := url.Parse(s.wsURL)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "wss":
		u.Scheme = "https"
	default:
		u.Scheme = "http"
	}
	u.Path, u.RawQuery = "", ""
	return strings.TrimRight(u.String(), "/"), nil
}

// outputsCall makes a call to the restream routes (/api/streams/{id}/outputs)
// with the app's API key.
func (c *Camera) outputsCall(ctx context.Context, method, path string, body any, out any) error {
	base, err := c.s.httpBase()
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	u := base + "/api/streams/" + path + "?packageName=" + url.QueryEscape(c.s.srv.cfg.PackageName)
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.s.srv.cfg.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		var e struct{ Error, Message string }
		json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error, e.Message = fmt.Sprint(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return &StreamError{Code: protocol.ErrorCode(e.Error), Message: e.Message}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// AddOutput restreams the managed stream this app views to dest. It returns
// the output's id; errors match ErrOutputLimit, ErrDuplicateOutput,
// ErrInvalidURL or ErrNotFound.
func (c *Camera) AddOutput(ctx context.Context, streamID string, dest RestreamDestination) (string, error) {
	var res struct {
		OutputID string `json:"outputId"`
	}
	err := c.outputsCall(ctx, http.MethodPost, url.PathEscape(streamID)+"/outputs", dest, &res)
	return res.OutputID, err
}

// Outputs lists the managed stream's restream outputs.
func (c *Camera) Outputs(ctx context.Context, streamID string) ([]OutputStatus, error) {
	var res struct {
		Outputs []OutputStatus `json:"outputs"`
	}
	err := c.outputsCall(ctx, http.MethodGet, url.PathEscape(streamID)+"/outputs", nil, &res)
	return res.Outputs, err
}

// RemoveOutput stops an output this app added (ErrNotOwner for another
// app's).
func (c *Camera) RemoveOutput(ctx context.Context, streamID, outputID string) error {
	return c.outputsCall(ctx, http.MethodDelete, url.PathEscape(streamID)+"/outputs/"+url.PathEscape(outputID), nil, nil)
}
