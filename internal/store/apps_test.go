package store_test

import (
	"testing"

	"github.com/glasscast/glasscast/internal/store"
	"github.com/glasscast/glasscast/internal/store/storetest"
)

func TestAppsContract(t *testing.T) {
	s, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.Apps(t, s)
}
