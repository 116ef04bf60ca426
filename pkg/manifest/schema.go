package manifest

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"sync"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/portcullis-dev/portcullis/manifests"
)

// schemas are the OpenAPI schemas of the policy kinds, by group, version and kind, from the
// embedded CRDs.
var schemas = sync.OnceValues(func() (map[schema.GroupVersionKind]validation.SchemaValidator, error) {
	out := map[schema.GroupVersionKind]validation.SchemaValidator{}
	files, err := fs.Glob(manifests.CRDs, "crds/*.yaml")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		data, err := manifests.CRDs.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.Unmarshal(data, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, v := range crd.Spec.Versions {
			if v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			validator, _, err := validation.NewSchemaValidator(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			out[schema.GroupVersionKind{Group: crd.Spec.Group, Version: v.Name, Kind: crd.Spec.Names.Kind}] = validator
		}
	}
	return out, nil
})

// validateSchema checks a policy document against its kind's CRD schema, as the API server
// does before anything else: a field of the wrong type is named with its index and the type
// expected, in the API's words ("spec.rules[0].cel.message: Invalid value: "boolean":
// spec.rules[0].cel.message in body must be of type string"). Unknown fields are left to the
// strict decoding that follows.
func validateSchema(gvk schema.GroupVersionKind, js []byte) field.ErrorList {
	validators, err := schemas()
	if err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	v, ok := validators[gvk]
	if !ok {
		return nil
	}
	var obj map[string]any
	if err := json.Unmarshal(js, &obj); err != nil {
		return nil // the decoding reports it
	}
	return validation.ValidateCustomResource(nil, obj, v)
}
