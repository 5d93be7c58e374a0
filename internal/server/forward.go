package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/glasscast/glasscast/internal/api"
)

// An API request about a stream another node holds is answered by that
// node: the request goes over NATS (glasscast.node.<node>.http) as it came
// — method, path, query, the headers that matter, body, client address, in
// JSON — but for its credentials: the node it reached checked its admin
// token or API key, and it carries the principal that node verified
// (api.Principal), never the secret itself. The answer comes back as a NATS message whose headers are the
// answer's (and its status, in Glasscast-Status) and whose data is its
// body, as it is (a piece of a recording is half a megabyte). Both
// bodies are sealed (cluster.Sealer): an output's platform key or a
// stream's ingest URL is read by the two nodes alone.

// forwardedHeaders are what a forwarded request keeps of its headers (no
// credentials: its principal stands for them).
var forwardedHeaders = []string{"Content-Type", "User-Agent", "Range"}

// httpRequest is a request on its way to the node that answers it.
type httpRequest struct {
	Method     string              `json:"method"`
	URI        string              `json:"uri"`
	Header     map[string][]string `json:"header"`
	Body       []byte              `json:"body,omitempty"`
	RemoteAddr string              `json:"remoteAddr"`
	// Principal is who the node the request reached verified it as.
	Principal api.Principal `json:"principal,omitempty"`
	// Media asks for the answer's body unsealed: a piece of a recording,
	// which is the stream's media and nothing more (it is honoured for
	// /recordings/ alone). Sealing halved how fast a recording is passed on.
	Media bool `json:"media,omitempty"`
}

// mediaURI says a forwarded request may have its answer unsealed.
func mediaURI(uri string) bool { return strings.HasPrefix(uri, "/recordings/") }

// httpResponse is its answer.
type httpResponse struct {
	Status int
	Header map[string][]string
	Body   []byte
}

// statusHeader carries an answer's status among its headers.
const statusHeader = "Glasscast-Status"

func httpSubject(node string) string { return "glasscast.node." + node + ".http" }

// answerSubject is what an answer to a request on subject is sealed for.
func answerSubject(subject string) string { return subject + " answer" }

// forwardTo answers r from node.
func (s *Server) forwardTo(w http.ResponseWriter, r *http.Request, node string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
	if err != nil {
		http.Error(w, "the body is too large", http.StatusRequestEntityTooLarge)
		return
	}
	req := httpRequest{Method: r.Method, URI: r.URL.RequestURI(), Header: map[string][]string{}, Body: body, RemoteAddr: r.RemoteAddr,
		Principal: api.PrincipalOf(r.Context())}
	for _, h := range forwardedHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	resp, err := s.ask(r.Context(), node, req)
	if err != nil {
		http.Error(w, "the node that holds the stream ("+node+") did not answer", http.StatusBadGateway)
		return
	}
	resp.write(w)
}

// ask has node answer req.
func (s *Server) ask(ctx context.Context, node string, req httpRequest) (httpResponse, error) {
	b, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	subject := httpSubject(node)
	msg, err := s.cluster.Conn().RequestWithContext(ctx, subject, s.seal.Seal(subject, b))
	if err != nil {
		return httpResponse{}, err
	}
	body := msg.Data
	if !req.Media || !mediaURI(req.URI) {
		if body, err = s.seal.Open(answerSubject(subject), msg.Data); err != nil {
			return httpResponse{}, fmt.Errorf("node %s: %w", node, err)
		}
	}
	status, err := strconv.Atoi(msg.Header.Get(statusHeader))
	if err != nil || status < 100 || status > 999 {
		return httpResponse{}, fmt.Errorf("node %s answered with no status", node)
	}
	resp := httpResponse{Status: status, Header: map[string][]string{}, Body: body}
	for k, v := range msg.Header {
		if k != statusHeader {
			resp.Header[k] = v
		}
	}
	return resp, nil
}

// write passes the answer on as it came.
func (resp httpResponse) write(w http.ResponseWriter) {
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.Status)
	w.Write(resp.Body)
}

// recorder keeps a handler's answer.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.header }
func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return rec.body.Write(b)
}
func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}

// serveForwarded answers, with handler, the requests other nodes forward
// here.
func (s *Server) serveForwarded(handler http.Handler) error {
	c := s.cluster
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	subject := httpSubject(c.Node())
	sub, err := c.Conn().Subscribe(subject, func(m *nats.Msg) {
		var req httpRequest
		plain, err := s.seal.Open(subject, m.Data)
		if err != nil || json.Unmarshal(plain, &req) != nil || m.Reply == "" || len(req.Body) > api.MaxBodyBytes {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx := ctx
			if req.Principal.Valid() { // verified by a member, the node the request reached
				rctx = api.WithPrincipal(ctx, req.Principal)
			}
			r, err := http.NewRequestWithContext(rctx, req.Method, req.URI, bytes.NewReader(req.Body))
			if err != nil {
				return
			}
			for _, h := range forwardedHeaders {
				if v := req.Header[h]; len(v) > 0 {
					r.Header[h] = v
				}
			}
			r.RemoteAddr = req.RemoteAddr
			rec := &recorder{header: http.Header{}}
			handler.ServeHTTP(rec, r)
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			out := nats.NewMsg(m.Reply)
			for k, v := range rec.header {
				out.Header[k] = v
			}
			out.Header.Set(statusHeader, strconv.Itoa(rec.status))
			out.Data = rec.body.Bytes()
			if !req.Media || !mediaURI(req.URI) {
				out.Data = s.seal.Seal(answerSubject(subject), out.Data)
			}
			m.RespondMsg(out)
		}()
	})
	if err != nil {
		cancel()
		return err
	}
	stop := sync.OnceFunc(func() {
		sub.Unsubscribe()
		cancel()
		wg.Wait()
	})
	prev := s.stopSessions
	s.stopSessions = func() { stop(); prev() }
	s.undo.push(stop)
	return nil
}

// streamElsewhere forwards a request about a stream another live node holds
// to that node.
func (s *Server) streamElsewhere(w http.ResponseWriter, r *http.Request, streamID string) bool {
	e, err := s.cluster.Streams().Find(r.Context(), streamID)
	if err != nil || e.Origin == s.cluster.Node() || !s.cluster.Alive(e.Origin) {
		return false
	}
	s.forwardTo(w, r, e.Origin)
	return true
}

// outputsElsewhere forwards an app's outputs request about a managed stream
// this node does not hold to the node that does.
func (s *Server) outputsElsewhere(w http.ResponseWriter, r *http.Request, streamID string) bool {
	if _, err := s.plane.ManagedMedia(streamID); err == nil {
		return false
	}
	home := s.managedHome(r.Context(), streamID)
	if home == "" || home == s.cluster.Node() {
		return false
	}
	s.forwardTo(w, r, home)
	return true
}

// managedHome is the node that holds a managed stream: the home of its user
// in the cluster's directory or, when the directory has not heard of the
// stream yet (it is written on a queue, and an app may call the moment it
// learns the id), the node among the live ones that answers that it holds it.
func (s *Server) managedHome(ctx context.Context, streamID string) string {
	users := s.cluster.Users()
	if user, err := users.ManagedUser(ctx, streamID); err == nil && user != "" {
		if home, err := users.Home(ctx, user); err == nil && home != "" {
			return home
		}
	}
	return string(s.askAll(ctx, managedWhoSubject, []byte(streamID)))
}

// askAll asks every live node a question on subject and returns the first
// answer that is not empty; nil once every node (this one too) answered
// with nothing, or after a second.
func (s *Server) askAll(ctx context.Context, subject string, question []byte) []byte {
	alive := 0
	for _, n := range s.cluster.Nodes() {
		if n.Alive {
			alive++
		}
	}
	nc := s.cluster.Conn()
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
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil
		}
		if len(m.Data) > 0 {
			return m.Data
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
func (s *Server) whepAnywhere(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, session := r.PathValue("id"), r.PathValue("session")
		if r.Method != http.MethodDelete || s.rtc.HasSession(id, session) {
			next.ServeHTTP(w, r)
			return
		}
		if _, known := s.cluster.Streams().Lookup(id); !known {
			next.ServeHTTP(w, r) // no such stream anywhere: nothing to ask the others
			return
		}
		if s.askAll(r.Context(), whepEndSubject, []byte(id+"/"+session)) == nil {
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
func (s *Server) serveManagedWho() error {
	return s.answerAll(managedWhoSubject, func(id string) bool {
		_, ok := s.managed.Lookup(id)
		return ok
	})
}

// serveWHEPEnd ends this node's WebRTC sessions other nodes were asked to.
func (s *Server) serveWHEPEnd() error {
	return s.answerAll(whepEndSubject, func(q string) bool {
		id, session, ok := strings.Cut(q, "/")
		return ok && s.rtc.EndSession(id, session)
	})
}

// answerAll answers askAll's questions on subject: this node's name when
// yes says so, nothing otherwise.
func (s *Server) answerAll(subject string, yes func(question string) bool) error {
	node := []byte(s.cluster.Node())
	sub, err := s.cluster.Conn().Subscribe(subject, func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		var answer []byte
		if yes(string(m.Data)) {
			answer = node
		}
		m.Respond(answer)
	})
	if err != nil {
		return err
	}
	s.undo.push(func() { sub.Unsubscribe() })
	return nil
}
