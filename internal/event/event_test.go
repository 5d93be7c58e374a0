package event

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A queue delivers in order, never blocks its producer on a slow consumer,
// and delivers what was pushed before Close.
func TestQueueOrderAndClose(t *testing.T) {
	release := make(chan struct{})
	var got []int
	var wg sync.WaitGroup
	q := NewQueue("test", &wg, func(v int) {
		if v == 0 {
			<-release // a consumer stuck on the first value
		}
		got = append(got, v)
	})
	const n = 10000
	for i := range n {
		if !q.Push(i) { // would hang here if Push waited for the consumer
			t.Fatal("push refused before close")
		}
	}
	if q.Len() == 0 {
		t.Fatal("nothing waits behind a stuck consumer")
	}
	q.Close()
	if q.Push(n) {
		t.Fatal("push taken after close")
	}
	close(release)
	select {
	case <-q.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the queue did not finish")
	}
	wg.Wait()
	if len(got) != n {
		t.Fatalf("delivered %d of %d", len(got), n)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("value %d delivered at %d", v, i)
		}
	}
}

// A consumer may close its own queue.
func TestQueueClosedByItsConsumer(t *testing.T) {
	var q *Queue[string]
	seen := make(chan string, 4)
	q = NewQueue("self", nil, func(v string) {
		seen <- v
		if v == "last" {
			q.Close()
		}
	})
	q.Push("first")
	q.Push("last")
	select {
	case <-q.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a queue closed by its consumer did not finish")
	}
	if a, b := <-seen, <-seen; a != "first" || b != "last" {
		t.Fatalf("got %q, %q", a, b)
	}
}
