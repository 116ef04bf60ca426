// Package manifests embeds the CustomResourceDefinitions of Portcullis's API, so that the CLI
// validates policy files against the very schemas the API server does.
package manifests

import "embed"

// CRDs holds crds/portcullis.dev_*.yaml.
//
//go:embed crds/portcullis.dev_*.yaml
var CRDs embed.FS
