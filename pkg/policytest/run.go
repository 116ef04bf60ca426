package policytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// DefaultNamespace is where a suite's namespaced objects that set no namespace are placed, as
// check places them by default.
const DefaultNamespace = "default"

// Runner runs suites.
type Runner struct {
	// Compiler compiles the suites' policies.
	Compiler *policies.Compiler
	// Now is the time exceptions expire against; nil: time.Now.
	Now func() time.Time
}

// Result is what one suite gave.
type Result struct {
	File string `json:"file"`
	Name string `json:"name"`
	// Cases are the expectations, in the suite's order, each with what was found.
	Cases []Case `json:"cases"`
	// Err is set when the suite could not be run: bad input.
	Err error `json:"-"`
}

// Failed is how many expectations do not hold.
func (r *Result) Failed() int {
	n := 0
	for i := range r.Cases {
		if !r.Cases[i].OK() {
			n++
		}
	}
	return n
}

// Case is one expectation and the result found for it.
type Case struct {
	Expected Expected `json:"expected"`
	// Got is the result the policy gave; nil when it gave none (it does not apply).
	Got *Got `json:"got,omitempty"`
	// Problems say how Got differs from Expected; none when the expectation holds.
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether the expectation holds.
func (c *Case) OK() bool { return len(c.Problems) == 0 }

// Name names the case: the operation, resource, policy/rule and the result expected.
func (c *Case) Name() string {
	e := c.Expected
	return fmt.Sprintf("%s %s [%s/%s] %s", e.operation(), e.Resource, e.Policy, e.Rule, e.Result)
}

// Got is a result as the engine gave it.
type Got struct {
	Result  policies.Outcome     `json:"result"`
	Action  v1alpha1.Enforcement `json:"action,omitempty"`
	Message string               `json:"message,omitempty"`
}

func (e *Expected) operation() v1alpha1.Operation {
	if e.Operation == "" {
		return v1alpha1.Create
	}
	return e.Operation
}

// Run runs the suite in file. A suite that cannot be run has Err set.
func (r *Runner) Run(ctx context.Context, file string) Result {
	s, err := Load(file)
	if err != nil {
		return Result{File: file, Err: err}
	}
	res := Result{File: file, Name: s.Metadata.Name}
	if res.Cases, err = r.run(ctx, s); err != nil {
		res.Cases, res.Err = nil, &BadSuiteError{File: file, Err: err}
	}
	return res
}

func (r *Runner) run(ctx context.Context, s *Suite) ([]Case, error) {
	now := r.Now
	if now == nil {
		now = time.Now
	}
	docs, err := manifest.Read(s.paths(append(append([]string{}, s.Policies...), s.Exceptions...)), nil)
	if err != nil {
		return nil, fmt.Errorf("reading policies:\n%w", indent(err))
	}
	engine, err := manifest.CompilePolicies(r.Compiler, docs, now)
	if err != nil {
		return nil, fmt.Errorf("invalid policies:\n%w", indent(err))
	}
	namespaces, err := s.namespaces()
	if err != nil {
		return nil, err
	}
	inputs, err := s.inputs()
	if err != nil {
		return nil, err
	}
	admitted, err := manifest.Admit(ctx, engine, inputs, namespaces)
	if err != nil {
		return nil, err
	}
	if err := unique(admitted); err != nil {
		return nil, err
	}
	var cases []Case
	var errs []error
	for i, e := range s.Results {
		c, err := s.check(engine, admitted, e)
		if err != nil {
			errs = append(errs, fmt.Errorf("results[%d]: %w", i, err))
			continue
		}
		cases = append(cases, c)
	}
	return cases, errors.Join(errs...)
}

// namespaces reads the suite's Namespace objects.
func (s *Suite) namespaces() ([]*corev1.Namespace, error) {
	if len(s.Namespaces) == 0 {
		return nil, nil
	}
	docs, err := manifest.Read(s.paths(s.Namespaces), nil)
	if err != nil {
		return nil, fmt.Errorf("reading namespaces:\n%w", indent(err))
	}
	inputs, err := manifest.Inputs(docs, "")
	if err != nil {
		return nil, fmt.Errorf("invalid namespaces:\n%w", indent(err))
	}
	var out []*corev1.Namespace
	for _, in := range inputs {
		ns, ok := in.Subject().Object.(*corev1.Namespace)
		if !ok {
			return nil, fmt.Errorf("namespaces: %s: %s is not a Namespace", in.Doc.Where(), in.Subject().Ref())
		}
		out = append(out, ns)
	}
	return out, nil
}

// inputs are the suite's resources, as CREATEs (or the requests of AdmissionReviews), then its
// requests.
func (s *Suite) inputs() ([]manifest.Input, error) {
	var inputs []manifest.Input
	if len(s.Resources) > 0 {
		docs, err := manifest.Read(s.paths(s.Resources), nil)
		if err != nil {
			return nil, fmt.Errorf("reading resources:\n%w", indent(err))
		}
		if inputs, err = manifest.Inputs(docs, DefaultNamespace); err != nil {
			return nil, fmt.Errorf("invalid resources:\n%w", indent(err))
		}
	}
	var errs []error
	for i, r := range s.Requests {
		in, err := s.request(r)
		if err != nil {
			errs = append(errs, fmt.Errorf("requests[%d]: %w", i, err))
			continue
		}
		inputs = append(inputs, in)
	}
	return inputs, errors.Join(errs...)
}

// request builds the input of one request from its files.
func (s *Suite) request(r Request) (manifest.Input, error) {
	one := func(field, file string) (manifest.Input, error) {
		if file == "" {
			return manifest.Input{}, nil
		}
		docs, err := manifest.Read([]string{s.path(file)}, nil)
		if err != nil {
			return manifest.Input{}, fmt.Errorf("%s: %w", field, err)
		}
		if len(docs) != 1 {
			return manifest.Input{}, fmt.Errorf("%s: %s holds %d objects, want one", field, file, len(docs))
		}
		ins, err := manifest.Inputs(docs, DefaultNamespace)
		if err != nil {
			return manifest.Input{}, fmt.Errorf("%s: %w", field, err)
		}
		return ins[0], nil
	}
	obj, err := one("object", r.Object)
	if err != nil {
		return manifest.Input{}, err
	}
	old, err := one("oldObject", r.OldObject)
	if err != nil {
		return manifest.Input{}, err
	}
	in := obj
	if r.Operation == v1alpha1.Delete {
		in = old
		in.Request.Object, in.JSON = nil, nil
	}
	in.Request.Operation, in.Request.OldObject = r.Operation, old.Request.Object
	if r.UserInfo != nil {
		in.Request.UserInfo = *r.UserInfo
	}
	return in, nil
}

// key identifies the request an expectation is about.
func key(op v1alpha1.Operation, ref policies.Ref) string {
	return fmt.Sprintf("%s %s %s/%s", op, ref.Kind, ref.Namespace, ref.Name)
}

// unique refuses a suite that judges one object twice in one operation: an expectation could
// not say which.
func unique(admitted []manifest.Admitted) error {
	seen := map[string]string{}
	var errs []error
	for _, a := range admitted {
		k := key(a.Request.Operation, a.Subject().Ref())
		if prev, ok := seen[k]; ok {
			errs = append(errs, fmt.Errorf("%s: %s %s is also judged from %s: give each request of a resource once", a.Doc.Where(), a.Request.Operation, a.Subject().Ref(), prev))
		}
		seen[k] = a.Doc.Where()
	}
	return errors.Join(errs...)
}

// check finds the request and the result an expectation is about, and compares them. An
// expectation naming a policy, rule or resource the suite does not have is an error of the
// suite, not a failed expectation.
func (s *Suite) check(engine *policies.Engine, admitted []manifest.Admitted, e Expected) (Case, error) {
	c := Case{Expected: e}
	var policy *policies.CompiledPolicy
	for p := range engine.Policies() {
		if p.Name == e.Policy {
			policy = p
		}
	}
	switch {
	case policy == nil:
		return c, fmt.Errorf("policy %q is not among the suite's policies", e.Policy)
	case !policy.HasRule(e.Rule):
		return c, fmt.Errorf("policy %q has no rule %q", e.Policy, e.Rule)
	}
	var found []*manifest.Admitted
	for i := range admitted {
		a := &admitted[i]
		ref := a.Subject().Ref()
		if a.Request.Operation == e.operation() && ref.Kind == e.Resource.Kind && ref.Name == e.Resource.Name &&
			(e.Resource.Namespace == "" || ref.Namespace == e.Resource.Namespace) {
			found = append(found, a)
		}
	}
	switch len(found) {
	case 0:
		return c, fmt.Errorf("no %s of %s among the suite's resources and requests", e.operation(), e.Resource)
	case 1:
	default:
		return c, fmt.Errorf("%s names %d objects: give its namespace", e.Resource, len(found))
	}
	a := found[0]
	// A rule that both mutates and validates (verifyImages) gives two results: the rule's is the
	// worse of them.
	for _, r := range a.Results {
		if r.Policy == e.Policy && r.Rule == e.Rule && (c.Got == nil || severity[r.Result] > severity[c.Got.Result]) {
			c.Got = &Got{Result: r.Result, Action: r.Action, Message: r.Message}
		}
	}
	switch {
	case c.Got == nil:
		c.Problems = append(c.Problems, fmt.Sprintf("want %s, got no result: the policy does not apply to the resource", e.Result))
	case c.Got.Result != e.Result:
		c.Problems = append(c.Problems, fmt.Sprintf("want %s, got %s", e.Result, c.Got.Result))
	case e.Action != "" && c.Got.Action != e.Action:
		c.Problems = append(c.Problems, fmt.Sprintf("want %s with action %s, got action %s", e.Result, e.Action, c.Got.Action))
	}
	if e.PatchedResource != "" {
		problem, err := s.comparePatched(e.PatchedResource, a)
		if err != nil {
			return c, fmt.Errorf("patchedResource: %w", err)
		}
		if problem != "" {
			c.Problems = append(c.Problems, problem)
		}
	}
	return c, nil
}

// severity orders outcomes from the best to the worst.
var severity = map[policies.Outcome]int{policies.Skip: 0, policies.Pass: 1, policies.Error: 2, policies.Fail: 3}

// comparePatched compares the object as the mutations left it with the file's, semantically.
func (s *Suite) comparePatched(file string, a *manifest.Admitted) (string, error) {
	docs, err := manifest.Read([]string{s.path(file)}, nil)
	if err != nil {
		return "", err
	}
	if len(docs) != 1 {
		return "", fmt.Errorf("%s holds %d objects, want one", file, len(docs))
	}
	var want, got any
	if err := json.Unmarshal(docs[0].JSON, &want); err != nil {
		return "", err
	}
	if a.JSON == nil {
		return "patchedResource: the request has no object to patch", nil
	}
	if err := json.Unmarshal(a.JSON, &got); err != nil {
		return "", err
	}
	var diffs []string
	diff("", want, got, &diffs)
	if len(diffs) == 0 {
		return "", nil
	}
	if len(diffs) > maxDiffs {
		diffs = append(diffs[:maxDiffs], fmt.Sprintf("and %d more differences", len(diffs)-maxDiffs))
	}
	return fmt.Sprintf("the mutated object differs from %s:\n%s", file, strings.Join(diffs, "\n")), nil
}

// maxDiffs bounds the differences a mismatch lists.
const maxDiffs = 20

// diff lists where two JSON values differ, by path: "spec.containers[0].image: want "a", got "b"".
func diff(path string, want, got any, out *[]string) {
	show := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	at := func() string {
		if path == "" {
			return "the object"
		}
		return path
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		for _, k := range slices.Sorted(maps.Keys(w)) {
			p := join(path, k)
			if gv, ok := g[k]; ok {
				diff(p, w[k], gv, out)
			} else {
				*out = append(*out, fmt.Sprintf("%s: want %s, got nothing", p, show(w[k])))
			}
		}
		for _, k := range slices.Sorted(maps.Keys(g)) {
			if _, ok := w[k]; !ok {
				*out = append(*out, fmt.Sprintf("%s: want nothing, got %s", join(path, k), show(g[k])))
			}
		}
		return
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			break
		}
		for i := range w {
			diff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], out)
		}
		return
	}
	if !reflect.DeepEqual(want, got) {
		*out = append(*out, fmt.Sprintf("%s: want %s, got %s", at(), show(want), show(got)))
	}
}

// join extends a path with a key, quoting keys that are not plain names.
func join(path, key string) string {
	if strings.ContainsAny(key, "./[]") {
		key = fmt.Sprintf("[%q]", key)
		return path + key
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// indent puts each line of an error on its own indented line.
func indent(err error) error {
	return errors.New("  " + strings.ReplaceAll(err.Error(), "\n", "\n  "))
}
