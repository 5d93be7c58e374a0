// Package enum names the values of glasscast's small integer enumerations
// (statuses, event kinds) for String and JSON: the zero value is invalid,
// so a field nobody set is an error rather than a silent default.
package enum

import (
	"encoding/json"
	"fmt"
)

// Names are the names of a type's values 1, 2, …; Names[0] is unused.
type Names[T ~int] struct {
	Type  string   // the type's name, in errors
	Names []string // by value; [0] is ""
}

// New names the values 1, 2, … of a type in order.
func New[T ~int](typ string, names ...string) Names[T] {
	return Names[T]{Type: typ, Names: append([]string{""}, names...)}
}

// Valid says v has a name.
func (n Names[T]) Valid(v T) bool { return v > 0 && int(v) < len(n.Names) }

// String is v's name, or Type(v) for a value without one.
func (n Names[T]) String(v T) string {
	if n.Valid(v) {
		return n.Names[v]
	}
	return fmt.Sprintf("%s(%d)", n.Type, int(v))
}

// Parse finds the value named s.
func (n Names[T]) Parse(s string) (T, bool) {
	for i := 1; i < len(n.Names); i++ {
		if n.Names[i] == s {
			return T(i), true
		}
	}
	return 0, false
}

// Marshal writes v's name as a JSON string; a value without a name is an
// error.
func (n Names[T]) Marshal(v T) ([]byte, error) {
	if !n.Valid(v) {
		return nil, fmt.Errorf("invalid %s %d", n.Type, int(v))
	}
	return json.Marshal(n.Names[v])
}

// Unmarshal reads a JSON string naming a value.
func (n Names[T]) Unmarshal(b []byte) (T, error) {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return 0, err
	}
	v, ok := n.Parse(s)
	if !ok {
		return 0, fmt.Errorf("unknown %s %q", n.Type, s)
	}
	return v, nil
}
