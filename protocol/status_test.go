package protocol

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestStatusesRoundTrip(t *testing.T) {
	for s := StreamInitializing; s <= StreamTimeout; s++ {
		b, err := json.Marshal(ManagedStreamStatus{Type: TypeManagedStreamStatus, Status: s})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `"status":"`+s.String()+`"`) {
			t.Fatalf("%v encodes as %s", s, b)
		}
		var back ManagedStreamStatus
		if err := json.Unmarshal(b, &back); err != nil || back.Status != s {
			t.Fatalf("%s decodes as %v, %v", b, back.Status, err)
		}
	}
	for s := OutputConnecting; s <= OutputStopped; s++ {
		b, err := json.Marshal(OutputStatus{Status: s})
		var back OutputStatus
		if err != nil || json.Unmarshal(b, &back) != nil || back.Status != s {
			t.Fatalf("%v: %s %v %v", s, b, back.Status, err)
		}
	}
	// A status nobody set does not go out, and an unknown one does not
	// come in as something else.
	if b, err := json.Marshal(RTMPStreamStatus{Type: TypeRTMPStreamStatus}); err == nil {
		t.Fatalf("a status with no status encoded: %s", b)
	}
	if _, err := json.Marshal(OutputStatus{}); err == nil {
		t.Fatal("an output with no state encoded")
	}
	var m ManagedStreamStatus
	if err := json.Unmarshal([]byte(`{"status":"dancing"}`), &m); err == nil {
		t.Fatalf("an unknown status decoded as %v", m.Status)
	}
	if StreamStatus(0).Valid() || StreamStatus(0).String() != "stream status(0)" || !StreamStopped.Valid() {
		t.Fatalf("zero value: %v %q", StreamStatus(0).Valid(), StreamStatus(0).String())
	}
}
