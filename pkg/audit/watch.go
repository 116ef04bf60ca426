package audit

import (
	"context"
	"errors"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"

	"github.com/portcullis-dev/portcullis/pkg/intercept"
)

// freshness keeps reports fresh between scans: a metadata-only watch per scanned resource (no
// object is held), and a GET of each object that changed, judged at most once a second.
type freshness struct {
	client metadata.Interface
	s      *Scanner

	mu      sync.Mutex
	watches map[schema.GroupVersionResource]context.CancelFunc
	pending map[pendingKey]intercept.Scope
	removed bool                                 // deletions applied to the store: reports to write
	rescan  map[schema.GroupVersionResource]bool // a watch that lost events: scan the resource again
}

type pendingKey struct {
	resource        schema.GroupVersionResource
	namespace, name string
}

// follow watches the scopes just scanned, each from the version its list was read at, and stops
// the watches of resources no policy matches any more.
func (f *freshness) follow(ctx context.Context, scopes []intercept.Scope, versions map[schema.GroupVersionResource]string, all bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	keep := map[schema.GroupVersionResource]bool{}
	for _, sc := range scopes {
		keep[sc.GroupVersionResource] = true
		rv, scanned := versions[sc.GroupVersionResource]
		if !scanned {
			continue // still watched as it was, or its list failed
		}
		if cancel := f.watches[sc.GroupVersionResource]; cancel != nil {
			cancel()
		}
		wctx, cancel := context.WithCancel(ctx)
		f.watches[sc.GroupVersionResource] = cancel
		go f.watch(wctx, sc, rv)
	}
	if all {
		for gvr, cancel := range f.watches {
			if !keep[gvr] {
				cancel()
				delete(f.watches, gvr)
			}
		}
	}
}

// watch follows one resource's changes, cluster-wide, metadata only, until ctx ends. When the
// watch cannot go on from where it was (the version expired), the resource is scanned again.
func (f *freshness) watch(ctx context.Context, sc intercept.Scope, rv string) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		w, err := f.client.Resource(sc.GroupVersionResource).Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				f.lost(sc.GroupVersionResource)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 250 * time.Millisecond
		var expired bool
		rv, expired = f.drain(ctx, sc, w)
		w.Stop()
		if expired {
			f.lost(sc.GroupVersionResource)
			return
		}
	}
}

// drain reads events until the watch ends; it returns the last version seen, and whether the
// watch ended because that version expired.
func (f *freshness) drain(ctx context.Context, sc intercept.Scope, w watch.Interface) (string, bool) {
	rv := ""
	for {
		select {
		case <-ctx.Done():
			return rv, false
		case ev, ok := <-w.ResultChan():
			if !ok {
				return rv, false
			}
			if ev.Type == watch.Error {
				err := apierrors.FromObject(ev.Object)
				return rv, apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
			}
			m, isMeta := ev.Object.(*metav1.PartialObjectMetadata)
			if !isMeta {
				continue
			}
			rv = m.ResourceVersion
			if ev.Type == watch.Bookmark || (sc.Namespaces != nil && !sc.Namespaces.Has(m.Namespace)) {
				continue
			}
			if f.s.Owns != nil && !f.s.Owns(m.Namespace) {
				continue
			}
			if ev.Type == watch.Deleted {
				f.s.Store.Remove(m.Namespace, m.UID)
				f.mu.Lock()
				f.removed = true
				f.mu.Unlock()
				continue
			}
			if fp, known := f.s.Store.Fingerprint(m.Namespace, m.UID); known && fp == fingerprint(m) && m.Generation > 0 {
				continue // a status update: what policies judge is as it was
			}
			f.mu.Lock()
			f.pending[pendingKey{sc.GroupVersionResource, m.Namespace, m.Name}] = sc
			f.mu.Unlock()
		}
	}
}

func (f *freshness) lost(gvr schema.GroupVersionResource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rescan[gvr] = true
	delete(f.watches, gvr)
}

// take returns what the watches saw since the last call: the objects that changed, whether
// deletions were applied, and the resources to scan again.
func (f *freshness) take() (map[pendingKey]intercept.Scope, bool, []schema.GroupVersionResource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, d, r := f.pending, f.removed, slices.Collect(maps.Keys(f.rescan))
	f.pending, f.removed, f.rescan = map[pendingKey]intercept.Scope{}, false, map[schema.GroupVersionResource]bool{}
	return p, d, r
}

// refresh reads and judges again each object that changed; one that is gone is forgotten.
func (s *Scanner) refresh(ctx context.Context, pending map[pendingKey]intercept.Scope) {
	engine := s.Engines.Load()
	namespaces := &NamespaceCache{Reader: s.Namespaces}
	for k, sc := range pending {
		raw, err := s.Lister.Get(ctx, sc.Resource, k.namespace, k.name)
		if apierrors.IsNotFound(err) {
			continue // the watch brings its deletion
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.Log.Error(err, "audit: reading a changed object", "resource", sc.GroupResource().String(), "namespace", k.namespace, "name", k.name)
			continue
		}
		if _, err := s.judge(ctx, engine, sc.Resource, raw, namespaces); err != nil && !errors.Is(err, context.Canceled) {
			s.Log.Error(err, "audit: judging a changed object")
		}
	}
}

// fingerprint digests what of an object's metadata says it may be judged differently: its
// generation (its spec), labels and annotations.
func fingerprint(m metav1.Object) uint64 {
	h := fnv.New64a()
	write := func(s string) { _, _ = h.Write([]byte(s)); _, _ = h.Write([]byte{0}) }
	write(strconv.FormatInt(m.GetGeneration(), 10))
	for _, kv := range []map[string]string{m.GetLabels(), m.GetAnnotations()} {
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			write(k)
			write(kv[k])
		}
		write("|")
	}
	return h.Sum64()
}
