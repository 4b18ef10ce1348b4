//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// privateTo fails unless dir is a directory (not a link to one) owned by
// uid that no one else may enter, list or write.
func privateTo(dir string, uid int) error {
	return ownedDir(dir, uid, 0o077, "lets others in (want 0700)")
}

// heldBy fails unless dir is a directory (not a link to one) owned by uid
// that no one else may write to: what is in it is uid's (or root's).
func heldBy(dir string, uid int) error {
	return ownedDir(dir, uid, 0o022, "lets others write to it")
}

// ownedDir fails unless dir is a directory (not a link to one) owned by
// uid whose mode has none of the bits in deny; why says what such a bit
// allows.
func ownedDir(dir string, uid int, deny os.FileMode, why string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("cannot tell its owner")
	}
	if int(st.Uid) != uid {
		return fmt.Errorf("owned by uid %d, not %d", st.Uid, uid)
	}
	if perm := fi.Mode().Perm(); perm&deny != 0 {
		return fmt.Errorf("mode %#o %s", perm, why)
	}
	return nil
}
