//go:build !linux

package exepages

import "errors"

// Release is Linux's only.
func Release() (Stats, error) {
	return Stats{}, errors.New("releasing the executable's pages is only supported on Linux")
}
