package audit

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portcullis-dev/portcullis/internal/threads"
)

func TestOnScanThreadLowersItsOwnThreadAlone(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	awaitNoNicedThreads(t, "before") // a scan's thread of an earlier test may still be exiting
	var scanTID int
	var others []int // the nice of threads that ran other goroutines while the scan's ran
	err := onScanThread(func(notLowered error) error {
		if notLowered != nil {
			return notLowered
		}
		scanTID = unix.Gettid()
		if nice, err := threads.Nice(os.Getpid(), scanTID); err != nil || nice != 19 {
			return fmt.Errorf("the scan's thread: nice %d, want 19 (%w)", nice, err)
		}
		// Goroutines started from the scan's thread, each holding a thread of its own for a
		// while: the runtime must start threads for them, and none may inherit the priority.
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				time.Sleep(20 * time.Millisecond)
				nice, err := threads.Nice(os.Getpid(), unix.Gettid())
				if err != nil {
					nice = -100
				}
				mu.Lock()
				others = append(others, nice)
				mu.Unlock()
			})
		}
		wg.Wait()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, nice := range others {
		if nice != 0 {
			t.Fatalf("a thread started while the scan ran has nice %d, want 0 (all: %v)", nice, others)
		}
	}
	// The scan's thread exits with it: no other goroutine is ever scheduled at its priority.
	awaitNoNicedThreads(t, fmt.Sprintf("after the scan on thread %d", scanTID))
}

// awaitNoNicedThreads fails unless every thread of the process is soon at nice 0.
func awaitNoNicedThreads(t *testing.T, when string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := threads.Niced(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if len(n) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: threads not at nice 0 (thread: nice): %v", when, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOnScanThreadKeepsThePriorityOnOneProcessor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var why error
	var nice int
	err := onScanThread(func(notLowered error) (err error) {
		why = notLowered
		nice, err = threads.Nice(os.Getpid(), unix.Gettid())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if why == nil || !strings.Contains(why.Error(), "GOMAXPROCS 1") || nice != 0 {
		t.Fatalf("on one processor: nice %d, reason %v; want nice 0 and the reason", nice, why)
	}
}

func TestOnScanThreadReturnsWhatTheScanReturns(t *testing.T) {
	want := errors.New("stopped")
	if err := onScanThread(func(error) error { return want }); !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
}

// TestLoweredListReadsPagesOnALoweredThread: a Lowered Lister reads every page (the response
// body, where TLS and copying happen) on a thread at nice 19, which ends with the page; one not
// Lowered reads them at normal priority.
func TestLoweredListReadsPagesOnALoweredThread(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	for _, lowered := range []bool{true, false} {
		t.Run(fmt.Sprintf("Lowered=%v", lowered), func(t *testing.T) {
			awaitNoNicedThreads(t, "before")
			var mu sync.Mutex
			var nices []int // of the thread of each read of a page's body
			pages := 0
			rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
				mu.Lock()
				pages++
				n := pages
				mu.Unlock()
				cont := ""
				if n < 3 {
					cont = fmt.Sprintf("page-%d", n)
				}
				body := strings.NewReader(fmt.Sprintf(`{"metadata":{"continue":%q},"items":[{"metadata":{"name":"p%d"}}]}`, cont, n))
				return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": []string{"application/json"}},
					Body: io.NopCloser(readFunc(func(p []byte) (int, error) {
						nice, err := threads.Nice(os.Getpid(), unix.Gettid())
						if err != nil {
							return 0, err
						}
						mu.Lock()
						nices = append(nices, nice)
						mu.Unlock()
						return body.Read(p)
					})), Request: r}, nil
			})
			l := &Lister{Client: restClient(t, "http://apiserver.invalid", rt), PageSize: 1, Lowered: lowered}
			objects := 0
			if _, err := l.List(t.Context(), podsResource, "", func([]byte) error { objects++; return nil }, nil); err != nil {
				t.Fatal(err)
			}
			want := 0
			if lowered {
				want = 19
			}
			mu.Lock()
			defer mu.Unlock()
			if objects != 3 || len(nices) < 3 {
				t.Fatalf("%d objects from %d reads, want 3 from 3 pages", objects, len(nices))
			}
			for _, nice := range nices {
				if nice != want {
					t.Fatalf("a page was read at nice %d, want %d (all reads: %v)", nice, want, nices)
				}
			}
			awaitNoNicedThreads(t, "after") // each page's thread ended with it
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// readFunc is a Reader.
type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }
