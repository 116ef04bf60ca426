package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portcullis-dev/portcullis/internal/spool"
	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
	"github.com/portcullis-dev/portcullis/pkg/report"
)

type checkOptions struct {
	files     []string
	policies  []string
	output    string
	namespace string
	exclude   []string
	// namespaceLabels ("ns=key=value,key=value") and namespaceFiles give namespaces' labels
	// without Namespace objects among the inputs.
	namespaceLabels []string
	namespaceFiles  []string
	// quiet and failOn are check's: failures only, and the action from which a failure fails.
	quiet  bool
	failOn string
	// image verification (verifyImages rules), against the registries the manifests name
	insecureRegistries  []string
	exceptionNamespaces []string
	verifyTimeout       time.Duration
	trustedRoot         string
	clusterOptions
	// spool takes the output of check's report, which streams it, until the run has succeeded;
	// sink is where the report writes: the spool, or the output itself for a format that writes
	// nothing before the run is finished. check sets both before run.
	spool *spool.Spool
	sink  io.Writer
}

func newCheckCommand(s streams) *cobra.Command {
	o := &checkOptions{}
	cmd := &cobra.Command{
		Use:   "check (-f PATH [-f PATH]... | --cluster [-n NS | -A]) --policies PATH [--policies PATH]... [-o text|json]",
		Short: "Evaluate manifests against policies as the cluster would on CREATE",
		Long: `Evaluate manifests against ClusterPolicy, Policy and PolicyException objects, exactly as the
Portcullis webhooks evaluate them on CREATE (after the API server's defaulting): the mutating
rules first, then the validating rules on the mutated object.

-f takes files, directories (recursive: *.yaml, *.yml, *.json) or - for stdin; multi-document YAML
and List objects are expanded. --policies takes files or directories of policies.

A document of kind AdmissionReview is judged as the request it recorded: its operation (UPDATE
and DELETE too), object, oldObject, userInfo and namespace. Recorded reviews can be replayed,
and rules that read oldObject or request.userInfo tested.

--cluster judges the live objects of the cluster (kubeconfig's context, or --kubeconfig) instead:
what the policies would find if installed, before switching them to Deny. Nothing is installed;
read access is enough. Objects are listed a page at a time, in the context's namespace, -n, or
every namespace with -A; each result's file is "cluster". Kinds that cannot be listed are named
on stderr.

-o junit prints JUnit XML (a testcase per resource and rule); -o sarif prints SARIF 2.1.0 (a
result per failed rule, at the file and line of its document), for code scanning.

Exit status: 0 when no failed rule has the action Deny, 1 when at least one has, 2 for a usage
error, unreadable or invalid input, or an invalid policy.`,
		Example: `  # Check a folder of manifests against the policy library
  kubectl portcullis check -f deploy/ --policies manifests/library

  # Check rendered Helm output, with results as JSON
  helm template ./chart | kubectl portcullis check -f - --policies policies/ -o json

  # Several inputs and policy folders
  kubectl-portcullis check -f app.yaml -f jobs/ --policies platform/ --policies team/

  # In CI, for code scanning
  kubectl portcullis check -f deploy/ --policies policies/ -o sarif > portcullis.sarif

  # What would candidate policies find on the live cluster, in every namespace?
  kubectl portcullis check --cluster -A --policies candidate/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.nsGiven = cmd.Flags().Changed("namespace")
			if err := o.validate(report.Formats...); err != nil {
				return err
			}
			// Every format is written a resource at a time, to the spool (junit and sarif to
			// spools of their own, until Finish): nothing is printed unless the whole run
			// succeeds.
			o.spool = &spool.Spool{}
			o.sink = o.spool
			if report.WritesOnFinish(o.output) {
				o.sink = s.out
			}
			defer func() { _ = o.spool.Close() }()
			rep, err := o.run(cmd.Context(), s)
			if err != nil {
				return err
			}
			if rep.Streaming() {
				if err := rep.Finish(); err != nil {
					return err
				}
				if _, err := o.spool.WriteTo(s.out); err != nil {
					return err
				}
			} else if err := rep.Write(s.out, o.output); err != nil {
				return err
			}
			if rep.Failing(failOnLevels[o.failOn]) > 0 {
				return errViolation
			}
			return nil
		},
	}
	o.output = "text"
	o.addFlags(cmd, "output format: text, json, junit or sarif")
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "text output: only the resources that fail, and only their failures and errors")
	f.StringVar(&o.failOn, "fail-on", "deny", "exit 1 when a rule fails with this action or a stronger one: deny, warn (Deny or Warn) or audit (any failure)")
	o.canCluster = true
	f.BoolVar(&o.cluster, "cluster", false, "judge the live objects of the cluster instead of files (read access only)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file, with --cluster (default: $KUBECONFIG or ~/.kube/config)")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "with --cluster: every namespace, and cluster-scoped objects")
	return cmd
}

// addFlags registers the flags check and mutate share.
func (o *checkOptions) addFlags(cmd *cobra.Command, outputHelp string) {
	f := cmd.Flags()
	f.StringArrayVarP(&o.files, "filename", "f", nil, "manifest file, directory or - for stdin (repeatable)")
	f.StringArrayVar(&o.policies, "policies", nil, "policy file or directory (repeatable)")
	f.StringVarP(&o.output, "output", "o", o.output, outputHelp)
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace of namespaced objects that do not set one")
	f.StringArrayVar(&o.insecureRegistries, "insecure-registry", nil, "registry (host[:port]) reached over plain HTTP or untrusted TLS (repeatable)")
	f.DurationVar(&o.verifyTimeout, "verify-timeout", 30*time.Second, "deadline of one image verification")
	f.StringVar(&o.trustedRoot, "trusted-root", "", "Sigstore TrustedRoot JSON for keyless verification, in place of the public-good root and of a rule's trustedRoot.configMapRef")
	f.StringSliceVar(&o.exceptionNamespaces, "exception-namespaces", []string{"portcullis-system"}, "namespaces (globs) whose PolicyExceptions may exempt from ClusterPolicies, as the server's flag of the same name")
	f.StringArrayVar(&o.exclude, "exclude", nil, "glob of paths to leave out of -f directories, matched against the path and the name of each file and directory (repeatable)")
	f.StringArrayVar(&o.namespaceLabels, "namespace-labels", nil, "a namespace's labels, for namespaceSelectors: NAMESPACE=key=value[,key=value...] (repeatable)")
	f.StringArrayVar(&o.namespaceFiles, "namespaces", nil, "file or directory of Namespace objects whose labels namespaceSelectors match, without judging them (repeatable)")
}

// failOnLevels are --fail-on's values: the weakest action whose failure fails the check.
var failOnLevels = map[string]v1alpha1.Enforcement{"deny": v1alpha1.Deny, "warn": v1alpha1.Warn, "audit": v1alpha1.Audit}

func (o *checkOptions) validate(formats ...string) error {
	var errs []error
	switch {
	case o.cluster && len(o.files) > 0:
		errs = append(errs, errors.New("--cluster judges the cluster's objects: -f cannot be given with it"))
	case !o.cluster && len(o.files) == 0 && o.canCluster:
		errs = append(errs, errors.New("-f is required: a manifest file, directory or - for stdin (or --cluster)"))
	case !o.cluster && len(o.files) == 0:
		errs = append(errs, errors.New("-f is required: a manifest file, directory or - for stdin"))
	case !o.cluster && (o.allNamespaces || o.kubeconfig != ""):
		errs = append(errs, errors.New("-A and --kubeconfig are for --cluster"))
	case o.allNamespaces && o.nsGiven:
		errs = append(errs, errors.New("-A and -n cannot both be given"))
	}
	if len(o.policies) == 0 {
		errs = append(errs, errors.New("--policies is required: a policy file or directory"))
	}
	if !slices.Contains(formats, o.output) {
		errs = append(errs, fmt.Errorf("-o %q: want %s", o.output, oneOf(formats)))
	}
	if _, ok := failOnLevels[o.failOn]; !ok && o.failOn != "" {
		errs = append(errs, fmt.Errorf("--fail-on %q: want deny, warn or audit", o.failOn))
	}
	for _, l := range o.namespaceLabels {
		if _, err := parseNamespaceLabels(l); err != nil {
			errs = append(errs, err)
		}
	}
	stdin := 0
	for _, f := range append(append([]string{}, o.files...), o.policies...) {
		if f == "-" {
			stdin++
		}
	}
	if stdin > 1 {
		errs = append(errs, errors.New("- (stdin) may be given once"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid flags (see --help):\n%w", indent(errors.Join(errs...)))
	}
	return nil
}

func (o *checkOptions) run(ctx context.Context, s streams) (*report.Report, error) {
	if o.cluster {
		return o.runCluster(ctx, s)
	}
	engine, err := o.loadEngine(s)
	if err != nil {
		return nil, err
	}
	docs, err := o.readDocuments(s)
	if err != nil {
		return nil, err
	}
	namespaces, err := o.namespaces(s)
	if err != nil {
		return nil, err
	}
	// A chunk at a time: the report keeps the results (or, streaming, writes them), not the
	// objects.
	rep := o.newReport(engine)
	err = manifest.AdmitChunks(ctx, engine, docs, o.namespace, namespaces, func(admitted []manifest.Admitted) { addToReport(rep, admitted) })
	var invalid *manifest.InvalidDocuments
	if errors.As(err, &invalid) {
		return nil, fmt.Errorf("invalid manifests:\n%w", indent(invalid.Err))
	}
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// newReport is the report of a run of check, streaming to the spool.
func (o *checkOptions) newReport(engine *policies.Engine) *report.Report {
	rep := &report.Report{Rules: report.RulesOf(engine), Quiet: o.quiet}
	rep.Stream(o.sink, o.output)
	return rep
}

// namespaces are the Namespaces --namespace-labels and --namespaces give.
func (o *checkOptions) namespaces(s streams) ([]*corev1.Namespace, error) {
	var out []*corev1.Namespace
	for _, l := range o.namespaceLabels {
		ns, err := parseNamespaceLabels(l)
		if err != nil {
			return nil, err
		}
		out = append(out, ns)
	}
	if len(o.namespaceFiles) == 0 {
		return out, nil
	}
	docs, err := manifest.Read(o.namespaceFiles, s.in)
	if err != nil {
		return nil, fmt.Errorf("reading --namespaces:\n%w", indent(err))
	}
	inputs, err := manifest.Inputs(docs, "")
	if err != nil {
		return nil, fmt.Errorf("invalid --namespaces:\n%w", indent(err))
	}
	for _, in := range inputs {
		ns, ok := in.Subject().Object.(*corev1.Namespace)
		if !ok {
			return nil, fmt.Errorf("--namespaces: %s: %s is not a Namespace", in.Doc.Where(), in.Subject().Ref())
		}
		out = append(out, ns)
	}
	return out, nil
}

// parseNamespaceLabels reads "NAMESPACE=key=value[,key=value...]".
func parseNamespaceLabels(s string) (*corev1.Namespace, error) {
	name, labels, ok := strings.Cut(s, "=")
	bad := func(why string) error {
		return fmt.Errorf("--namespace-labels %q: %s (want NAMESPACE=key=value[,key=value...])", s, why)
	}
	if !ok || name == "" {
		return nil, bad("no namespace")
	}
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return nil, bad("namespace " + strings.Join(msgs, "; "))
	}
	set, err := k8slabels.ConvertSelectorToLabelsMap(labels)
	if err != nil {
		return nil, bad(err.Error())
	}
	for k, v := range set {
		if msgs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(msgs) > 0 {
			return nil, bad(fmt.Sprintf("label %s=%s: %s", k, v, strings.Join(msgs, "; ")))
		}
	}
	ns := &corev1.Namespace{}
	ns.Name, ns.Labels = name, map[string]string(set)
	return ns, nil
}

// admit runs every input through the engine as the API server runs the webhooks (the mutating
// rules first, then the validating rules on the mutated object), and reports both.
func admit(ctx context.Context, engine *policies.Engine, inputs []manifest.Input, namespaces []*corev1.Namespace) ([]manifest.Admitted, *report.Report, error) {
	admitted, err := manifest.Admit(ctx, engine, inputs, namespaces)
	if err != nil {
		return nil, nil, err
	}
	rep := &report.Report{Rules: report.RulesOf(engine)}
	addToReport(rep, admitted)
	return admitted, rep, nil
}

// addToReport adds the verdicts of admitted inputs to rep.
func addToReport(rep *report.Report, admitted []manifest.Admitted) {
	for _, a := range admitted {
		results := a.Results
		if len(results) == 0 {
			results = []policies.Result{{Resource: a.Subject().Ref(), Result: policies.Skip, Message: "no policy matches this resource"}}
		}
		rep.AddRequest(report.Location{File: a.Doc.File, Line: a.Doc.Line}, a.Request.Operation, a.Subject().Ref(), results)
	}
}

func (o *checkOptions) loadEngine(s streams) (*policies.Engine, error) {
	paths := o.policies
	docs, err := manifest.Read(paths, s.in)
	if err != nil {
		return nil, fmt.Errorf("reading policies:\n%w", indent(err))
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no policies found in %s", strings.Join(paths, ", "))
	}
	vo, err := verificationOptions(o.insecureRegistries, o.verifyTimeout, o.trustedRoot)
	if err != nil {
		return nil, err
	}
	compiler, err := policies.NewCompiler(policies.WithVerification(vo), policies.WithExceptions(policies.ExceptionOptions{ClusterPolicyNamespaces: o.exceptionNamespaces}))
	if err != nil {
		return nil, err
	}
	now := s.now
	if now == nil {
		now = time.Now
	}
	engine, warnings, err := manifest.CompilePoliciesWarn(compiler, docs, now)
	for _, w := range warnings {
		_, _ = fmt.Fprintf(s.err, "warning: %s\n", w)
	}
	if err != nil {
		return nil, fmt.Errorf("invalid policies:\n%w", indent(err))
	}
	return engine, nil
}

// readDocuments reads -f, telling on stderr what it leaves out of kustomize trees.
func (o *checkOptions) readDocuments(s streams) ([]manifest.Document, error) {
	docs, skipped, err := manifest.ReadWith(o.files, s.in, manifest.Options{Exclude: o.exclude})
	for _, sk := range skipped {
		_, _ = fmt.Fprintf(s.err, "skipped: %s: %s\n", sk.Where, sk.Why)
	}
	if err != nil {
		return nil, fmt.Errorf("reading manifests:\n%w", indent(err))
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no Kubernetes objects found in %s", strings.Join(o.files, ", "))
	}
	return docs, nil
}

// readResources reads and decodes -f.
func (o *checkOptions) readResources(s streams) ([]manifest.Input, error) {
	docs, err := o.readDocuments(s)
	if err != nil {
		return nil, err
	}
	inputs, err := manifest.Inputs(docs, o.namespace)
	if err != nil {
		return nil, fmt.Errorf("invalid manifests:\n%w", indent(err))
	}
	return inputs, nil
}

// indent puts each line of a joined error on its own indented line.
func indent(err error) error {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return errors.New(strings.Join(lines, "\n"))
}

// oneOf writes choices as "a, b or c".
func oneOf(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}
