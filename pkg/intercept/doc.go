// Package intercept keeps the rules of Portcullis's workload webhooks equal to what the policies
// in force need: the kinds and operations they match, resolved through discovery to the
// resources the API server serves (custom resources included), less the kinds Portcullis never
// intercepts. What a policy asks for and cannot get is reported, never silently dropped.
package intercept
