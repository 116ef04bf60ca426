package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/source"
)

func TestScanShape(t *testing.T) {
	tests := []struct {
		in   string
		want shape
	}{
		{`{}`, shape{objects: 1, depth: 1}},
		{`{"a":[1,2,{"b":"}]{[,:"}]}`, shape{objects: 2, arrays: 1, separators: 4, depth: 3}},
		{`"\"{["`, shape{}},
		{`["\\",{}]`, shape{objects: 1, arrays: 1, separators: 1, depth: 2}},
		{`[[[[]]]]`, shape{arrays: 4, depth: 4}},
		{`}}}{`, shape{objects: 1, depth: 0}},                                         // malformed: the decoder rejects it later
		{`{"a":["x\\\"y", "z`, shape{objects: 1, arrays: 1, separators: 2, depth: 2}}, // unterminated
		{`{"` + strings.Repeat("k", 40) + `":{}}`, shape{objects: 2, separators: 1, depth: 2}},
	}
	for _, tt := range tests {
		if got := scanShape([]byte(tt.in)); got != tt.want {
			t.Errorf("scanShape(%s) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestBudgetGrow(t *testing.T) {
	b := NewBudget(100)
	ctx := t.Context()
	a, err := b.reserve(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.reserve(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.grow(ctx, 40); err != nil || c.held != 40 {
		t.Fatalf("growing into free room: %v, held %d", err, c.held)
	}
	// No room: past its deadline the review gives up and holds nothing.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if err := c.grow(short, 50); err == nil || c.held != 0 {
		t.Fatalf("grew past the budget: %v, held %d", err, c.held)
	}
	// It waits while holding nothing, and gets all it asked once a finishes.
	grown := make(chan error, 1)
	go func() { grown <- c.grow(ctx, 50) }()
	time.Sleep(10 * time.Millisecond)
	a.release()
	if err := <-grown; err != nil || c.held != 50 {
		t.Fatalf("after the release: %v, held %d", err, c.held)
	}
	c.release()
	if _, err := b.reserve(ctx, 100); err != nil {
		t.Fatal("the whole budget is free again:", err)
	}
}

// podReview is a review of a Pod whose spec is the JSON given.
func podReview(spec string) []byte {
	return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"","version":"v1","kind":"Pod"},` +
		`"resource":{"group":"","version":"v1","resource":"pods"},"namespace":"shop","name":"big","operation":"CREATE","userInfo":{"username":"u"},` +
		`"object":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big","namespace":"shop"},"spec":` + spec + `}}}`)
}

// repeat joins n copies of f(i) with commas.
func repeat(n int, f func(i int) string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = f(i)
	}
	return strings.Join(parts, ",")
}

// hostileSpecs are pod specs of the shapes that amplify most when decoded and evaluated.
func hostileSpecs(n int) map[string]string {
	return map[string]string{
		"containers": `{"containers":[` + repeat(n, func(i int) string { return fmt.Sprintf(`{"name":"c%d","image":"x"}`, i) }) + `]}`,
		"volumes":    `{"containers":[{"name":"c","image":"x"}],"volumes":[` + repeat(n, func(int) string { return `{}` }) + `]}`,
		"env":        `{"containers":[{"name":"c","image":"x","env":[` + repeat(n, func(i int) string { return fmt.Sprintf(`{"name":"E%d"}`, i) }) + `]}]}`,
		"ports":      `{"containers":[{"name":"c","image":"x","ports":[` + repeat(n, func(int) string { return `{"containerPort":1}` }) + `]}]}`,
		"selector":   `{"containers":[{"name":"c","image":"x"}],"nodeSelector":{` + repeat(n, func(i int) string { return fmt.Sprintf(`"k%d":""`, i) }) + `}}`,
	}
}

// peakHeap runs f with the garbage collector eager and returns the highest heap in use seen
// above what was in use before.
func peakHeap(f func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > base && m.HeapAlloc-base > peak.Load() {
				peak.Store(m.HeapAlloc - base)
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	return peak.Load()
}

// TestDecodeCostBound: for every hostile shape, the estimate a review reserves before it is
// decoded bounds the heap that decoding and evaluating it takes (measured with an eager garbage
// collector), and a review too costly for one share of the budget is refused with a message that
// says why.
func TestDecodeCostBound(t *testing.T) {
	engines := &source.EngineHolder{}
	engines.Store(loadEngine(t))
	budget := NewBudget(64 << 20)
	h := &ReviewHandler{Handler: &Validator{Config{Engines: engines, Decoder: policies.NewDecoder(false).SharingInput(), Timeout: 10 * time.Second}}, Budget: budget}
	for name, spec := range hostileSpecs(5000) {
		t.Run(name, func(t *testing.T) {
			body := podReview(spec)
			estimate := scanShape(body).decodeCost(len(body))
			// The least of three runs: a run's peak also holds what garbage of the process the
			// collector had not yet freed when it was sampled, which its pacing makes vary (one
			// run in 16 of selector read 2.4 MiB, the others at most 0.8).
			var w *httptest.ResponseRecorder
			peak := peakHeap(func() { w = serve(h, body) })
			for range 2 {
				peak = min(peak, peakHeap(func() { w = serve(h, body) }))
			}
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			t.Logf("%d bytes: estimate %d KiB, peak heap %d KiB", len(body), estimate>>10, peak>>10)
			if uint64(estimate) < peak {
				t.Errorf("the estimate %d KiB is below the peak heap %d KiB", estimate>>10, peak>>10)
			}
		})
	}
	// Past one share of the budget: refused, with the reason, whatever the load.
	for name, spec := range hostileSpecs(150000) {
		t.Run(name+"/refused", func(t *testing.T) {
			rv := decodeResponse(t, serve(h, podReview(spec)))
			if rv.Allowed || rv.Result.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rv.Result.Message, `Pod "shop/big" is too large to evaluate`) ||
				!strings.Contains(rv.Result.Message, "--max-review-memory") {
				t.Errorf("response %+v", rv.Result)
			}
		})
	}
}

func serve(h http.Handler, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/validate", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func decodeResponse(t *testing.T, w *httptest.ResponseRecorder) *admissionv1.AdmissionResponse {
	t.Helper()
	var rv admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &rv); err != nil || rv.Response == nil {
		t.Fatalf("status %d, %v: %s", w.Code, err, w.Body)
	}
	return rv.Response
}

// TestRefusals: too deep a review is refused before it is decoded; in audit-only mode it is
// admitted with a warning; the mutating webhook lets it through unmutated.
func TestRefusals(t *testing.T) {
	deep := podReview(`{"containers":[{"name":"c","image":"x"}],"overhead":` + strings.Repeat(`{"a":`, MaxDepth) + `1` + strings.Repeat(`}`, MaxDepth) + `}`)
	engines := &source.EngineHolder{}
	engines.Store(loadEngine(t))
	cfg := Config{Engines: engines, Decoder: policies.NewDecoder(false).SharingInput()}
	audit := cfg
	audit.AuditOnly = true
	for _, tc := range []struct {
		name    string
		handler admission.Handler
		allowed bool
	}{
		{"validate", &Validator{cfg}, false},
		{"validate, audit-only", &Validator{audit}, true},
		{"mutate", &Mutator{cfg}, true},
	} {
		rv := decodeResponse(t, serve(&ReviewHandler{Handler: tc.handler, Budget: NewBudget(64 << 20)}, deep))
		msg := strings.Join(rv.Warnings, "\n")
		if rv.Result != nil {
			msg += rv.Result.Message
		}
		if rv.Allowed != tc.allowed || rv.UID != "u1" || !strings.Contains(msg, "levels deep, more than the 200") {
			t.Errorf("%s: allowed=%v uid=%q %q", tc.name, rv.Allowed, rv.UID, msg)
		}
	}
}

// blocking is a handler that holds every review until released.
type blocking struct {
	entered chan struct{}
	release chan struct{}
}

func (b blocking) Handle(context.Context, admission.Request) admission.Response {
	b.entered <- struct{}{}
	<-b.release
	return admission.Allowed("")
}

// TestBudgetTurnsAwayWhenFull: with the budget held by reviews in flight, the next review waits
// until its deadline and is answered 429, for the webhook's failurePolicy to decide; once the
// reviews finish, reviews are served again.
func TestBudgetTurnsAwayWhenFull(t *testing.T) {
	body := loadReview(t)
	per := scanShape(body).decodeCost(len(body))
	b := blocking{entered: make(chan struct{}, 4), release: make(chan struct{})}
	h := &ReviewHandler{Handler: b, Budget: NewBudget(2*per + per/2), Timeout: 100 * time.Millisecond}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { serve(h, body) })
		<-b.entered
	}
	if w := serve(h, body); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d with the budget full: %s", w.Code, w.Body)
	}
	close(b.release)
	wg.Wait()
	if w := serve(&ReviewHandler{Handler: allowAll{}, Budget: h.Budget, Timeout: time.Second}, body); w.Code != http.StatusOK {
		t.Fatalf("status %d once the budget is free: %s", w.Code, w.Body)
	}
}

// gated admits everything, once its Gate, which reports each review that reaches it, is opened.
type gated struct {
	allowAll
	reached, open chan struct{}
}

func (g gated) Gate(context.Context, string) (func(), string) {
	g.reached <- struct{}{}
	<-g.open
	return func() {}, ""
}

// atGate serves body through a handler whose namespace gate waits, calls check with the budget
// while the review waits there (check gives back what it takes), then lets the review through
// and wants it served.
func atGate(t *testing.T, body []byte, check func(b *Budget)) {
	t.Helper()
	budget := NewBudget(4 * scanShape(body).decodeCost(len(body)))
	g := gated{reached: make(chan struct{}), open: make(chan struct{})}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serve(&ReviewHandler{Handler: g, Budget: budget, Timeout: 10 * time.Second}, body) }()
	select {
	case <-g.reached:
	case w := <-done:
		t.Fatalf("the review was answered before its gate: status %d: %s", w.Code, w.Body)
	}
	check(budget)
	close(g.open)
	if w := <-done; w.Code != http.StatusOK {
		t.Errorf("status %d: %s", w.Code, w.Body)
	}
}

// TestGateWaitersHoldTheirBodyOnly: a review waiting at its namespace's gate holds only its
// body's share of the memory budget (its object is read in place, not copied), so that reviews
// queued behind a busy tenant leave room to the others.
func TestGateWaitersHoldTheirBodyOnly(t *testing.T) {
	body := loadReview(t)
	atGate(t, body, func(budget *Budget) {
		rest := budget.total - int64(len(body))
		if !budget.sem.TryAcquire(rest) {
			t.Errorf("a review waiting at its gate holds more than its body (%d bytes) of the budget", len(body))
			return
		}
		budget.sem.Release(rest)
	})
}

// TestUnusualEnvelopeReservesItsCopies: an envelope decoded the general way (here, a key in
// another case) copies its object twice, and reserves the memory for that before decoding it: at
// the gate it holds its body and two copies of it, no more.
func TestUnusualEnvelopeReservesItsCopies(t *testing.T) {
	body := bytes.Replace(loadReview(t), []byte(`"object":`), []byte(`"Object":`), 1)
	if _, _, plain := reviewObjects(body); plain {
		t.Fatal("the envelope is plain: the test reads nothing")
	}
	n := int64(len(body))
	atGate(t, body, func(budget *Budget) {
		switch {
		case budget.sem.TryAcquire(budget.total - n):
			budget.sem.Release(budget.total - n)
			t.Error("the review holds its body only: the copies of its object were not reserved")
		case !budget.sem.TryAcquire(budget.total - 3*n):
			t.Errorf("the review holds more than its body and two copies (%d bytes)", 3*n)
		default:
			budget.sem.Release(budget.total - 3*n)
		}
	})
}
