//go:build !linux && !darwin && !freebsd

package main

import (
	"errors"
	"net"
)

// peerUID cannot tell the user at the other end of a Unix socket on this
// system: reload and stop refuse to send anything to one (name a TCP
// endpoint with --address where that is acceptable).
func peerUID(*net.UnixConn) (int, error) {
	return 0, errors.New("this system offers no way to tell which user listens on a Unix socket")
}
