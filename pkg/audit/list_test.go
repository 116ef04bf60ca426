package audit

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/portcullis-dev/portcullis/pkg/intercept"
)

// pagedPods serves pages of two Pods named p0, p1, …: pages in all, each naming the next by its
// continue token; asked records the tokens asked for, in order.
func pagedPods(t *testing.T, pages int) (*Lister, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.URL.Query().Get("continue")
		mu.Lock()
		asked = append(asked, token)
		mu.Unlock()
		n := 0
		if token != "" {
			if _, err := fmt.Sscanf(token, "page-%d", &n); err != nil {
				http.Error(w, "bad token", http.StatusBadRequest)
				return
			}
		}
		cont := ""
		if n+1 < pages {
			cont = fmt.Sprintf("page-%d", n+1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"%d","continue":%q},"items":[{"metadata":{"name":"p%d"}},{"metadata":{"name":"p%d"}}]}`,
			100+n, cont, 2*n, 2*n+1)
	}))
	t.Cleanup(srv.Close)
	return &Lister{Client: restClient(t, srv.URL, nil), PageSize: 2}, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(asked)
	}
}

// restClient is an unversioned, unthrottled REST client of host, as the server's scan has,
// through rt when it is not nil.
func restClient(tb testing.TB, host string, rt http.RoundTripper) rest.Interface {
	tb.Helper()
	rc, err := rest.UnversionedRESTClientFor(&rest.Config{Host: host, Transport: rt, QPS: -1,
		ContentConfig: rest.ContentConfig{NegotiatedSerializer: scheme.Codecs.WithoutConversion()}})
	if err != nil {
		tb.Fatal(err)
	}
	return rc
}

var podsResource = intercept.Resource{GroupVersionResource: schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Kind: "Pod", Namespaced: true}

// TestListReadsAhead: every object is passed on once, in order, with the first page's resource
// version; and the next page is asked for while the objects of this one are being judged.
func TestListReadsAhead(t *testing.T) {
	l, asked := pagedPods(t, 3)
	var names []string
	rv, err := l.List(t.Context(), podsResource, "", func(raw []byte) error {
		names = append(names, string(raw))
		if len(names) == 1 { // judging the first object: the second page is asked for meanwhile
			deadline := time.Now().Add(5 * time.Second)
			for !slices.Contains(asked(), "page-1") {
				if time.Now().After(deadline) {
					return errors.New("the next page was not asked for while this one was judged")
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rv != "100" {
		t.Errorf("resource version %q, want the first page's, 100", rv)
	}
	want := []string{`{"metadata":{"name":"p0"}}`, `{"metadata":{"name":"p1"}}`, `{"metadata":{"name":"p2"}}`,
		`{"metadata":{"name":"p3"}}`, `{"metadata":{"name":"p4"}}`, `{"metadata":{"name":"p5"}}`}
	if !slices.Equal(names, want) {
		t.Errorf("objects %q, want %q", names, want)
	}
	if got := asked(); !slices.Equal(got, []string{"", "page-1", "page-2"}) {
		t.Errorf("pages asked for: %q, want each once, in order", got)
	}
}

// TestListStopsAtAnError: an error from each ends the list with that error, and no page after
// the one read ahead is asked for.
func TestListStopsAtAnError(t *testing.T) {
	l, asked := pagedPods(t, 5)
	stop := errors.New("stop")
	_, err := l.List(t.Context(), podsResource, "", func([]byte) error { return stop }, nil)
	if !errors.Is(err, stop) {
		t.Fatalf("error %v, want the one each returned", err)
	}
	time.Sleep(100 * time.Millisecond)
	if got := asked(); len(got) > 2 {
		t.Errorf("pages asked for after the error: %q", got)
	}
}

// TestListAsksAgainForAPageCutShort: a page whose connection ends before the whole body has
// arrived is asked for again (a LIST is a GET), and the objects are the whole page's, once.
func TestListAsksAgainForAPageCutShort(t *testing.T) {
	const page = `{"metadata":{"resourceVersion":"7"},"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}`
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		requests++
		n := requests
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(page)))
		if n == 1 { // half the page, then the connection ends
			_, _ = w.Write([]byte(page[:len(page)/2]))
			w.(http.Flusher).Flush()
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(srv.Close)
	rc := restClient(t, srv.URL, nil)
	var names []string
	rv, err := (&Lister{Client: rc}).List(t.Context(), podsResource, "", func(raw []byte) error {
		names = append(names, string(raw))
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{`{"metadata":{"name":"a"}}`, `{"metadata":{"name":"b"}}`}; rv != "7" || !slices.Equal(names, want) {
		t.Errorf("resource version %q and objects %q, want 7 and %q", rv, names, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if requests != 2 {
		t.Errorf("%d requests, want 2: the page cut short, and again", requests)
	}
}

// TestListGivesUpOnAPageCutShortEachTime: a page cut short every time is an error, after
// pageAttempts tries.
func TestListGivesUpOnAPageCutShortEachTime(t *testing.T) {
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte(`{"items":[`))
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	rc := restClient(t, srv.URL, nil)
	if _, err := (&Lister{Client: rc}).List(t.Context(), podsResource, "", func([]byte) error { return nil }, nil); err == nil {
		t.Fatal("no error for a page never read whole")
	}
	mu.Lock()
	defer mu.Unlock()
	if requests != pageAttempts {
		t.Errorf("%d requests, want %d", requests, pageAttempts)
	}
}
