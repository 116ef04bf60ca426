// Package server serves Portcullis's admission webhooks and keeps the engine in step with the
// cluster's policies: the policy controller compiles ClusterPolicy, Policy and PolicyException
// objects into an Engine and reports their status, and the handlers decode each review once,
// evaluate it and map the results to an admission response.
package server
