// Package report gathers the engine's results by resource and writes them as the CLI prints
// them (text, JSON); it is where further formats and report sinks go.
package report
