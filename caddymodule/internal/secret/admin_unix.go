//go:build unix

package secret

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// socketPathTakenBy says how a user other than euid (and root) could bind
// the Unix socket path before a gateway of euid does (while it is down),
// or put another socket in its place; "" when no one can:
//
//   - the socket's directory is writable by its group or others: even
//     with the sticky bit (/tmp is 1777), which keeps others from removing
//     the gateway's socket while it is there, anyone can create the path
//     while it is not;
//   - the socket's directory, or one above it, belongs to another user, who
//     can do anything in it (as root, the owner of the socket's directory
//     is taken for the gateway's user);
//   - a directory above it is writable by others without the sticky bit:
//     they can rename the socket's directory away and make their own;
//   - the directory does not exist yet, and the nearest one that does lets
//     others make it.
func socketPathTakenBy(path string, euid int) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	dir := filepath.Dir(abs)
	held := dir // the directory that must be no one else's
	for {
		_, err := os.Stat(held)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || filepath.Dir(held) == held {
			return ""
		}
		held = filepath.Dir(held)
	}
	real, err := filepath.EvalSymlinks(held)
	if err != nil {
		return ""
	}
	missing := ""
	if held != dir {
		missing = fmt.Sprintf("; %s does not exist yet, and whoever makes it first holds it", dir)
	}
	// root cannot tell the gateway's user from the configuration: the
	// owner of the socket's own directory is taken for it
	owner := -1
	if fi, err := os.Stat(real); euid == 0 && held == dir && err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = int(st.Uid)
		}
	}
	for d, first := real, true; ; d, first = filepath.Dir(d), false {
		fi, err := os.Stat(d)
		if err != nil {
			return ""
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return ""
		}
		perm, sticky := fi.Mode().Perm(), fi.Mode()&fs.ModeSticky != 0
		switch {
		case int(st.Uid) != euid && st.Uid != 0 && int(st.Uid) != owner:
			return fmt.Sprintf("a Unix socket under %s, a directory of uid %d, not of this user (uid %d) or root%s", d, st.Uid, euid, missing)
		case first && perm&0o022 != 0 && sticky:
			return fmt.Sprintf("a Unix socket in %s, where other users may create files (mode %#o, sticky)%s", d, perm|0o1000, missing)
		case perm&0o022 != 0 && !sticky:
			return fmt.Sprintf("a Unix socket under %s, a directory its group or others may write to (mode %#o)%s", d, perm, missing)
		}
		if filepath.Dir(d) == d {
			return ""
		}
	}
}
