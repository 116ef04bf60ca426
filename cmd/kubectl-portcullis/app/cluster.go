package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/portcullis-dev/portcullis/pkg/audit"
	"github.com/portcullis-dev/portcullis/pkg/intercept"
	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/report"
)

// clusterOptions are check's flags for judging the live objects of a cluster.
type clusterOptions struct {
	cluster       bool
	kubeconfig    string
	allNamespaces bool
	nsGiven       bool // -n was given
	canCluster    bool // the command has --cluster (check, not mutate)
}

// restConfig is the cluster's client configuration and the namespace to judge ("" for every
// one): -A, -n, or the kubeconfig context's namespace, as kubectl chooses.
func (o *checkOptions) restConfig() (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = o.kubeconfig
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("--cluster: the cluster's configuration: %w", err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	switch {
	case o.allNamespaces:
		return cfg, "", nil
	case o.nsGiven:
		return cfg, o.namespace, nil
	}
	ns, _, err := loader.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("--cluster: the context's namespace: %w", err)
	}
	return cfg, ns, nil
}

// runCluster judges the live objects the policies match, listed a page at a time, as the
// background audit does, without installing anything: the what-if preview of a policy. It needs
// read access only, and says which kinds it could not list.
func (o *checkOptions) runCluster(ctx context.Context, s streams) (*report.Report, error) {
	engine, err := o.loadEngine(s)
	if err != nil {
		return nil, err
	}
	cfg, namespace, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	raw := rest.CopyConfig(cfg)
	raw.NegotiatedSerializer = clientgoscheme.Codecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientFor(raw)
	if err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	served, err := intercept.Discover(disco)()
	if err != nil && len(served.Resources) == 0 {
		return nil, fmt.Errorf("--cluster: discovering the served resources: %w", err)
	}
	var needs []intercept.Need
	for p := range engine.Policies() {
		needs = append(needs, intercept.NeedOf(p))
	}
	reader, err := client.New(cfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return nil, err
	}
	j := &clusterJudge{engine: engine, decoder: policies.NewDecoder(false), namespaces: &audit.NamespaceCache{Reader: reader}, timeout: o.verifyTimeout}
	lister := &audit.Lister{Client: rc}
	rep := o.newReport(engine)
	var unlisted []error
	for _, sc := range intercept.Scopes(served, nil, needs) {
		if namespace != "" && (!sc.Namespaced || (sc.Namespaces != nil && !sc.Namespaces.Has(namespace))) {
			continue // -n: that namespace's objects only
		}
		if _, err := lister.List(ctx, sc.Resource, namespace, func(b []byte) error { return j.judge(ctx, sc.Resource, b, rep) }, nil); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			unlisted = append(unlisted, err)
		}
	}
	for _, err := range unlisted {
		_, _ = fmt.Fprintf(s.err, "warning: %v; those objects are not judged\n", err)
	}
	return rep, errors.Join(j.errs...)
}

// clusterJudge judges listed objects into a report.
type clusterJudge struct {
	engine     *policies.Engine
	decoder    *policies.Decoder
	namespaces *audit.NamespaceCache
	timeout    time.Duration
	errs       []error
}

func (j *clusterJudge) judge(ctx context.Context, r intercept.Resource, raw []byte, rep *report.Report) error {
	objCtx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	res, results, err := audit.Judge(objCtx, j.engine, j.decoder, r, raw, func(ns string) (*corev1.Namespace, bool) {
		return j.namespaces.Get(objCtx, ns), true
	}, nil)
	if err != nil {
		j.errs = append(j.errs, fmt.Errorf("%s: %w", r.GroupResource(), err))
		return nil
	}
	if len(results) == 0 {
		results = []policies.Result{{Resource: res.Ref(), Result: policies.Skip, Message: "no policy matches this resource"}}
	}
	rep.Add(report.ClusterFile, res.Ref(), results)
	return nil
}
