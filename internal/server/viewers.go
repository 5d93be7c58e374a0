package server

import (
	"hash/maphash"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/glasscast/glasscast/internal/cmaf"
)

// viewerWindow is how long after its last request a player still counts as
// an LL-HLS or DASH viewer.
const viewerWindow = 10 * time.Second

// maxViewerEntries bounds what httpViewers remembers.
const maxViewerEntries = 100_000

// httpViewers counts a stream's LL-HLS and DASH viewers: the player
// sessions (cmaf.SessionParam, handed out by the multivariant playlist and
// the manifest's Location) that fetched a playlist or manifest in the last
// viewerWindow, and, for players that do not carry one, the distinct
// clients (address and User-Agent) that fetched media and have no session.
type httpViewers struct {
	exists func(id string) bool
	seed   maphash.Seed
	mu     sync.Mutex
	seen   map[string]map[viewerKey]viewerSeen // by stream
	total  int
}

type viewerKey struct {
	dash    bool
	session bool   // h is a session's hash; otherwise a client's
	h       uint64 // the hash of the session or of the client
}

type viewerSeen struct {
	at     time.Time
	client uint64 // the client (address and User-Agent) a session came from
}

func newHTTPViewers(exists func(id string) bool) *httpViewers {
	return &httpViewers{exists: exists, seed: maphash.MakeSeed(), seen: map[string]map[viewerKey]viewerSeen{}}
}

// wrap counts the requests next serves: playlists and manifests with a
// session count that session; media without one counts its client.
func (v *httpViewers) wrap(proto string, next http.Handler) http.Handler {
	dash := proto == "dash"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file, id := r.PathValue("file"), r.PathValue("id")
		listing := strings.HasSuffix(file, ".m3u8") || strings.HasSuffix(file, ".mpd")
		session, ok := cmaf.Session(r)
		if (ok && listing || !listing) && v.exists(id) {
			v.saw(dash, id, session, r)
		}
		next.ServeHTTP(w, r)
	})
}

func (v *httpViewers) saw(dash bool, id, session string, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	var h maphash.Hash
	h.SetSeed(v.seed)
	h.WriteString(host)
	h.WriteByte(0)
	h.WriteString(r.UserAgent())
	client := h.Sum64()
	k := viewerKey{dash: dash, h: client}
	if session != "" {
		h.Reset()
		h.WriteString(session)
		k = viewerKey{dash: dash, session: true, h: h.Sum64()}
	}
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
			m = map[viewerKey]viewerSeen{}
			v.seen[id] = m
		}
		v.total++
	}
	m[k] = viewerSeen{at: now, client: client}
}

func (v *httpViewers) pruneLocked(id string, now time.Time) {
	m := v.seen[id]
	for k, s := range m {
		if now.Sub(s.at) > viewerWindow {
			delete(m, k)
			v.total--
		}
	}
	if len(m) == 0 {
		delete(v.seen, id)
	}
}

// count returns a stream's LL-HLS and DASH viewers: its sessions, and the
// clients without a session whose media requests no session explains.
func (v *httpViewers) count(id string) (hls, dash int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.pruneLocked(id, time.Now())
	m := v.seen[id]
	sessionClients := map[viewerKey]bool{}
	for k, s := range m {
		if k.session {
			sessionClients[viewerKey{dash: k.dash, h: s.client}] = true
		}
	}
	for k := range m {
		if !k.session && sessionClients[k] {
			continue
		}
		if k.dash {
			dash++
		} else {
			hls++
		}
	}
	return hls, dash
}
