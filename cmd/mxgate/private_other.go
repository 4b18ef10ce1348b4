//go:build !unix

package main

import (
	"errors"
	"os"
)

// privateTo fails unless dir is a directory; where there are no Unix
// owners and modes, that is all it can check.
func privateTo(dir string, _ int) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	return nil
}

// heldBy fails: where there are no Unix owners and modes, no directory
// vouches for another user's socket.
func heldBy(string, int) error {
	return errors.New("this system has no directory owners to check")
}
