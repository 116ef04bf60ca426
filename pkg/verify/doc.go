// Package verify checks container image signatures with cosign: a Verifier is compiled once per
// policy rule from its keys, resolves a tag to its digest, verifies the key-based signatures
// cosign writes (the sha256-<digest>.sig tag layout), caches verdicts by digest and key set,
// coalesces concurrent verifications of one digest and bounds each by a deadline.
package verify
