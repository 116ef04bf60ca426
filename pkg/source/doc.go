// Package source is the policy source: the policy controller watches ClusterPolicy, Policy and
// PolicyException objects, compiles each generation once within the tenant budgets, holds the
// engine in force for the admission handlers (and the coming background audit), keeps the
// webhooks' rules following the policies, and reports each policy's status once the engine
// that enforces it is in place.
package source
