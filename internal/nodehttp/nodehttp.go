// Package nodehttp carries HTTP requests from one glasscast node to another
// over the cluster's NATS connection: a Transport (an http.RoundTripper,
// for httputil.ReverseProxy or an http.Client) on the asking node, and
// Serve, which answers them with the node's own handler, on the other.
//
// A request travels as one NATS request on glasscast.node.<node>.http: its
// method, URI, the few headers that matter, its body (bounded), the
// client's address and the principal the node it reached verified (never
// the client's token or key), in JSON, sealed with the cluster's key. The
// answer comes back as one message: its status and headers as NATS
// headers and its body as the data, sealed too, except a recording's
// pieces (Media), which are the stream's media and nothing more. An answer
// that does not fit in a NATS message is not dropped: the asker gets a 502
// saying so. A node answers at most MaxInFlight requests at once; more get
// 503 with Retry-After at once.
package nodehttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Sealer seals what travels between the nodes (cluster.Sealer).
type Sealer interface {
	Seal(subject string, msg []byte) []byte
	Open(subject string, sealed []byte) ([]byte, error)
}

// Subject is where node answers requests.
func Subject(node string) string { return "glasscast.node." + node + ".http" }

// answerSubject is what an answer to a request on subject is sealed for.
func answerSubject(subject string) string { return subject + " answer" }

// Headers are what a carried request keeps of its headers: no
// credentials (its principal stands for them), nothing hop-by-hop.
var Headers = []string{"Content-Type", "User-Agent", "Range", "If-Range", "If-Modified-Since", "If-None-Match"}

// MaxBody bounds a carried request's body.
const MaxBody = 1 << 20

// envelope is a request on its way.
type envelope struct {
	Method     string              `json:"method"`
	URI        string              `json:"uri"`
	Header     map[string][]string `json:"header"`
	Body       []byte              `json:"body,omitempty"`
	RemoteAddr string              `json:"remoteAddr"`
	Principal  string              `json:"principal,omitempty"`
	// Media asks for the answer unsealed (honoured for /recordings/
	// alone): sealing halved how fast a recording is passed on.
	Media bool `json:"media,omitempty"`
}

// media says an answer to uri may travel unsealed.
func media(uri string) bool { return strings.HasPrefix(uri, "/recordings/") }

// statusHeader carries an answer's status among its headers.
const statusHeader = "Glasscast-Status"

type ctxKey int

const (
	remoteKey ctxKey = iota
	mediaKey
)

// WithClient marks a request's context with the client's address, which
// the Transport carries (an outgoing request has none of its own).
func WithClient(ctx context.Context, remoteAddr string) context.Context {
	return context.WithValue(ctx, remoteKey, remoteAddr)
}

// WithMedia asks for the answer unsealed (a recording's piece).
func WithMedia(ctx context.Context) context.Context { return context.WithValue(ctx, mediaKey, true) }

// ErrNoNode is a request to a node that is not there (no responders).
var ErrNoNode = errors.New("nodehttp: the node is not reachable")

// Transport carries a request to the node its URL's host names.
type Transport struct {
	Conn *nats.Conn
	Seal Sealer
	// Principal is who the request's context says the client is ("":
	// nobody verified).
	Principal func(ctx context.Context) string
	// Timeout bounds a request (30 s if zero).
	Timeout time.Duration
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	node := r.URL.Host
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(body) > MaxBody {
			return nil, fmt.Errorf("nodehttp: a request body over %d bytes", MaxBody)
		}
	}
	env := envelope{Method: r.Method, URI: r.URL.RequestURI(), Header: map[string][]string{}, Body: body}
	env.RemoteAddr, _ = r.Context().Value(remoteKey).(string)
	env.Media, _ = r.Context().Value(mediaKey).(bool)
	if t.Principal != nil {
		env.Principal = t.Principal(r.Context())
	}
	for _, h := range Headers {
		if v := r.Header.Values(h); len(v) > 0 {
			env.Header[h] = v
		}
	}
	b, _ := json.Marshal(env)
	timeout := t.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	subject := Subject(node)
	msg, err := t.Conn.RequestWithContext(ctx, subject, t.Seal.Seal(subject, b))
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%w: %s", ErrNoNode, node)
	}
	if err != nil {
		return nil, fmt.Errorf("nodehttp: node %s: %w", node, err)
	}
	data := msg.Data
	if !env.Media || !media(env.URI) {
		if data, err = t.Seal.Open(answerSubject(subject), msg.Data); err != nil {
			return nil, fmt.Errorf("nodehttp: node %s: %w", node, err)
		}
	}
	status, err := strconv.Atoi(msg.Header.Get(statusHeader))
	if err != nil || status < 100 || status > 999 {
		return nil, fmt.Errorf("nodehttp: node %s answered with no status", node)
	}
	resp := &http.Response{Status: strconv.Itoa(status) + " " + http.StatusText(status), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Request: r,
		Body: io.NopCloser(bytes.NewReader(data)), ContentLength: int64(len(data))}
	for k, v := range msg.Header {
		if k != statusHeader {
			resp.Header[k] = v
		}
	}
	if r.Method == http.MethodHead {
		resp.Body, resp.ContentLength = http.NoBody, -1
		if n, err := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64); err == nil {
			resp.ContentLength = n
		}
	}
	return resp, nil
}

// Options tune Serve.
type Options struct {
	Seal Sealer
	// Principal puts the principal the asking node verified in the
	// request's context ("" is nobody).
	Principal func(ctx context.Context, principal string) context.Context
	// MaxInFlight bounds the requests answered at once (64 if zero).
	MaxInFlight int
}

// Serve answers the requests carried to node with handler, until the
// returned stop is called (which waits for those being answered).
func Serve(conn *nats.Conn, node string, handler http.Handler, o Options) (stop func(), err error) {
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 64
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	slots := make(chan struct{}, o.MaxInFlight)
	subject := Subject(node)
	// An answer's body fits in a message with room for its headers and
	// the seal.
	limit := int(conn.MaxPayload()) - 16<<10
	sub, err := conn.Subscribe(subject, func(m *nats.Msg) {
		var env envelope
		plain, err := o.Seal.Open(subject, m.Data)
		if err != nil || json.Unmarshal(plain, &env) != nil || m.Reply == "" || len(env.Body) > MaxBody {
			return
		}
		answer := func(status int, header http.Header, body []byte) {
			out := nats.NewMsg(m.Reply)
			for k, v := range header {
				out.Header[k] = v
			}
			out.Header.Set(statusHeader, strconv.Itoa(status))
			out.Data = body
			if !env.Media || !media(env.URI) {
				out.Data = o.Seal.Seal(answerSubject(subject), body)
			}
			m.RespondMsg(out)
		}
		select {
		case slots <- struct{}{}:
		default:
			answer(http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}, "Content-Type": {"text/plain; charset=utf-8"}},
				[]byte(fmt.Sprintf("node %s is answering its most requests from other nodes at once (%d): try again\n", node, o.MaxInFlight)))
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			rctx := ctx
			if o.Principal != nil && env.Principal != "" {
				rctx = o.Principal(ctx, env.Principal)
			}
			r, err := http.NewRequestWithContext(rctx, env.Method, env.URI, bytes.NewReader(env.Body))
			if err != nil {
				answer(http.StatusBadRequest, nil, []byte("a request that does not parse\n"))
				return
			}
			for _, h := range Headers {
				if v := env.Header[h]; len(v) > 0 {
					r.Header[h] = v
				}
			}
			r.RemoteAddr = env.RemoteAddr
			rec := &recorder{header: http.Header{}, limit: limit}
			handler.ServeHTTP(rec, r)
			if rec.over > 0 {
				answer(http.StatusBadGateway, http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
					[]byte(fmt.Sprintf("node %s's answer is too large to pass between nodes (over %d bytes; at most %d): ask for a range of it\n", node, rec.over, limit)))
				return
			}
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			answer(rec.status, rec.header, rec.body.Bytes())
		}()
	})
	if err == nil {
		err = conn.Flush() // the server has the subscription: asking nodes find it
	}
	if err != nil {
		if sub != nil {
			sub.Unsubscribe()
		}
		cancel()
		return nil, err
	}
	return sync.OnceFunc(func() {
		sub.Unsubscribe()
		cancel()
		wg.Wait()
	}), nil
}

// recorder keeps a handler's answer, up to limit bytes of body.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	limit  int
	over   int // the body's size once it went over limit
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	if rec.over > 0 || rec.body.Len()+len(b) > rec.limit {
		rec.over = max(rec.over, rec.body.Len()) + len(b)
		rec.body.Reset()
		return len(b), nil
	}
	return rec.body.Write(b)
}

func (rec *recorder) WriteHeader(status int) {
	if rec.status == 0 {
		rec.status = status
	}
}
