package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/caddymodule/listen"
)

// The admin endpoint (Caddy's admin API) can read the configuration,
// replace it and stop the process, and has no authentication of its own.
// Caddy's default, localhost:2019, lets every local user do all three, so
// mxgate's default is a Unix socket that only the gateway's user can open,
// in a directory of that user's:
//
//   - $RUNTIME_DIRECTORY, which systemd sets for RuntimeDirectory=
//     (/run/mxgate in deploy/systemd/mxgate.service);
//   - else $XDG_RUNTIME_DIR/mxgate, when $XDG_RUNTIME_DIR is this user's
//     private directory (mode 0700, as the XDG specification requires);
//   - else mxgate-<uid> in the temporary directory ($TMPDIR, else /tmp:
//     Go's os.TempDir), as tmux does.
//
// The last two are made private (0700) to this user by a command that
// serves, and a command refuses to serve when they are someone else's or
// open to others. The socket is unix-handover (caddymodule/listen): a
// second mxgate cannot take it over. CADDY_ADMIN, when set, is the default
// instead, as in Caddy.
//
// reload and stop, the admin endpoint's clients, check the same before
// they send anything (dialAdminSocket): a directory or a socket that
// another user made first, while the gateway was down, is refused.

// adminSocket is the default admin socket's name in its directory.
const adminSocket = "admin.sock"

// adminDefault is the default admin endpoint in an environment.
type adminDefault struct {
	listen  string // as caddy.DefaultAdminListen
	dir     string // the socket's directory
	private bool   // dir is mxgate's to create and check
}

// defaultAdmin returns the default admin endpoint for the effective user
// euid in the environment getenv, with tmp as the temporary directory.
func defaultAdmin(getenv func(string) string, euid int, tmp string) adminDefault {
	d := adminDefault{private: true}
	// systemd joins several RuntimeDirectory= paths with ':'
	if run, _, _ := strings.Cut(getenv("RUNTIME_DIRECTORY"), ":"); filepath.IsAbs(run) {
		d.dir, d.private = filepath.Clean(run), false
	} else if xdg := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(xdg) && privateTo(xdg, euid) == nil {
		d.dir = filepath.Join(xdg, "mxgate")
	} else {
		d.dir = filepath.Join(tmp, "mxgate-"+strconv.Itoa(euid))
	}
	d.listen = listen.UnixNetwork + "/" + filepath.Join(d.dir, adminSocket) + "|0600"
	return d
}

// prepare makes the socket's directory, when it is mxgate's to make, and
// checks that it is private to euid.
func (d adminDefault) prepare(euid int) error {
	if !d.private {
		return nil
	}
	if err := os.Mkdir(d.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("the admin endpoint's directory: %w", err)
	}
	if err := privateTo(d.dir, euid); err != nil {
		return fmt.Errorf("the admin endpoint's directory %s: %w; remove it, or set RUNTIME_DIRECTORY, XDG_RUNTIME_DIR or CADDY_ADMIN (docs/security-model.md: the control plane)", d.dir, err)
	}
	return nil
}

// servingCommands are the commands that start a server, and so may open
// the default admin endpoint (start runs run).
var servingCommands = []string{"run", "file-server", "reverse-proxy", "respond"}

// setDefaultAdmin makes mxgate's default admin endpoint Caddy's, unless
// CADDY_ADMIN sets one, and prepares its directory when the command
// (args[0]) serves.
func setDefaultAdmin(args []string) error {
	if _, set := os.LookupEnv("CADDY_ADMIN"); set {
		return nil
	}
	euid := os.Geteuid()
	d := defaultAdmin(os.Getenv, euid, os.TempDir())
	caddy.DefaultAdminListen = d.listen
	adminDefaultInForce = d
	if len(args) > 0 && slices.Contains(servingCommands, args[0]) {
		return d.prepare(euid)
	}
	return nil
}

// dialable returns addr with mxgate's networks replaced by the ones a
// client dials: unix-handover is a Unix socket, tcp-handover a TCP one.
func dialable(addr string) (string, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return "", fmt.Errorf("admin address %q: %w", addr, err)
	}
	switch na.Network {
	case listen.UnixNetwork:
		return caddy.JoinNetworkAddress("unix", na.Host, ""), nil
	case listen.Network:
		if na.PortRangeSize() != 1 {
			return "", fmt.Errorf("admin address %q: not one port", addr)
		}
		return caddy.JoinNetworkAddress("tcp", na.Host, strconv.FormatUint(uint64(na.StartPort), 10)), nil
	}
	return addr, nil
}

// adminRequest sends a request to the admin endpoint at addr. When it
// cannot be reached and addr was not given on the command line, the error
// says where it was sought. A Unix socket is trusted only as dialAdminSocket
// says; TCP and file descriptors are dialled as Caddy does.
func adminRequest(addr string, given bool, method, uri string, headers http.Header, body []byte) error {
	dial, err := dialable(addr)
	if err != nil {
		return err
	}
	na, err := caddy.ParseNetworkAddress(dial)
	if err != nil {
		return fmt.Errorf("admin address %q: %w", addr, err)
	}
	hint := func(err error) error {
		var unreached *unreachableError
		if !given && errors.As(err, &unreached) {
			return fmt.Errorf("%w (the configuration's admin endpoint, or mxgate's default in this environment; "+
				"run as the gateway's user in its environment, or give --address; docs/security-model.md: the control plane)", err)
		}
		return err
	}
	if na.IsUnixNetwork() {
		path, _, err := listen.SplitUnixAddress(na.Host)
		if err != nil {
			return err
		}
		c, err := dialAdminSocket(path, os.Geteuid(), given, adminDefaultInForce)
		if err != nil {
			return hint(err)
		}
		defer c.Close()
		return sendOn(c, method, uri, headers, body)
	}
	if err := reachable(dial); err != nil {
		return hint(err)
	}
	var r io.Reader // nil: no body, no Content-Type
	if body != nil {
		r = bytes.NewReader(body)
	}
	resp, err := caddycmd.AdminAPIRequest(dial, method, uri, headers, r)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// unreachableError is an admin endpoint that is not there: nothing
// listens, or its directory does not exist.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// adminDefaultInForce is mxgate's default admin endpoint in this
// environment, as setDefaultAdmin made it Caddy's; zero when CADDY_ADMIN
// sets the default.
var adminDefaultInForce adminDefault

// dialAdminSocket connects to the admin endpoint at the Unix socket path, for
// a client of effective user euid, and returns the connection only when
// the process listening there is this user's gateway:
//
//   - mxgate's default socket (def) is sought only in a directory that is
//     private to euid, as a serving command requires of it (owned by euid,
//     not a link, mode 0700): in a directory another user made first, the
//     socket is that user's;
//   - the listening process must run as euid or root (SO_PEERCRED): a
//     configured socket in a directory others may write to (/tmp) can be
//     bound by another user while the gateway is down. Root may also reach
//     another user's gateway at an address given on the command line
//     (given), when that user owns the socket's directory and no one else
//     may write to it (/run/mxgate under systemd).
//
// Nothing is sent on a connection that fails these checks.
func dialAdminSocket(path string, euid int, given bool, def adminDefault) (*net.UnixConn, error) {
	if def.private && filepath.Clean(path) == filepath.Join(def.dir, adminSocket) {
		if err := privateTo(def.dir, euid); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, &unreachableError{fmt.Errorf("the admin endpoint %s cannot be reached: %w", path, err)}
			}
			return nil, fmt.Errorf("the admin endpoint %s is mxgate's default, in %s, which is not this user's private directory "+
				"(%v): another user may have made it to receive what is sent there; nothing was sent. "+
				"Remove the directory (it is not the gateway's), or give --address (docs/security-model.md: the control plane)", path, def.dir, err)
		}
	}
	c, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		return nil, &unreachableError{fmt.Errorf("the admin endpoint %s cannot be reached: %w", path, err)}
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("the admin endpoint %s: not a Unix socket connection", path)
	}
	uid, err := peerUID(uc)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("the admin endpoint %s: cannot tell which user listens on it (%v); nothing was sent", path, err)
	}
	if err := trustedPeer(path, uid, euid, given); err != nil {
		uc.Close()
		return nil, err
	}
	return uc, nil
}

// trustedPeer fails unless a process of user uid, listening at the Unix
// socket path, may receive the admin requests of a client of user euid
// (see dialAdminSocket).
func trustedPeer(path string, uid, euid int, given bool) error {
	if uid == euid || uid == 0 {
		return nil
	}
	why := ""
	if euid == 0 {
		if !given {
			why = "; as root, another user's gateway is reached only with --address"
		} else if strings.HasPrefix(path, "@") {
			why = "; an abstract socket has no directory to vouch for it"
		} else if err := heldBy(filepath.Dir(path), uid); err != nil {
			why = fmt.Sprintf("; as root, another user's socket is trusted only in a directory of that user's that no one else may write to, and %s is not (%v)", filepath.Dir(path), err)
		} else {
			return nil
		}
	}
	return fmt.Errorf("the admin endpoint %s is a socket of uid %d, neither this user's (uid %d) nor root's: it is not this user's gateway "+
		"(another user may have bound the path while the gateway was down); nothing was sent to it%s. "+
		"Run this command as the gateway's user, or give --address (docs/security-model.md: the control plane)", path, uid, euid, why)
}

// sendOn sends one request on c and reads its answer; an answer of 400 or
// more is an error holding its body, as Caddy's client says it.
func sendOn(c net.Conn, method, uri string, headers http.Header, body []byte) error {
	var r io.Reader // nil: no body, no Content-Type
	if body != nil {
		r = bytes.NewReader(body)
	}
	// as Caddy's client: a Host of 127.0.0.1, which the admin endpoint
	// accepts on a Unix socket
	req, err := http.NewRequest(method, "http://127.0.0.1"+uri, r)
	if err != nil {
		return fmt.Errorf("making request: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	maps.Copy(req.Header, headers)
	req.Close = true
	if err := req.Write(c); err != nil {
		return fmt.Errorf("performing request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return fmt.Errorf("performing request: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		msg, err := io.ReadAll(io.LimitReader(resp.Body, 2<<20))
		if err != nil {
			return fmt.Errorf("HTTP %d: reading error message: %v", resp.StatusCode, err)
		}
		return fmt.Errorf("mxgate responded with error: HTTP %d: %s", resp.StatusCode, msg)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 2<<20))
	return nil
}

// reachable connects to the admin endpoint at addr (as dialable returns
// it, not a Unix socket) and hangs up.
func reachable(addr string) error {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return err
	}
	if na.IsFdNetwork() {
		return nil // Caddy's request says what it can
	}
	c, err := net.DialTimeout(na.Network, na.JoinHostPort(0), 10*time.Second)
	if err != nil {
		return &unreachableError{fmt.Errorf("the admin endpoint %s cannot be reached: %w", addr, err)}
	}
	return c.Close()
}

const adminClientNote = `
mxgate's default admin endpoint is a Unix socket that only the gateway's
user can open: $RUNTIME_DIRECTORY/admin.sock under systemd, else
$XDG_RUNTIME_DIR/mxgate/admin.sock, else $TMPDIR/mxgate-<uid>/admin.sock
(/tmp/mxgate-<uid>/admin.sock when TMPDIR is unset; CADDY_ADMIN overrides
it). Run this command as the gateway's user, in its environment (under
systemd: systemctl reload mxgate), or name the endpoint with --address,
e.g. --address unix//run/mxgate/admin.sock.

Before it sends anything to a Unix socket, this command checks who
listens there: mxgate's default socket only in a directory private to
this user (mode 0700, not a link), and any socket only when the process
listening on it runs as this user or root. Root may also reach another
user's gateway with --address, when that user owns the socket's directory
and no one else may write to it (/run/mxgate under systemd). Otherwise it
fails, naming the socket and the user listening, and sends nothing.
`

// reloadCommand is Caddy's reload, with its help as given, which dials
// mxgate's networks.
func reloadCommand(caddys caddycmd.Command) caddycmd.Command {
	c := caddys
	c.CobraFunc = func(cmd *cobra.Command) {
		caddys.CobraFunc(cmd) // the flags
		cmd.RunE = runFunc(func(fl caddycmd.Flags) (int, error) {
			configFlag, adapterFlag, addressFlag := fl.String("config"), fl.String("adapter"), fl.String("address")
			config, configFile, adapterUsed, err := caddycmd.LoadConfig(configFlag, adapterFlag)
			if err != nil {
				return caddy.ExitCodeFailedStartup, err
			}
			if configFile == "" {
				return caddy.ExitCodeFailedStartup, errors.New("no config file to load")
			}
			addr, err := caddycmd.DetermineAdminAPIAddress(addressFlag, config, configFile, adapterFlag)
			if err != nil {
				return caddy.ExitCodeFailedStartup, fmt.Errorf("couldn't determine admin API address: %v", err)
			}
			headers := make(http.Header)
			if fl.Bool("force") {
				headers.Set("Cache-Control", "must-revalidate")
			}
			// as Caddy's: the running process keeps what it knows of its
			// source when the reload comes from the same file
			headers.Set("Caddy-Config-Source-File", configFile)
			headers.Set("Caddy-Config-Source-Adapter", adapterUsed)
			if err := adminRequest(addr, addressFlag != "", http.MethodPost, "/load", headers, config); err != nil {
				return caddy.ExitCodeFailedStartup, fmt.Errorf("sending configuration to instance: %w", err)
			}
			return caddy.ExitCodeSuccess, nil
		})
	}
	return c
}

// stopCommand is Caddy's stop, with its help as given, which dials
// mxgate's networks.
func stopCommand(caddys caddycmd.Command) caddycmd.Command {
	c := caddys
	c.CobraFunc = func(cmd *cobra.Command) {
		caddys.CobraFunc(cmd)
		cmd.RunE = runFunc(func(fl caddycmd.Flags) (int, error) {
			addressFlag := fl.String("address")
			addr, err := caddycmd.DetermineAdminAPIAddress(addressFlag, nil, fl.String("config"), fl.String("adapter"))
			if err != nil {
				return caddy.ExitCodeFailedStartup, fmt.Errorf("couldn't determine admin API address: %v", err)
			}
			if err := adminRequest(addr, addressFlag != "", http.MethodPost, "/stop", nil, nil); err != nil {
				return caddy.ExitCodeFailedStartup, err
			}
			return caddy.ExitCodeSuccess, nil
		})
	}
	return c
}
