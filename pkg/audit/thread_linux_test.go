package audit

import (
	"errors"
	"fmt"
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
