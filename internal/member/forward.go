package member

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/api"
	"github.com/glasscast/glasscast/internal/nodehttp"
)

// An API request about a stream, recording or managed stream another node
// holds is answered by that node: carried over NATS by nodehttp (the
// principal the node it reached verified travels with it, never the
// client's token or key; bodies sealed), through a reverse proxy whose
// transport is NATS.

// nodeTransport is this node's way to the others' handlers.
func (m *Member) nodeTransport() *nodehttp.Transport {
	return &nodehttp.Transport{Conn: m.c.Conn(), Seal: m.seal,
		Principal: func(ctx context.Context) string { return string(api.PrincipalOf(ctx)) }}
}

// forwardTo answers r from node.
func (m *Member) forwardTo(w http.ResponseWriter, r *http.Request, node string) {
	r = r.WithContext(nodehttp.WithClient(r.Context(), r.RemoteAddr))
	r.Body = http.MaxBytesReader(w, r.Body, api.MaxBodyBytes)
	proxy := &httputil.ReverseProxy{
		Transport: m.nodes,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", node
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
				http.Error(w, "the body is too large", http.StatusRequestEntityTooLarge)
				return
			}
			m.log.Debug("cluster: a forwarded request failed", "node", node, "err", err)
			http.Error(w, "the node that holds it ("+node+") did not answer", http.StatusBadGateway)
		},
	}
	proxy.ServeHTTP(w, r)
}

// serveForwarded answers, with handler, the requests other nodes forward
// here.
func (m *Member) serveForwarded(handler http.Handler) error {
	stop, err := nodehttp.Serve(m.c.Conn(), m.c.Node(), handler, nodehttp.Options{Seal: m.seal,
		Principal: func(ctx context.Context, p string) context.Context {
			if pr := api.Principal(p); pr.Valid() { // verified by a member, the node the request reached
				return api.WithPrincipal(ctx, pr)
			}
			return ctx
		}})
	if err != nil {
		return err
	}
	prev := m.stopSessions
	m.stopSessions = func() { stop(); prev() }
	m.undo.push(stop)
	return nil
}

// streamElsewhere forwards a request about a stream another live node holds
// to that node.
func (m *Member) streamElsewhere(w http.ResponseWriter, r *http.Request, streamID string) bool {
	e, err := m.c.Streams().Find(r.Context(), streamID)
	if err != nil || e.Origin == m.c.Node() || !m.c.Alive(e.Origin) {
		return false
	}
	m.forwardTo(w, r, e.Origin)
	return true
}

// outputsElsewhere forwards an app's outputs request about a managed stream
// this node does not hold to the node that does.
func (m *Member) outputsElsewhere(w http.ResponseWriter, r *http.Request, streamID string) bool {
	if _, err := m.p().Plane.ManagedMedia(streamID); err == nil {
		return false
	}
	home := m.managedHome(r.Context(), streamID)
	if home == "" || home == m.c.Node() {
		return false
	}
	m.forwardTo(w, r, home)
	return true
}

// managedHome is the node that holds a managed stream: the home of its user
// in the cluster's directory or, when the directory has not heard of the
// stream yet (it is written on a queue, and an app may call the moment it
// learns the id), the node among the live ones that answers that it holds it.
func (m *Member) managedHome(ctx context.Context, streamID string) string {
	users := m.c.Users()
	if user, err := users.ManagedUser(ctx, streamID); err == nil && user != "" {
		if home, err := users.Home(ctx, user); err == nil && home != "" {
			return home
		}
	}
	return string(m.askAll(ctx, managedWhoSubject, []byte(streamID)))
}

// askAll asks every live node a question on subject and returns the first
// answer that is not empty; nil once every node (this one too) answered
// with nothing, or after a second.
func (m *Member) askAll(ctx context.Context, subject string, question []byte) []byte {
	alive := 0
	for _, n := range m.c.Nodes() {
		if n.Alive {
			alive++
		}
	}
	nc := m.c.Conn()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer sub.Unsubscribe()
	if nc.PublishRequest(subject, inbox, question) != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for ; alive > 0; alive-- {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil
		}
		if len(msg.Data) > 0 {
			return msg.Data
		}
	}
	return nil
}

// whepEndSubject asks every node to end a WebRTC session ("stream/session"):
// behind a load balancer, a player's DELETE of its session's URL may reach
// another node than the one that holds the session.
const whepEndSubject = "glasscast.whep.end"

// whepAnywhere passes a DELETE of a WebRTC session this node does not hold
// to the node that does.
func (m *Member) whepAnywhere(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, session := r.PathValue("id"), r.PathValue("session")
		if r.Method != http.MethodDelete || m.p().RTC.HasSession(id, session) {
			next.ServeHTTP(w, r)
			return
		}
		if _, known := m.c.Streams().Lookup(id); !known {
			next.ServeHTTP(w, r) // no such stream anywhere: nothing to ask the others
			return
		}
		if m.askAll(r.Context(), whepEndSubject, []byte(id+"/"+session)) == nil {
			next.ServeHTTP(w, r) // nobody has it: not found
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.WriteHeader(http.StatusOK)
	})
}

// managedWhoSubject asks every node whether it holds a managed stream; the
// one that does answers with its name, the others with nothing.
const managedWhoSubject = "glasscast.managed.who"

// serveManagedWho answers the question for this node's managed streams.
func (m *Member) serveManagedWho() error {
	return m.answerAll(managedWhoSubject, func(id string) bool {
		_, ok := m.managed.Lookup(id)
		return ok
	})
}

// serveWHEPEnd ends this node's WebRTC sessions other nodes were asked to.
func (m *Member) serveWHEPEnd() error {
	return m.answerAll(whepEndSubject, func(q string) bool {
		id, session, ok := strings.Cut(q, "/")
		return ok && m.p().RTC.EndSession(id, session)
	})
}

// answerAll answers askAll's questions on subject: this node's name when
// yes says so, nothing otherwise.
func (m *Member) answerAll(subject string, yes func(question string) bool) error {
	node := []byte(m.c.Node())
	sub, err := m.c.Conn().Subscribe(subject, func(msg *nats.Msg) {
		if msg.Reply == "" {
			return
		}
		var answer []byte
		if yes(string(msg.Data)) {
			answer = node
		}
		msg.Respond(answer)
	})
	if err != nil {
		return err
	}
	m.undo.push(func() { sub.Unsubscribe() })
	return nil
}
