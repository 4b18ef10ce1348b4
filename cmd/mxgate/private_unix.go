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
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("mode %#o lets others in (want 0700)", perm)
	}
	return nil
}

// heldBy fails unless dir is a directory (not a link to one) owned by uid
// that no one else may write to: what is in it is uid's (or root's).
func heldBy(dir string, uid int) error {
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
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("mode %#o lets others write to it", perm)
	}
	return nil
}
