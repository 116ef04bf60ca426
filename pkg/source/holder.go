package source

import (
	"errors"
	"net/http"
	"sync/atomic"

	"github.com/portcullis-dev/portcullis/pkg/policies"
)

// EngineHolder holds the engine in force. The policy controller swaps in a new engine when a
// policy changes; handlers load it once per review.
type EngineHolder struct {
	engine atomic.Pointer[policies.Engine]
}

// Store installs a new engine.
func (h *EngineHolder) Store(e *policies.Engine) { h.engine.Store(e) }

// Load returns the engine in force, nil until the policies have been synced once.
func (h *EngineHolder) Load() *policies.Engine { return h.engine.Load() }

// ReadyCheck is a healthz checker: ready once the policies have been compiled once.
func (h *EngineHolder) ReadyCheck(_ *http.Request) error {
	if h.Load() == nil {
		return errors.New("policies not synced yet")
	}
	return nil
}
