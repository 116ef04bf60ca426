// Package manifest reads Kubernetes objects from files, directories and stdin (multi-document
// YAML, JSON and List objects), remembering where each came from, and compiles the policies
// among them.
package manifest
