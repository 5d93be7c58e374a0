package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/glasscast/glasscast/protocol"
	"github.com/glasscast/glasscast/sdk"
)

// cloud is the cloud's end of an app's socket, played by the test: it
// acknowledges the app's init and hands the socket over.
type cloud struct {
	srv     *httptest.Server
	conns   chan *websocket.Conn
	closing chan struct{}
}

func newCloud(t *testing.T) *cloud {
	c := &cloud{conns: make(chan *websocket.Conn, 1), closing: make(chan struct{})}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		_, data, err := conn.Read(r.Context())
		if err != nil {
			return
		}
		var init protocol.AppConnectionInit
		json.Unmarshal(data, &init)
		ack, _ := json.Marshal(protocol.AppConnectionAck{Type: protocol.TypeAppConnectionAck, SessionID: init.SessionID, Settings: []any{}})
		conn.Write(r.Context(), websocket.MessageText, ack)
		c.conns <- conn
		<-c.closing // the socket lives until the test ends
		conn.CloseNow()
	}))
	t.Cleanup(func() {
		close(c.closing)
		c.srv.Close()
	})
	return c
}

// session starts an app session against the cloud, as a session webhook
// would, and returns the app's session and the cloud's socket.
func session(t *testing.T, c *cloud) (*sdk.Session, *websocket.Conn) {
	t.Helper()
	app := sdk.NewAppServer(sdk.Config{PackageName: "com.example.test", APIKey: "k"})
	sessions := make(chan *sdk.Session, 1)
	app.OnSession(func(ctx context.Context, s *sdk.Session) error {
		sessions <- s
		<-ctx.Done()
		return nil
	})
	hooks := httptest.NewServer(app.Handler())
	t.Cleanup(hooks.Close)
	body, _ := json.Marshal(protocol.SessionRequest{Type: protocol.WebhookSessionRequest, SessionID: "u-com.example.test", UserID: "u",
		MentraOSWebsocketURL: "ws" + strings.TrimPrefix(c.srv.URL, "http") + "/app-ws"})
	resp, err := http.Post(hooks.URL+"/webhook", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webhook: %d", resp.StatusCode)
	}
	var s *sdk.Session
	select {
	case s = <-sessions:
	case <-time.After(10 * time.Second):
		t.Fatal("no session")
	}
	conn := <-c.conns
	t.Cleanup(func() {
		conn.CloseNow() // the cloud goes first: the app's close needs no handshake
		s.Disconnect()
	})
	return s, conn
}

func send(t *testing.T, conn *websocket.Conn, msg any) {
	t.Helper()
	b, _ := json.Marshal(msg)
	if err := conn.Write(context.Background(), websocket.MessageText, b); err != nil {
		t.Fatal(err)
	}
}

// expect reads the app's next message, which must be of type typ.
func expect(t *testing.T, conn *websocket.Conn, typ string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		var head struct{ Type string }
		json.Unmarshal(data, &head)
		if head.Type == typ {
			return
		}
	}
}

// Every error code glasscast answers a managed request with comes back as
// the error apps branch on; the statuses carry the URLs.
func TestManagedAnswers(t *testing.T) {
	c := newCloud(t)
	s, conn := session(t, c)
	ctx := context.Background()
	for code, want := range map[protocol.ErrorCode]error{
		protocol.CodeCameraBusy:          sdk.ErrCameraBusy,
		protocol.CodeAlreadyStreaming:    sdk.ErrAlreadyStreaming,
		protocol.CodeInvalidConfig:       sdk.ErrInvalidOptions,
		protocol.CodeTimeout:             sdk.ErrTimeout,
		protocol.CodeKeepAliveTimeout:    sdk.ErrTimeout,
		protocol.CodeGlassesNotConnected: sdk.ErrGlassesNotConnected,
		protocol.CodeWifiNotConnected:    sdk.ErrGlassesNotConnected,
		protocol.CodePermissionDenied:    sdk.ErrPermissionDenied,
		protocol.CodeGlassesError:        sdk.ErrStreamFailed,
	} {
		errc := make(chan error, 1)
		go func() {
			_, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{})
			errc <- err
		}()
		expect(t, conn, protocol.TypeManagedStreamRequest)
		send(t, conn, protocol.AppConnectionError{Type: protocol.TypeAppConnectionError, Code: code, Message: "refused"})
		send(t, conn, protocol.ManagedStreamStatus{Type: protocol.TypeManagedStreamStatus, Status: protocol.StreamError, Code: code, Message: "refused"})
		err := <-errc
		var se *sdk.StreamError
		if !errors.Is(err, want) || !errors.As(err, &se) || se.Code != code {
			t.Errorf("%s: %v, want %v", code, err, want)
		}
	}

	res := make(chan sdk.ManagedStreamResult, 1)
	go func() {
		r, err := s.Camera.StartManagedStream(ctx, sdk.ManagedStreamOptions{})
		if err != nil {
			t.Error(err)
		}
		res <- r
	}()
	expect(t, conn, protocol.TypeManagedStreamRequest)
	send(t, conn, protocol.ManagedStreamStatus{Type: protocol.TypeManagedStreamStatus, Status: protocol.StreamInitializing, HLSURL: "h", StreamID: "m1"})
	if r := <-res; r.Active || r.HLSURL != "h" || r.StreamID != "m1" {
		t.Fatalf("initializing: %+v", r)
	}
	go func() {
		r, err := s.Camera.WaitManagedActive(ctx)
		if err != nil {
			t.Error(err)
		}
		res <- r
	}()
	send(t, conn, protocol.ManagedStreamStatus{Type: protocol.TypeManagedStreamStatus, Status: protocol.StreamActive, HLSURL: "h", StreamID: "m1"})
	if r := <-res; !r.Active || r.HLSURL != "h" {
		t.Fatalf("active: %+v", r)
	}
	if st := s.Camera.ManagedStreamStatus(); st == nil || st.Status != sdk.StatusActive || st.Status.String() != "active" {
		t.Fatalf("latest status: %+v", st)
	}
}
