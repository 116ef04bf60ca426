//go:build !linux

package server

import "net"

// pendingInput cannot tell elsewhere than on Linux.
func pendingInput(net.Conn) bool { return false }
