// Package certs manages the webhook's serving certificate: a self-signed CA and a leaf kept in
// a Secret, renewed well before expiry by the leader, served from memory by every replica as
// soon as the Secret changes, and the CA injected into the webhook configurations' caBundle.
package certs
