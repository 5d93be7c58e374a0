package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/glasscast/glasscast/internal/auth"
	"github.com/glasscast/glasscast/internal/control"
	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/protocol"
)

// WebhookClient posts webhooks to app servers.
type WebhookClient struct {
	HTTP *http.Client
}

// Post implements control.Webhooks: POST publicURL/webhook with a JSON body;
// anything but a 2xx is an error.
func (c *WebhookClient) Post(ctx context.Context, publicURL string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(publicURL, "/")+"/webhook", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// AppJSON is an app on the wire. The API key is shown once, at creation.
type AppJSON struct {
	PackageName string    `json:"packageName"`
	Name        string    `json:"name,omitempty"`
	PublicURL   string    `json:"publicUrl"`
	Permissions []string  `json:"permissions"`
	CreatedAt   time.Time `json:"createdAt"`
	APIKey      string    `json:"apiKey,omitempty"`
}

func appJSON(a store.App) AppJSON {
	perms := a.Permissions
	if perms == nil {
		perms = []string{}
	}
	return AppJSON{PackageName: a.PackageName, Name: a.Name, PublicURL: a.PublicURL, Permissions: perms, CreatedAt: a.CreatedAt}
}

var packageRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*(\.[a-zA-Z0-9_]+)+$`)

// NewAppRequest is the body of POST /api/v1/apps.
type NewAppRequest struct {
	PackageName string   `json:"packageName"`
	Name        string   `json:"name"`
	PublicURL   string   `json:"publicUrl"`
	Permissions []string `json:"permissions"`
	APIKey      string   `json:"apiKey"`
}

// CheckApp validates an app's description and returns it ready to store,
// with its API key (generated when none is given).
func CheckApp(req NewAppRequest) (store.App, string, error) {
	if len(req.PackageName) > 200 || !packageRE.MatchString(req.PackageName) {
		return store.App{}, "", errors.New("packageName must look like com.example.app")
	}
	u, err := url.Parse(req.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(req.PublicURL) > 2048 {
		return store.App{}, "", errors.New("publicUrl must be the app server's http:// or https:// base URL")
	}
	if len(req.Name) > MaxNameLength {
		return store.App{}, "", fmt.Errorf("name is longer than %d bytes", MaxNameLength)
	}
	perms := req.Permissions
	if perms == nil {
		perms = []string{store.PermissionCamera}
	}
	for _, p := range perms {
		if p != store.PermissionCamera {
			return store.App{}, "", fmt.Errorf("unknown permission %q (known: %s)", p, store.PermissionCamera)
		}
	}
	key := req.APIKey
	if key == "" {
		key = store.NewAPIKey()
	} else if len(key) < 16 || len(key) > 256 {
		return store.App{}, "", errors.New("apiKey must be 16 to 256 characters")
	}
	return store.App{PackageName: req.PackageName, Name: req.Name, PublicURL: strings.TrimSuffix(req.PublicURL, "/"),
		KeyHash: store.HashKey(key), Permissions: perms}, key, nil
}

// Apps serves the apps API (admin token) and the user's app start/stop
// (core token), as the phone calls them.
type Apps struct {
	Store  store.Apps
	Plane  *control.Plane
	Secret []byte
	// Throttle, when set, slows down guessing of core tokens.
	Throttle *auth.Throttle
	// Elsewhere, in a cluster, answers a user's start or stop from the
	// node that holds the user's session (nil on a single node).
	Elsewhere Elsewhere
}

// Register adds the routes; admin wraps the admin-only ones.
func (a *Apps) Register(mux *http.ServeMux, admin func(http.Handler) http.Handler) {
	mux.Handle("/api/v1/apps", admin(http.HandlerFunc(a.apps)))
	mux.Handle("/api/v1/apps/{pkg}", admin(http.HandlerFunc(a.oneApp)))
	mux.HandleFunc("/api/v1/me/apps/{pkg}/{action}", a.userAction)
}

func (a *Apps) apps(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		list, err := a.Store.Apps(r.Context())
		if err != nil {
			WriteError(w, http.StatusInternalServerError, protocol.APIUnavailable, err.Error())
			return
		}
		out := make([]AppJSON, 0, len(list))
		for _, app := range list {
			out = append(out, appJSON(app))
		}
		writeJSON(w, http.StatusOK, map[string]any{"apps": out})
	case http.MethodPost:
		var req NewAppRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				WriteError(w, http.StatusRequestEntityTooLarge, protocol.APITooLarge, fmt.Sprintf("the body is larger than %d bytes", MaxBodyBytes))
				return
			}
			WriteError(w, http.StatusBadRequest, protocol.APIBadRequest, "the body is not a valid app: "+err.Error())
			return
		}
		app, key, err := CheckApp(req)
		if err != nil {
			WriteError(w, http.StatusBadRequest, protocol.APIBadRequest, err.Error())
			return
		}
		if err := a.Store.AddApp(r.Context(), app); errors.Is(err, store.ErrExists) {
			WriteError(w, http.StatusConflict, "conflict", "an app with this packageName exists")
			return
		} else if err != nil {
			WriteError(w, http.StatusInternalServerError, protocol.APIUnavailable, err.Error())
			return
		}
		out := appJSON(app)
		out.APIKey = key
		writeJSON(w, http.StatusCreated, out)
	default:
		methodNotAllowed(w, "GET, POST")
	}
}

func (a *Apps) oneApp(w http.ResponseWriter, r *http.Request) {
	pkg := r.PathValue("pkg")
	switch r.Method {
	case http.MethodGet:
		app, err := a.Store.App(r.Context(), pkg)
		if errors.Is(err, store.ErrNotFound) {
			WriteError(w, http.StatusNotFound, protocol.APINotFound, "no app "+quote(pkg))
			return
		} else if err != nil {
			WriteError(w, http.StatusInternalServerError, protocol.APIUnavailable, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, appJSON(app))
	case http.MethodDelete:
		if err := a.Store.DeleteApp(r.Context(), pkg); errors.Is(err, store.ErrNotFound) {
			WriteError(w, http.StatusNotFound, protocol.APINotFound, "no app "+quote(pkg))
			return
		} else if err != nil {
			WriteError(w, http.StatusInternalServerError, protocol.APIUnavailable, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		methodNotAllowed(w, "GET, DELETE")
	}
}

// userAction starts or stops an app for the user whose core token comes with
// the request.
func (a *Apps) userAction(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	addr := auth.ClientAddr(r.RemoteAddr)
	if TooManyFailures(w, a.Throttle, addr) {
		return
	}
	user, err := auth.Verify(a.Secret, tokenFrom(r))
	if err != nil {
		a.Throttle.Failed(addr)
		WriteError(w, http.StatusUnauthorized, protocol.APIUnauthorized, "a valid core token is required (Authorization: Bearer <token>)")
		return
	}
	pkg, action := r.PathValue("pkg"), r.PathValue("action")
	if a.Elsewhere != nil {
		if status, body, ok := a.Elsewhere.StartStop(r.Context(), user, pkg, action); ok {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			w.Write(body)
			return
		}
	}
	status, body := a.Act(r.Context(), user, pkg, action)
	writeJSON(w, status, body)
}

// Act starts or stops an app for a user on this node, and says what to
// answer: an HTTP status and a JSON body.
func (a *Apps) Act(ctx context.Context, user, pkg, action string) (int, any) {
	fail := func(status int, code protocol.ErrorCode, message string) (int, any) {
		var b errorBody
		b.Error.Code, b.Error.Message = code, message
		return status, b
	}
	switch action {
	case "start":
		ctx, cancel := context.WithTimeout(ctx, a.Plane.StartTimeout()+5*time.Second)
		defer cancel()
		err := a.Plane.StartApp(ctx, user, pkg)
		switch {
		case errors.Is(err, control.ErrUnknownApp):
			return fail(http.StatusNotFound, protocol.APINotFound, "no app "+quote(pkg))
		case errors.Is(err, control.ErrAppBadKey):
			return fail(http.StatusBadGateway, "app_bad_api_key", "the app server opened its session with an API key glasscast does not accept for "+quote(pkg)+": give it the key `glasscast apps add` printed")
		case errors.Is(err, control.ErrAppDidNotConnect), errors.Is(err, context.DeadlineExceeded):
			return fail(http.StatusGatewayTimeout, "app_timeout", "the app server did not open its session within "+a.Plane.Config().AppInitTimeout.String())
		case err != nil:
			return fail(http.StatusBadGateway, "app_unreachable", err.Error())
		}
		return http.StatusOK, map[string]string{"packageName": pkg, "status": "running"}
	case "stop":
		if err := a.Plane.StopApp(ctx, user, pkg); err != nil {
			return fail(http.StatusNotFound, protocol.APINotFound, "app "+quote(pkg)+" is not running")
		}
		return http.StatusOK, map[string]string{"packageName": pkg, "status": "stopped"}
	}
	return fail(http.StatusNotFound, protocol.APINotFound, "no such action: use start or stop")
}
