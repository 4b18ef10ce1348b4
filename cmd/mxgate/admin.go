package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
//   - else mxgate-<uid> in the temporary directory (/tmp), as tmux does.
//
// The last two are made private (0700) to this user by a command that
// serves, and a command refuses to serve when they are someone else's or
// open to others. The socket is unix-handover (caddymodule/listen): a
// second mxgate cannot take it over. CADDY_ADMIN, when set, is the default
// instead, as in Caddy.

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
		return fmt.Errorf("the admin endpoint's directory %s: %w; remove it, or set RUNTIME_DIRECTORY, XDG_RUNTIME_DIR or CADDY_ADMIN (README: the control plane)", d.dir, err)
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
// says where it was sought.
func adminRequest(addr string, given bool, method, uri string, headers http.Header, body []byte) error {
	dial, err := dialable(addr)
	if err != nil {
		return err
	}
	if err := reachable(dial); err != nil {
		if !given {
			err = fmt.Errorf("%w (the configuration's admin endpoint, or mxgate's default in this environment; "+
				"run as the gateway's user in its environment, or give --address; README: the control plane)", err)
		}
		return err
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

// reachable connects to the admin endpoint at addr (as dialable returns
// it) and hangs up.
func reachable(addr string) error {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return err
	}
	network, address := na.Network, na.JoinHostPort(0)
	if na.IsFdNetwork() {
		return nil // Caddy's request says what it can
	}
	if na.IsUnixNetwork() {
		if address, _, err = listen.SplitUnixAddress(na.Host); err != nil {
			return err
		}
	}
	c, err := net.DialTimeout(network, address, 10*time.Second)
	if err != nil {
		return fmt.Errorf("the admin endpoint %s cannot be reached: %w", addr, err)
	}
	return c.Close()
}

const adminClientNote = `
mxgate's default admin endpoint is a Unix socket that only the gateway's
user can open: $RUNTIME_DIRECTORY/admin.sock under systemd, else
$XDG_RUNTIME_DIR/mxgate/admin.sock, else /tmp/mxgate-<uid>/admin.sock
(CADDY_ADMIN overrides it). Run this command as the gateway's user, in its
environment (under systemd: systemctl reload mxgate), or name the endpoint
with --address, e.g. --address unix//run/mxgate/admin.sock.
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
