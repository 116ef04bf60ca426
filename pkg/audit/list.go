package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"

	"github.com/portcullis-dev/portcullis/pkg/intercept"
)

// DefaultPageSize is how many objects one LIST call returns, as kubectl asks.
const DefaultPageSize = 500

// Lister reads every object of a resource a page at a time (chunked LIST), as raw JSON: what is
// held at once is two pages (the one being judged, and the next, read meanwhile), whatever the
// size of the cluster. A List reads its pages into two buffers, in turn, which the next List
// takes up again (until the garbage collector drops them, after a scan), so that a scan of many
// pages allocates them once rather than about three times a page's size for each (client-go
// reading a body into a buffer it grows, then copying it); an object's raw JSON is therefore
// valid only until its each returns. A Lister must not be copied once used.
type Lister struct {
	// Client is an unversioned REST client of the API server (rest.UnversionedRESTClientFor).
	Client   rest.Interface
	PageSize int64
	// Lowered reads each page on a thread of its own at the lowest priority, as the server's
	// scan judges the objects (onScanThread): reading a page (a few MB through TLS, copied into
	// one buffer) is the scan's work too, done while the page before it is judged, and at normal
	// priority it took the replica's CPU from admission in bursts of milliseconds.
	Lowered bool

	buffers sync.Pool // *bytes.Buffer: the pages' buffers
}

// List calls each with every object of r in namespace ("" for every namespace, and for a
// cluster-scoped resource), a page at a time, and returns the resource version the list was
// read at. each must not keep raw, or anything decoded from it that refers to it, once it
// returns: the buffer it is a part of is read into again. An error from each stops the list.
// The next page is asked for as soon as a page has been read, so that the API server's time
// serving it overlaps the judging of this one rather than adding to it: the scan never waits
// for a page it could have had. spent, when not nil, is told how long reading each page took
// once it had arrived (the work of this process, not the API server's), before its objects are
// passed on: the scan's pacer counts it.
func (l *Lister) List(ctx context.Context, r intercept.Resource, namespace string, each func(raw []byte) error, spent func(time.Duration)) (string, error) {
	ctx, cancel := context.WithCancel(ctx) // an error from each stops the page being read ahead
	defer cancel()
	// The page being judged, and the next one, read meanwhile, in turn. They are given back
	// once no page is being read into either: a read ahead is stopped, and waited for.
	bufs := [2]*bytes.Buffer{l.buffer(), l.buffer()}
	next, reading := l.page(ctx, r, namespace, "", bufs[0]), true
	defer func() {
		if reading {
			cancel()
			<-next
		}
		l.buffers.Put(bufs[0])
		l.buffers.Put(bufs[1])
	}()
	rv := ""
	for i := 1; ; i++ {
		pg := <-next
		reading = false
		if pg.err != nil {
			return "", fmt.Errorf("listing %s: %w", r.GroupResource(), explain(pg.err))
		}
		start := time.Now()
		meta, items, err := splitPage(pg.body)
		if err != nil {
			return "", fmt.Errorf("listing %s: reading the response: %w", r.GroupResource(), err)
		}
		if meta.Continue != "" {
			// Into the buffer of the page before this one, whose objects have all been judged.
			next, reading = l.page(ctx, r, namespace, meta.Continue, bufs[i%2]), true
		}
		if spent != nil {
			spent(time.Since(start))
		}
		if rv == "" {
			rv = meta.ResourceVersion // the first page's: the snapshot the list reads
		}
		for _, item := range items {
			if err := each(item); err != nil {
				return "", err
			}
		}
		if meta.Continue == "" {
			return rv, nil
		}
	}
}

// buffer is a page's buffer: one a List gave back, or a new one.
func (l *Lister) buffer() *bytes.Buffer {
	if b, ok := l.buffers.Get().(*bytes.Buffer); ok {
		return b
	}
	return new(bytes.Buffer)
}

// page is one LIST response, or why there is none.
type page struct {
	body []byte
	err  error
}

// page asks for the page of r after token ("" for the first), reads it into buf, and delivers it
// when it has arrived.
func (l *Lister) page(ctx context.Context, r intercept.Resource, namespace, token string, buf *bytes.Buffer) <-chan page {
	size := l.PageSize
	if size <= 0 {
		size = DefaultPageSize
	}
	req := l.Client.Get().AbsPath(resourcePath(r, namespace)).Param("limit", strconv.FormatInt(size, 10))
	if token != "" {
		req = req.Param("continue", token)
	}
	out := make(chan page, 1) // never blocks the reader, whether or not anyone takes the page
	go func() {
		var pg page
		read := func(error) error { // lowered or not (one processor), the page is read
			pg.body, pg.err = readPage(ctx, req, buf)
			return nil
		}
		if l.Lowered {
			_ = onScanThread(read)
		} else {
			_ = read(nil)
		}
		out <- pg
	}()
	return out
}

// pageAttempts is how many times in all a page is asked for when its connection fails (reset,
// or ended early), as client-go's Do retries such a GET: a page is read whole or not at all.
const pageAttempts = 3

// readPage reads the response to req into buf (emptied first) and returns its bytes. An error
// status is an error, as the API server described it (Stream reads and decodes it).
func readPage(ctx context.Context, req *rest.Request, buf *bytes.Buffer) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		buf.Reset()
		body, err := req.Stream(ctx)
		if err == nil {
			_, err = buf.ReadFrom(body)
			if closeErr := body.Close(); err == nil {
				err = closeErr
			}
			if err == nil {
				return buf.Bytes(), nil
			}
		}
		cutShort := utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err)
		if attempt == pageAttempts || ctx.Err() != nil || !cutShort {
			return nil, err
		}
	}
}

// Get reads one object of r.
func (l *Lister) Get(ctx context.Context, r intercept.Resource, namespace, name string) ([]byte, error) {
	return l.Client.Get().AbsPath(resourcePath(r, namespace), name).Do(ctx).Raw()
}

// resourcePath is the URL path of r's collection, in namespace when r is namespaced and a
// namespace is given.
func resourcePath(r intercept.Resource, namespace string) string {
	base := path.Join("/apis", r.Group, r.Version)
	if r.Group == "" {
		base = path.Join("/api", r.Version)
	}
	if r.Namespaced && namespace != "" {
		return path.Join(base, "namespaces", namespace, r.Resource)
	}
	return path.Join(base, r.Resource)
}

// explain names an API error by its reason and status code when its message does not.
func explain(err error) error {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return err
	}
	s := st.Status()
	reason := strings.ToLower(string(apierrors.ReasonForError(err)))
	if s.Message == "" || s.Message == "unknown" {
		return fmt.Errorf("%s (HTTP %d)", reason, s.Code)
	}
	return fmt.Errorf("%s (HTTP %d): %s", reason, s.Code, s.Message)
}
