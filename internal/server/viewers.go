package server

import (
	"hash/maphash"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// viewerWindow is how long after its last media request a client still
// counts as an LL-HLS or DASH viewer.
const viewerWindow = 10 * time.Second

// maxViewerEntries bounds what httpViewers remembers.
const maxViewerEntries = 100_000

// httpViewers estimates a stream's LL-HLS and DASH viewers: the distinct
// clients (address and User-Agent) that fetched its media in the last
// viewerWindow. Plain HTTP has no sessions, so it is an estimate: players
// of the same browser behind one address count once.
type httpViewers struct {
	exists func(id string) bool
	seed   maphash.Seed
	mu     sync.Mutex
	seen   map[string]map[viewerKey]time.Time // by stream
	total  int
}

type viewerKey struct {
	dash   bool
	client uint64
}

func newHTTPViewers(exists func(id string) bool) *httpViewers {
	return &httpViewers{exists: exists, seed: maphash.MakeSeed(), seen: map[string]map[viewerKey]time.Time{}}
}

// wrap counts the media requests next serves (playlists and manifests are
// not media).
func (v *httpViewers) wrap(proto string, next http.Handler) http.Handler {
	dash := proto == "dash"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file, id := r.PathValue("file"), r.PathValue("id")
		if !strings.HasSuffix(file, ".m3u8") && !strings.HasSuffix(file, ".mpd") && v.exists(id) {
			v.saw(dash, id, r)
		}
		next.ServeHTTP(w, r)
	})
}

func (v *httpViewers) saw(dash bool, id string, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	var h maphash.Hash
	h.SetSeed(v.seed)
	h.WriteString(host)
	h.WriteByte(0)
	h.WriteString(r.UserAgent())
	k := viewerKey{dash: dash, client: h.Sum64()}
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	m := v.seen[id]
	if _, ok := m[k]; !ok {
		if v.total >= maxViewerEntries {
			for id := range v.seen {
				v.pruneLocked(id, now)
			}
			if v.total >= maxViewerEntries {
				return
			}
		}
		if m == nil {
			m = map[viewerKey]time.Time{}
			v.seen[id] = m
		}
		v.total++
	}
	m[k] = now
}

func (v *httpViewers) pruneLocked(id string, now time.Time) {
	m := v.seen[id]
	for k, t := range m {
		if now.Sub(t) > viewerWindow {
			delete(m, k)
			v.total--
		}
	}
	if len(m) == 0 {
		delete(v.seen, id)
	}
}

// count returns a stream's LL-HLS and DASH viewers.
func (v *httpViewers) count(id string) (hls, dash int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pruneLocked(id, time.Now())
	for k := range v.seen[id] {
		if k.dash {
			dash++
		} else {
			hls++
		}
	}
	return hls, dash
}
