package cluster

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// entryFormat is the format version this build writes in the directory's
// entries and in heartbeats ("v"). Fields are only ever added: a node
// reads the fields it knows of an entry of any version, ignores the rest,
// and carries them through when it rewrites the entry (carryUnknown). So
// in a rolling upgrade, an older node changing a stream's status does not
// strip what a newer node wrote.
const entryFormat = 1

// writeFormat is the format this build writes, and nextField a field it
// adds to the directory's entries: entryFormat and none, except in a build
// made with the glasscast_nextformat tag, which stands for the next build
// in tests of a rolling upgrade (format 2, one field more).
var (
	writeFormat = entryFormat
	nextField   string
)

// jsonFields are the JSON names of a struct type's fields (embedded
// structs' included).
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			for k := range jsonFields(f.Type) {
				out[k] = true
			}
		case name != "":
			out[name] = true
		case f.IsExported():
			out[f.Name] = true
		}
	}
	return out
}

var streamFields = sync.OnceValue(func() map[string]bool {
	known := jsonFields(reflect.TypeFor[StreamEntry]())
	if nextField != "" {
		known[nextField] = true
	}
	return known
})

// withNextField adds the next build's field to an entry this build wrote
// (nothing in a build without it).
func withNextField(b []byte, node string) []byte {
	if nextField == "" {
		return b
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return b
	}
	m[nextField], _ = json.Marshal(map[string]string{"writtenBy": node})
	out, err := json.Marshal(m)
	if err != nil {
		return b
	}
	return out
}

// carryUnknown adds to written (an entry as this build marshals it) the
// fields of old (the entry it replaces) that this build does not know.
// Either not being a JSON object leaves written as it is.
func carryUnknown(old, written []byte, known map[string]bool) []byte {
	if len(old) == 0 {
		return written
	}
	var was map[string]json.RawMessage
	if json.Unmarshal(old, &was) != nil {
		return written
	}
	var extra bool
	for k := range was {
		if !known[k] {
			extra = true
			break
		}
	}
	if !extra {
		return written
	}
	var now map[string]json.RawMessage
	if json.Unmarshal(written, &now) != nil {
		return written
	}
	for k, v := range was {
		if _, set := now[k]; !set && !known[k] {
			now[k] = v
		}
	}
	b, err := json.Marshal(now)
	if err != nil {
		return written
	}
	return b
}
