package member

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/glasscast/glasscast/protocol"
)

// sent is a peer that keeps what it is sent, as the app would read it.
type sent struct{ msgs []map[string]any }

func (p *sent) Send(msg any) {
	b, _ := json.Marshal(msg)
	var m map[string]any
	json.Unmarshal(b, &m)
	p.msgs = append(p.msgs, m)
}
func (p *sent) Close(int, string) {}

// An app whose session's node goes away while its stream request waits
// for an answer gets one: an error status of the kind it asked for, with
// the reason. A request the node answered (active, or an error) is not
// answered twice; one still initializing is.
func TestBridgeAnswersWhatTheHomeDidNot(t *testing.T) {
	b := &appBridge{}
	b.seen([]byte(`{"type":"managed_stream_request","packageName":"p"}`), true)
	b.seen([]byte(`{"type":"rtmp_stream_request","packageName":"p","rtmpUrl":"rtmp://x/live/k"}`), true)
	b.seen([]byte(`{"type":"rtmp_stream_status","status":"active"}`), false)
	b.seen([]byte(`{"type":"managed_stream_status","status":"initializing"}`), false)
	var app sent
	b.homeGone(&app)
	if len(app.msgs) != 1 {
		t.Fatalf("the app got %v, want one managed stream error", app.msgs)
	}
	m := app.msgs[0]
	if m["type"] != protocol.TypeManagedStreamStatus || m["status"] != "error" || m["code"] != string(protocol.CodeInternal) ||
		!strings.Contains(m["message"].(string), "start the stream again") {
		t.Fatalf("the app got %v", m)
	}
	// Answered once: nothing more when the bridge closes again.
	app.msgs = nil
	b.homeGone(&app)
	if len(app.msgs) != 0 {
		t.Fatalf("answered twice: %v", app.msgs)
	}
	// Nothing asked, nothing answered.
	b.seen([]byte(`{"type":"display_event"}`), true)
	b.homeGone(&app)
	if len(app.msgs) != 0 {
		t.Fatalf("an answer to no request: %v", app.msgs)
	}
}
