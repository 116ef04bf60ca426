// Package test holds the tests that run Portcullis as users do: the policy library against its
// fixtures, and (with the server) end-to-end tests against a real API server.
package test
