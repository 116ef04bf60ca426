package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/portcullis-dev/portcullis/pkg/apis/v1alpha1"
	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// CompilePolicies compiles every ClusterPolicy, Policy and PolicyException in docs into an
// engine. Every problem is returned, each naming the file, the object and the field; a document
// of any other kind is an error.
func CompilePolicies(c *policies.Compiler, docs []Document, now func() time.Time) (*policies.Engine, error) {
	e, _, err := CompilePoliciesWarn(c, docs, now)
	return e, err
}

// CompilePoliciesWarn is CompilePolicies, and also returns the policies' warnings (what may be
// wrong but cannot be known offline), each naming the file and the object.
func CompilePoliciesWarn(c *policies.Compiler, docs []Document, now func() time.Time) (*policies.Engine, []string, error) {
	d := policies.NewDecoder(true)
	var (
		compiled   []*policies.CompiledPolicy
		exceptions []*policies.CompiledException
		errs       []error
		warnings   []string
	)
	seen := map[string]string{}
	for _, doc := range docs {
		gvk, err := doc.Kind()
		if err != nil {
			errs = append(errs, &InputError{Where: doc.Where(), Err: err})
			continue
		}
		if gvk.GroupVersion() != v1alpha1.GroupVersion {
			errs = append(errs, &InputError{Where: doc.Where(), Err: fmt.Errorf("%s %s is not a policy: want %s ClusterPolicy, Policy or PolicyException", gvk.GroupVersion(), gvk.Kind, v1alpha1.GroupVersion)})
			continue
		}
		n := len(compiled)
		key, err := compileOne(c, d, gvk, doc, &compiled, &exceptions)
		if err != nil {
			errs = append(errs, &InputError{Where: doc.Where(), Err: err})
			continue
		}
		for _, cp := range compiled[n:] {
			for _, w := range cp.Warnings {
				warnings = append(warnings, fmt.Sprintf("%s: %s: %s", doc.Where(), key, w))
			}
		}
		if prev, dup := seen[key]; dup {
			errs = append(errs, &InputError{Where: doc.Where(), Err: fmt.Errorf("%s is also defined in %s", key, prev)})
		}
		seen[key] = doc.Where()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, warnings, err
	}
	return policies.NewEngine(compiled, exceptions, now), warnings, nil
}

func compileOne(c *policies.Compiler, d *policies.Decoder, gvk schema.GroupVersionKind, doc Document, compiled *[]*policies.CompiledPolicy, exceptions *[]*policies.CompiledException) (string, error) {
	obj, ok := policies.NewObject(gvk.Kind)
	if !ok {
		return "", fmt.Errorf("kind %s is not a policy: want ClusterPolicy, Policy or PolicyException", gvk.Kind)
	}
	if errs := validateSchema(gvk, doc.JSON); len(errs) > 0 {
		name := objectName(doc.JSON)
		return "", &policies.CompileError{Object: fmt.Sprintf("%s %q", gvk.Kind, name), Errs: errs}
	}
	if err := d.Into(doc.JSON, obj); err != nil {
		return "", objectError(gvk.Kind, obj.GetName(), err)
	}
	cp, cx, err := c.Compile(obj)
	if err != nil {
		return "", err
	}
	if cp != nil {
		*compiled = append(*compiled, cp)
	}
	if cx != nil {
		*exceptions = append(*exceptions, cx)
	}
	name := obj.GetName()
	if obj.GetNamespace() != "" {
		name = obj.GetNamespace() + "/" + name
	}
	return fmt.Sprintf("%s %q", gvk.Kind, name), nil
}

// objectName is the namespace/name of a document's object, as far as it can be read.
func objectName(js []byte) string {
	var head struct {
		Metadata struct{ Name, Namespace string } `json:"metadata"`
	}
	_ = json.Unmarshal(js, &head)
	if head.Metadata.Namespace != "" {
		return head.Metadata.Namespace + "/" + head.Metadata.Name
	}
	return head.Metadata.Name
}

func objectError(kind, name string, err error) error {
	return fmt.Errorf("%s %q: %w", kind, name, err)
}

// LoadEngine reads the policy files and directories at paths and compiles them into an engine.
func LoadEngine(paths []string, stdin io.Reader, now func() time.Time) (*policies.Engine, error) {
	docs, err := Read(paths, stdin)
	if err != nil {
		return nil, err
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no policies found in %s", strings.Join(paths, ", "))
	}
	c, err := policies.NewCompiler()
	if err != nil {
		return nil, err
	}
	return CompilePolicies(c, docs, now)
}
