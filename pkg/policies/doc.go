// Package policies is the Portcullis engine: it compiles ClusterPolicy, Policy and PolicyException
// objects once into an Engine, matches admission requests against them and evaluates their rules
// (Pod Security Standards, resources, labels, CEL) into results. The webhook, the CLI and the
// background audit all run this one engine.
package policies
