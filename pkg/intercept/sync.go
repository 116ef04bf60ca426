package intercept

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Syncer keeps the rules of the workload webhooks equal to a plan. It runs on the leader.
type Syncer struct {
	// Client writes the configurations; Reader reads them from the API server.
	Client client.Client
	Reader client.Reader
	// Discover lists what the API server serves; see Discover.
	Discover func() (Served, error)
	// Validating and Mutating name the configurations ("" for none). Only their webhooks that
	// call ValidatePath or MutatePath are managed: the policy webhook keeps its own rules.
	Validating, Mutating     string
	ValidatePath, MutatePath string
	// Tenants bounds the kinds namespaced Policies can have intercepted (see Build).
	Tenants TenantKinds

	mu       sync.Mutex
	served   Served // the last complete discovery, reused for discoveryTTL unless forgotten
	servedAt time.Time
}

// discoveryTTL is how long one discovery serves: a burst of policy writes costs the API server
// one discovery, not one each. A CRD that comes or goes makes it forgotten at once (Forget).
const discoveryTTL = 10 * time.Second

// Forget drops the discovery kept, so that the next Sync asks the API server again.
func (s *Syncer) Forget() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servedAt = time.Time{}
}

func (s *Syncer) discover() (Served, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.servedAt.IsZero() && time.Since(s.servedAt) < discoveryTTL {
		return s.served, nil
	}
	served, err := s.Discover()
	if err == nil {
		s.served, s.servedAt = served, time.Now()
	}
	return served, err
}

// Sync brings both configurations to what needs require and returns, per policy, what cannot be
// intercepted. A configuration that does not exist is left alone.
func (s *Syncer) Sync(ctx context.Context, needs []Need) (map[string][]string, error) {
	served, err := s.discover()
	if err != nil && len(served.Resources) == 0 {
		return nil, fmt.Errorf("discovering the API server's resources: %w", err)
	}
	plan := Build(served, s.Tenants, needs)
	var errs []error
	if s.Validating != "" {
		var cfg admissionregistrationv1.ValidatingWebhookConfiguration
		errs = append(errs, s.apply(ctx, s.Validating, &cfg, func() bool {
			changed := false
			for i := range cfg.Webhooks {
				changed = follow(cfg.Webhooks[i].ClientConfig, &cfg.Webhooks[i].Rules, s.ValidatePath, plan.Validating, served.FailedGroups) || changed
			}
			return changed
		}))
	}
	if s.Mutating != "" {
		var cfg admissionregistrationv1.MutatingWebhookConfiguration
		errs = append(errs, s.apply(ctx, s.Mutating, &cfg, func() bool {
			changed := false
			for i := range cfg.Webhooks {
				changed = follow(cfg.Webhooks[i].ClientConfig, &cfg.Webhooks[i].Rules, s.MutatePath, plan.Mutating, served.FailedGroups) || changed
			}
			return changed
		}))
	}
	return plan.NotIntercepted, errors.Join(errs...)
}

// follow sets the rules of a webhook that calls path to want, and reports whether they changed;
// other webhooks (the policy webhook) are left alone.
func follow(cc admissionregistrationv1.WebhookClientConfig, rules *[]admissionregistrationv1.RuleWithOperations, path string, want []admissionregistrationv1.RuleWithOperations, failed sets.Set[string]) bool {
	return calls(cc, path) && setRules(rules, want, failed)
}

// calls reports whether a webhook calls path on its Service or URL.
func calls(cc admissionregistrationv1.WebhookClientConfig, path string) bool {
	if cc.Service != nil {
		return cc.Service.Path != nil && *cc.Service.Path == path
	}
	if cc.URL != nil {
		u, err := url.Parse(*cc.URL)
		return err == nil && u.Path == path
	}
	return false
}

// setRules sets *have to want, keeping the rules in place for groups whose discovery failed, and
// reports whether anything changed.
func setRules(have *[]admissionregistrationv1.RuleWithOperations, want []admissionregistrationv1.RuleWithOperations, failed sets.Set[string]) bool {
	for _, r := range *have {
		if len(r.APIGroups) > 0 && failed.Has(r.APIGroups[0]) {
			want = append(want, r)
		}
	}
	if want == nil {
		want = []admissionregistrationv1.RuleWithOperations{}
	}
	if apiequality.Semantic.DeepEqual(*have, want) || (len(*have) == 0 && len(want) == 0) {
		return false
	}
	*have = want
	return true
}

func (s *Syncer) apply(ctx context.Context, name string, obj client.Object, mutate func() bool) error {
	if err := s.Reader.Get(ctx, types.NamespacedName{Name: name}, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("reading webhook configuration %s: %w", name, err)
	}
	base := obj.DeepCopyObject().(client.Object)
	if !mutate() {
		return nil
	}
	if err := s.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("setting the rules of webhook configuration %s: %w", name, err)
	}
	log.FromContext(ctx).Info("webhook rules follow the policies", "webhookConfiguration", name)
	return nil
}

// Discover returns a Discover function over d: every resource of the API server, in its
// preferred version, that can be created, updated or deleted. Subresources are left out.
func Discover(d discovery.DiscoveryInterface) func() (Served, error) {
	return func() (Served, error) {
		lists, err := d.ServerPreferredResources()
		served := Served{FailedGroups: sets.New[string]()}
		var partial *discovery.ErrGroupDiscoveryFailed
		if errors.As(err, &partial) {
			for gv := range partial.Groups {
				served.FailedGroups.Insert(gv.Group)
			}
		}
		for _, l := range lists {
			gv, perr := schema.ParseGroupVersion(l.GroupVersion)
			if perr != nil {
				continue
			}
			for _, r := range l.APIResources {
				if strings.Contains(r.Name, "/") || !slices.ContainsFunc(r.Verbs, func(v string) bool { return v == "create" || v == "update" || v == "delete" }) {
					continue
				}
				served.Resources = append(served.Resources, Resource{GroupVersionResource: gv.WithResource(r.Name), Kind: r.Kind, Namespaced: r.Namespaced})
			}
		}
		return served, err
	}
}
