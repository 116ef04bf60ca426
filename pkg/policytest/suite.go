// Package policytest runs policy test suites: files named portcullis-test.yaml that name
// policies and resources and the results the policies must give them, run through the same
// pipeline as the CLI's check (kubectl portcullis test).
package policytest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/manifest"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// FileName is the name of a test suite's file. Reading a directory of manifests or policies
// skips the directories below it that hold one.
const FileName = manifest.TestSuiteFile

// The suite's apiVersion and kind.
const (
	APIVersion = "portcullis.dev/v1alpha1"
	Kind       = "Test"
)

// Suite is one portcullis-test.yaml. Paths in it are relative to its directory.
type Suite struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	// Policies are files or directories of ClusterPolicies and Policies (PolicyExceptions too).
	Policies []string `json:"policies"`
	// Exceptions are files or directories of PolicyExceptions.
	Exceptions []string `json:"exceptions,omitempty"`
	// Namespaces are files of Namespace objects, whose labels namespaceSelectors match.
	Namespaces []string `json:"namespaces,omitempty"`
	// Resources are files or directories of objects, each judged as a CREATE; an
	// AdmissionReview document is judged as the request it recorded.
	Resources []string `json:"resources,omitempty"`
	// Requests are requests other than a CREATE of a resource: UPDATE and DELETE cases.
	Requests []Request `json:"requests,omitempty"`
	// Results are the expectations: every one must hold.
	Results []Expected `json:"results"`

	// File is where the suite was read from.
	File string `json:"-"`
}

// Request is one admission request of a suite.
type Request struct {
	// Operation is CREATE, UPDATE or DELETE.
	Operation v1alpha1.Operation `json:"operation"`
	// Object is the file of the object (not for DELETE).
	Object string `json:"object,omitempty"`
	// OldObject is the file of the object before (UPDATE and DELETE).
	OldObject string `json:"oldObject,omitempty"`
	// UserInfo is who sends the request, as request.userInfo shows it.
	UserInfo *authenticationv1.UserInfo `json:"userInfo,omitempty"`
}

// Expected is one expected result.
type Expected struct {
	Policy string `json:"policy"`
	Rule   string `json:"rule"`
	// Resource names the object; namespace may be left out when the name is unique.
	Resource ResourceRef `json:"resource"`
	// Operation is the request's: CREATE (the default) for a resource, else that of a request.
	Operation v1alpha1.Operation `json:"operation,omitempty"`
	// Result is pass, fail, skip or error.
	Result policies.Outcome `json:"result"`
	// Action, when set, is the enforcement the result must have: Deny, Warn or Audit.
	Action v1alpha1.Enforcement `json:"action,omitempty"`
	// PatchedResource, when set, is the file of the object as the mutations must leave it,
	// compared semantically (key order and formatting aside).
	PatchedResource string `json:"patchedResource,omitempty"`
}

// ResourceRef names an object.
type ResourceRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (r ResourceRef) String() string {
	if r.Namespace == "" {
		return r.Kind + " " + r.Name
	}
	return r.Kind + " " + r.Namespace + "/" + r.Name
}

// BadSuiteError is a suite that cannot be run: unreadable, invalid, or naming what does not
// exist. It is bad input, not a failed expectation.
type BadSuiteError struct {
	File string
	Err  error
}

func (e *BadSuiteError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *BadSuiteError) Unwrap() error { return e.Err }

// Find returns the suite files under paths: each path a suite file, or a directory searched
// recursively (hidden directories too) for files named FileName, in lexical order.
func Find(paths []string) ([]string, error) {
	var files []string
	var errs []error
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && d.Name() == FileName {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	slices.Sort(files)
	return slices.Compact(files), errors.Join(errs...)
}

// Load reads and checks a suite: strictly (an unknown field is an error), with every problem
// named by its field.
func Load(file string) (*Suite, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, &BadSuiteError{File: file, Err: manifest.WithoutPath(err)}
	}
	var s Suite
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, &BadSuiteError{File: file, Err: err}
	}
	s.File = file
	if errs := s.validate(); len(errs) > 0 {
		return nil, &BadSuiteError{File: file, Err: errs.ToAggregate()}
	}
	return &s, nil
}

func (s *Suite) validate() field.ErrorList {
	var errs field.ErrorList
	if s.APIVersion != APIVersion || s.Kind != Kind {
		errs = append(errs, field.Invalid(field.NewPath("kind"), s.APIVersion+" "+s.Kind, "want "+APIVersion+" "+Kind))
	}
	if s.Metadata.Name == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "name"), "the suite's name"))
	}
	if len(s.Policies) == 0 {
		errs = append(errs, field.Required(field.NewPath("policies"), "the policy files to test"))
	}
	if len(s.Resources) == 0 && len(s.Requests) == 0 {
		errs = append(errs, field.Required(field.NewPath("resources"), "the resources (or requests) to judge"))
	}
	if len(s.Results) == 0 {
		errs = append(errs, field.Required(field.NewPath("results"), "an empty suite tests nothing: list the expected results"))
	}
	for i, r := range s.Requests {
		p := field.NewPath("requests").Index(i)
		switch r.Operation {
		case v1alpha1.Create, v1alpha1.Update:
			if r.Object == "" {
				errs = append(errs, field.Required(p.Child("object"), "the file of the object"))
			}
			if r.Operation == v1alpha1.Update && r.OldObject == "" {
				errs = append(errs, field.Required(p.Child("oldObject"), "the file of the object before the update"))
			}
		case v1alpha1.Delete:
			if r.OldObject == "" {
				errs = append(errs, field.Required(p.Child("oldObject"), "the file of the object being deleted"))
			}
			if r.Object != "" {
				errs = append(errs, field.Forbidden(p.Child("object"), "a DELETE has only the old object"))
			}
		default:
			errs = append(errs, field.NotSupported(p.Child("operation"), r.Operation, []string{"CREATE", "UPDATE", "DELETE"}))
		}
	}
	for i, r := range s.Results {
		p := field.NewPath("results").Index(i)
		if r.Policy == "" {
			errs = append(errs, field.Required(p.Child("policy"), ""))
		}
		if r.Rule == "" {
			errs = append(errs, field.Required(p.Child("rule"), ""))
		}
		if r.Resource.Kind == "" {
			errs = append(errs, field.Required(p.Child("resource", "kind"), ""))
		}
		if r.Resource.Name == "" {
			errs = append(errs, field.Required(p.Child("resource", "name"), ""))
		}
		switch r.Result {
		case policies.Pass, policies.Fail, policies.Skip, policies.Error:
		default:
			errs = append(errs, field.NotSupported(p.Child("result"), r.Result, []string{"pass", "fail", "skip", "error"}))
		}
		switch r.Action {
		case "", v1alpha1.Deny, v1alpha1.Warn, v1alpha1.Audit:
		default:
			errs = append(errs, field.NotSupported(p.Child("action"), r.Action, []string{"Deny", "Warn", "Audit"}))
		}
		switch r.Operation {
		case "", v1alpha1.Create, v1alpha1.Update, v1alpha1.Delete:
		default:
			errs = append(errs, field.NotSupported(p.Child("operation"), r.Operation, []string{"CREATE", "UPDATE", "DELETE"}))
		}
	}
	return errs
}

// path resolves a path of the suite against its directory.
func (s *Suite) path(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(s.File), p)
}

func (s *Suite) paths(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = s.path(p)
	}
	return out
}
