package api

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/live"
	"github.com/glasscast/glasscast/internal/restream"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/protocol"
)

// OutputRequest is the body that adds a restream output.
type OutputRequest struct {
	URL         string `json:"url"`
	Name        string `json:"name,omitempty"`
	Profile     string `json:"profile,omitempty"`
	PackageName string `json:"packageName,omitempty"` // the MentraOS routes' way to name the app
}

// DecodeOutput reads and checks an output request body; it is what runs on
// untrusted input, exposed for its fuzz target.
func DecodeOutput(body io.Reader) (OutputRequest, error) {
	var req OutputRequest
	data, err := io.ReadAll(body)
	if err != nil {
		return req, err
	}
	if err := json.Unmarshal(data, &req); err != nil {
		return req, fmt.Errorf("the body is not a valid output request: %w", err)
	}
	if req.URL == "" {
		return req, errors.New("url is required")
	}
	if err := restream.CheckRequest(restream.Request{URL: req.URL, Name: req.Name, Profile: req.Profile}); err != nil {
		return req, err
	}
	return req, nil
}

// Outputs serves restream outputs: the admin routes under
// /api/v1/streams/{id}/outputs, and the MentraOS routes under
// /api/streams/{streamId}/outputs for apps (API key and package name) on
// the managed streams they view.
type Outputs struct {
	Mgr   *restream.Manager
	Reg   *live.Registry
	Plane *control.Plane
	Store *store.Store // durable streams' outputs
	Apps  store.Apps   // whose API keys the app routes check
	// Throttle, when set, slows down guessing of API keys.
	Throttle *auth.Throttle
	// Elsewhere, in a cluster, answers requests about streams other nodes
	// hold (nil on a single node).
	Elsewhere Elsewhere
}

// forwarded answers from the node that holds the stream, when that is
// another node: once this node has checked the app's API key, so that the
// request goes on with the app it was verified as, not the key.
func (o *Outputs) forwarded(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o.Elsewhere == nil {
			next(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			mentraError(w, http.StatusRequestEntityTooLarge, protocol.CodeBodyTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))
			return
		}
		var peek struct {
			PackageName string `json:"packageName"`
		}
		json.Unmarshal(body, &peek)
		pkg, ok := o.appAuth(w, r, peek.PackageName)
		if !ok {
			return
		}
		r = r.WithContext(WithPrincipal(r.Context(), AppPrincipal(pkg)))
		r.Body = io.NopCloser(bytes.NewReader(body))
		if o.Elsewhere.ServeManaged(w, r, r.PathValue("streamId")) {
			return
		}
		next(w, r)
	}
}

// adminForwarded answers from the node that holds the stream, when this
// node has no live stream by that id and another node does.
func (o *Outputs) adminForwarded(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if o.Elsewhere != nil {
			if st, err := o.Reg.Get(r.PathValue("id")); (err != nil || st.Status() == live.StatusEnded) && o.Elsewhere.ServeStream(w, r, r.PathValue("id")) {
				return
			}
		}
		next(w, r)
	}
}

// Register adds the routes; admin wraps the admin ones.
func (o *Outputs) Register(mux *http.ServeMux, admin func(http.Handler) http.Handler) {
	mux.Handle("/api/v1/streams/{id}/outputs", admin(o.adminForwarded(o.adminList)))
	mux.Handle("/api/v1/streams/{id}/outputs/{oid}", admin(o.adminForwarded(o.adminOne)))
	mux.HandleFunc("/api/streams/{streamId}/outputs", o.forwarded(o.appList))
	mux.HandleFunc("/api/streams/{streamId}/outputs/{outputId}", o.forwarded(o.appOne))
}

func (o *Outputs) liveStream(w http.ResponseWriter, id string) (*live.Stream, bool) {
	st, err := o.Reg.Get(id)
	if err != nil || st.Status() == live.StatusEnded {
		WriteError(w, http.StatusNotFound, protocol.APINotFound, "no live stream "+quote(id))
		return nil, false
	}
	return st, true
}

func readOutput(w http.ResponseWriter, r *http.Request) (OutputRequest, error) {
	req, err := DecodeOutput(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	return req, err
}

func (o *Outputs) adminList(w http.ResponseWriter, r *http.Request) {
	st, ok := o.liveStream(w, r.PathValue("id"))
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"outputs": nonNil(o.Mgr.List(st.ID()))})
	case http.MethodPost:
		req, err := readOutput(w, r)
		if err != nil {
			badBody(w, err)
			return
		}
		in, err := o.Mgr.Add(st, restream.Request{URL: req.URL, Name: req.Name, Profile: req.Profile, Owner: "admin"})
		if err == nil && st.Durable() && o.Store != nil {
			// The stream outlives a restart, and so must its outputs.
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			err = o.Store.PutOutput(ctx, store.Output{ID: in.ID, StreamID: st.ID(), URL: req.URL, Name: req.Name, Profile: req.Profile, Owner: "admin"})
			cancel()
			if err != nil {
				o.Mgr.Remove(st.ID(), in.ID, "admin")
				WriteError(w, http.StatusServiceUnavailable, protocol.APIUnavailable, "the output could not be saved: "+err.Error())
				return
			}
		}
		switch {
		case errors.Is(err, restream.ErrTooMany), errors.Is(err, restream.ErrDuplicate):
			WriteError(w, http.StatusConflict, protocol.APIConflict, err.Error())
		case err != nil:
			WriteError(w, http.StatusBadRequest, protocol.APIBadRequest, err.Error())
		default:
			w.Header().Set("Location", "/api/v1/streams/"+st.ID()+"/outputs/"+in.ID)
			writeJSON(w, http.StatusCreated, in)
		}
	default:
		methodNotAllowed(w, "GET, POST")
	}
}

func nonNil(in []restream.Info) []restream.Info {
	if in == nil {
		return []restream.Info{}
	}
	return in
}

func (o *Outputs) adminOne(w http.ResponseWriter, r *http.Request) {
	st, ok := o.liveStream(w, r.PathValue("id"))
	if !ok {
		return
	}
	oid := r.PathValue("oid")
	switch r.Method {
	case http.MethodGet:
		for _, in := range o.Mgr.List(st.ID()) {
			if in.ID == oid {
				writeJSON(w, http.StatusOK, in)
				return
			}
		}
		WriteError(w, http.StatusNotFound, protocol.APINotFound, "no output "+quote(oid))
	case http.MethodDelete:
		in, err := o.Mgr.Remove(st.ID(), oid, "admin")
		if err != nil {
			WriteError(w, http.StatusNotFound, protocol.APINotFound, "no output "+quote(oid))
			return
		}
		if st.Durable() && o.Store != nil {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			if err := o.Store.DeleteOutput(ctx, oid); err != nil {
				WriteError(w, http.StatusServiceUnavailable, protocol.APIUnavailable, "the output stopped but could not be forgotten (it comes back after a restart): "+err.Error())
				cancel()
				return
			}
			cancel()
		}
		writeJSON(w, http.StatusOK, in)
	default:
		methodNotAllowed(w, "GET, DELETE")
	}
}

// The MentraOS routes answer {"error": CODE, "message": ...} as the real
// system does.
func mentraError(w http.ResponseWriter, status int, code protocol.ErrorCode, message string) {
	writeJSON(w, status, map[string]string{"error": string(code), "message": message})
}

// appAuth checks the Bearer API key against the package name given in the
// query or the body.
func (o *Outputs) appAuth(w http.ResponseWriter, r *http.Request, bodyPkg string) (string, bool) {
	if verified := PrincipalOf(r.Context()).App(); verified != "" {
		// Checked already, here or by the node the request reached.
		if pkg := cmp.Or(r.URL.Query().Get("packageName"), bodyPkg); pkg != "" && pkg != verified {
			mentraError(w, http.StatusUnauthorized, protocol.CodeInvalidAPIKey, "Invalid API Key or Package Name")
			return "", false
		}
		return verified, true
	}
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || key == "" {
		mentraError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, "Missing or invalid Authorization header")
		return "", false
	}
	pkg := r.URL.Query().Get("packageName")
	if pkg == "" {
		pkg = bodyPkg
	}
	if pkg == "" {
		mentraError(w, http.StatusBadRequest, protocol.CodeMissingPackageName, "Package name required for API key validation")
		return "", false
	}
	addr := auth.ClientAddr(r.RemoteAddr)
	if d := o.Throttle.Blocked(addr); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)+1))
		mentraError(w, http.StatusTooManyRequests, protocol.CodeTooManyFailures, "Too many failed authentications from this address; try again later")
		return "", false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	app, err := o.Apps.App(ctx, pkg)
	if err != nil || !app.CheckKey(key) {
		o.Throttle.Failed(addr)
		mentraError(w, http.StatusUnauthorized, protocol.CodeInvalidAPIKey, "Invalid API Key or Package Name")
		return "", false
	}
	return pkg, true
}

func (o *Outputs) managed(w http.ResponseWriter, streamID, pkg string) (*live.Stream, bool) {
	st, err := o.Plane.ManagedStream(streamID, pkg)
	if err != nil {
		// A stream the app does not view gets the answer of one that does
		// not exist: an app cannot probe other users' stream ids.
		streamNotFound(w)
		return nil, false
	}
	return st, true
}

func streamNotFound(w http.ResponseWriter) {
	mentraError(w, http.StatusNotFound, protocol.CodeStreamNotFound, "Managed stream not found")
}

// outputJSON is an output as the MentraOS routes list it.
type outputJSON struct {
	OutputID string               `json:"outputId"`
	URL      string               `json:"url"`
	Name     string               `json:"name,omitempty"`
	AddedBy  string               `json:"addedBy"`
	Status   protocol.OutputState `json:"status"`
	Error    string               `json:"error,omitempty"`
	Bytes    uint64               `json:"bytes"`
	Bitrate  int64                `json:"bitrate"`
	Mode     string               `json:"mode,omitempty"`
}

func (o *Outputs) appList(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		pkg, ok := o.appAuth(w, r, "")
		if !ok {
			return
		}
		streamID := r.PathValue("streamId")
		st, ok := o.managed(w, streamID, pkg)
		if !ok {
			return
		}
		list := []outputJSON{}
		for _, in := range o.Mgr.List(st.ID()) {
			url := in.URL
			if in.Owner != pkg {
				url = restream.Redact(url)
			}
			list = append(list, outputJSON{OutputID: in.ID, URL: url, Name: in.Name, AddedBy: in.Owner, Status: in.Status,
				Error: in.Error, Bytes: in.Bytes, Bitrate: in.Bitrate, Mode: in.Mode})
		}
		writeJSON(w, http.StatusOK, map[string]any{"streamId": streamID, "outputs": list, "total": len(list),
			"maxPerStream": restream.MaxPerStream, "maxPerApp": restream.MaxPerOwner})
	case http.MethodPost:
		data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			mentraError(w, http.StatusRequestEntityTooLarge, protocol.CodeBodyTooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))
			return
		}
		var peek OutputRequest
		json.Unmarshal(data, &peek)
		pkg, ok := o.appAuth(w, r, peek.PackageName)
		if !ok {
			return
		}
		req, err := DecodeOutput(strings.NewReader(string(data)))
		if err != nil {
			code := protocol.CodeInvalidURL
			if req.URL != "" && !strings.HasPrefix(req.URL, "rtmp://") && !strings.HasPrefix(req.URL, "rtmps://") {
				code = protocol.CodeInvalidURLFormat
			}
			mentraError(w, http.StatusBadRequest, code, err.Error())
			return
		}
		st, ok := o.managed(w, r.PathValue("streamId"), pkg)
		if !ok {
			return
		}
		in, err := o.Mgr.Add(st, restream.Request{URL: req.URL, Name: req.Name, Profile: req.Profile, Owner: pkg})
		switch {
		case errors.Is(err, restream.ErrTooMany):
			mentraError(w, http.StatusConflict, protocol.CodeMaxOutputsReached, fmt.Sprintf("Stream has reached maximum of %d outputs", restream.MaxPerStream))
		case errors.Is(err, restream.ErrTooManyForOwner):
			mentraError(w, http.StatusConflict, protocol.CodeMaxAppOutputsReached, fmt.Sprintf("Your app has reached maximum of %d outputs for this stream", restream.MaxPerOwner))
		case errors.Is(err, restream.ErrDuplicate):
			mentraError(w, http.StatusConflict, protocol.CodeDuplicateURL, "This RTMP URL is already configured as an output")
		case err != nil:
			mentraError(w, http.StatusBadRequest, protocol.CodeInvalidURL, err.Error())
		default:
			writeJSON(w, http.StatusOK, map[string]any{"success": true, "outputId": in.ID, "message": "Output added successfully"})
		}
	default:
		methodNotAllowed(w, "GET, POST")
	}
}

func (o *Outputs) appOne(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodDelete {
		methodNotAllowed(w, "DELETE")
		return
	}
	pkg, ok := o.appAuth(w, r, "")
	if !ok {
		return
	}
	st, err := o.Plane.ManagedStream(r.PathValue("streamId"), pkg)
	viewer := err == nil
	if errors.Is(err, control.ErrNotViewer) {
		// An app that stopped viewing may still remove its own outputs.
		st, err = o.Plane.ManagedMedia(r.PathValue("streamId"))
	}
	if err != nil {
		streamNotFound(w)
		return
	}
	_, err = o.Mgr.Remove(st.ID(), r.PathValue("outputId"), pkg)
	switch {
	case err != nil && !viewer:
		// Not a viewer and not its output: as if the stream were not there.
		streamNotFound(w)
	case errors.Is(err, restream.ErrNotAuthorized):
		mentraError(w, http.StatusForbidden, protocol.CodeNotAuthorized, "Only the app that added an output may remove it")
	case err != nil:
		mentraError(w, http.StatusNotFound, protocol.CodeOutputNotFound, "Output not found")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"success": true, "message": "Output removed successfully"})
	}
}
