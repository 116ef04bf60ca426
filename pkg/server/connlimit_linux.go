package server

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// pendingInput reports whether bytes wait unread on c: a connection the server still counts as
// idle may already hold its client's next request, and closing it then would reset a review in
// flight.
func pendingInput(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	if err := raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
		return false
	}
	return n > 0
}
