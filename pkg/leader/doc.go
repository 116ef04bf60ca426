// Package leader runs leader-only work (policy status, certificates, webhook rules) on the one
// replica that holds a Lease, and campaigns again when the lease is lost: losing it stops that
// work, never the process, so a replica keeps serving admissions through an API server outage.
package leader
