// Package server serves Portcullis's admission webhooks: the handlers decode each review once,
// evaluate it with the engine in force (from package source) and map the results to an
// admission response, within a bounded memory budget, per-tenant CPU gates and deadlines.
package server
