// Package web serves glasscast's pages: the dashboard (/), the watch page of
// a stream (/watch/{id}), its public status (/watch/{id}/status) and the
// static assets they use, all built into the binary.
package web

import (
	"embed"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"

	"github.com/glasscast/glasscast/internal/access"
)

//go:embed assets
var assets embed.FS

var watchPage = template.Must(template.ParseFS(assets, "assets/watch.html"))

var dashboardPage = template.Must(template.ParseFS(assets, "assets/dashboard.html"))

// Dashboard serves the dashboard page at /. The page holds no stream data:
// it asks for the admin token and reads the admin API's event stream. Only
// the demo stream is linked for anyone: demoWatch returns the path of its
// watch page (the one the Streams API hands out), "" when there is none.
func Dashboard(demoWatch func() string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		dashboardPage.Execute(w, struct{ DemoWatch string }{demoWatch()})
	}
}

// Status is what anyone who knows a stream's id may see of it.
type Status struct {
	ID      string  `json:"id"`
	Name    string  `json:"name,omitempty"`
	Status  string  `json:"status"`
	Width   int     `json:"width,omitempty"`
	Height  int     `json:"height,omitempty"`
	FPS     float64 `json:"fps,omitempty"`
	Bitrate int64   `json:"bitrate,omitempty"`
	Viewers int     `json:"viewers"` // on every protocol
	// Recording is the stream's recording (its HLS playlist), when it is
	// recorded.
	Recording string `json:"recording,omitempty"`
}

// Lookup returns the public status of a stream that can be watched; grant is
// the path element the page was opened with (a playback token, or a public
// stream's id), which the links it hands on carry.
type Lookup func(id, grant string) (Status, bool)

// Handler serves the pages.
type Handler struct {
	lookup Lookup
	mux    *http.ServeMux
}

// New makes the pages' handler.
func New(lookup Lookup) *Handler {
	h := &Handler{lookup: lookup, mux: http.NewServeMux()}
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	h.mux.Handle("GET /assets/", http.StripPrefix("/assets/", cacheFor(files, "public, max-age=86400")))
	h.mux.HandleFunc("GET /watch/{id}", h.watch)
	h.mux.HandleFunc("GET /watch/{id}/status", h.status)
	return h
}

func cacheFor(next http.Handler, value string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", value)
		next.ServeHTTP(w, r)
	})
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) watch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	grant := access.Grant(r, id)
	st, ok := h.lookup(id, grant)
	if !ok {
		http.Error(w, "no such stream", http.StatusNotFound)
		return
	}
	title := st.Name
	if title == "" {
		title = "Stream " + id
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	watchPage.Execute(w, map[string]string{
		"Title":     title,
		"WHEP":      "/whep/" + grant,
		"HLS":       "/hls/" + grant + "/index.m3u8",
		"DASH":      "/dash/" + grant + "/manifest.mpd",
		"StatusURL": "/watch/" + grant + "/status",
	})
}

func (h *Handler) status(w http.ResponseWriter, r *http.Request) {
	st, ok := h.lookup(r.PathValue("id"), access.Grant(r, r.PathValue("id")))
	if !ok {
		http.Error(w, "no such stream", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	json.NewEncoder(w).Encode(st)
}
