package cli

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mxgate/mxgate/secrethash"
)

// maxSecret bounds what hash-secret reads.
const maxSecret = 4096

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "hash-secret",
		Usage: "[--file <file>]",
		Short: "Hashes a high-entropy machine secret for mx_auth check",
		Long: `
Prints the fast keyed hash of a machine secret (an MX API key, a webhook
secret: random, 128 bits or more) for an mx_auth check client line:

	$hmac-sha256$<salt>$<mac>

HMAC-SHA256 under a fresh random salt. A leaked configuration does not give
the secret away, and checking a wrong secret costs about a microsecond, so
a flood of bad credentials costs the gateway next to nothing.

Which hash when:
  mxgate hash-secret     random machine secrets of at least 128 bits
                         (32 hex digits, 22 base64 characters): API keys,
                         webhook secrets, tokens
  mxgate hash-password   anything a person chose or remembers: it is
                         guessable, and only a slow hash (bcrypt, argon2id)
                         makes guessing from a leaked hash expensive; each
                         wrong password then costs the gateway a full hash
                         (about a second at bcrypt cost 14)

The secret is read from --file, or from standard input (without echo, and
twice, on a terminal), never from the command line, so that it stays out
of shell history and process listings. Surrounding white space (a file's
final newline) is dropped. A secret whose character classes and length
cannot reach 128 bits is refused: use hash-password for it.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("file", "", "file holding the secret ('-' or nothing: standard input)")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdHashSecret)
		},
	})
}

func cmdHashSecret(fs caddycmd.Flags) (int, error) {
	secret, err := readSecret(fs.String("file"), os.Stdin, os.Stderr)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	out, err := hashSecret(secret)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Println(out)
	return caddy.ExitCodeSuccess, nil
}

// hashSecret returns the hash of secret, or why it is refused (never
// echoing it).
func hashSecret(secret []byte) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("the secret is empty")
	}
	h, err := secrethash.New(secret, rand.Reader)
	if errors.Is(err, secrethash.ErrWeak) {
		return "", fmt.Errorf("the secret is too weak for a fast hash: %d characters of its kinds cannot hold 128 bits; for a password, use mxgate hash-password", len(secret))
	}
	if err != nil {
		return "", err
	}
	return h.String(), nil
}

// readSecret reads the secret from file ("" or "-": stdin, prompting
// twice without echo when stdin is a terminal), trimmed.
func readSecret(file string, stdin *os.File, prompt io.Writer) ([]byte, error) {
	var raw []byte
	var err error
	switch {
	case file != "" && file != "-":
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		raw, err = readBounded(f)
		if err != nil {
			return nil, err
		}
	case term.IsTerminal(int(stdin.Fd())):
		raw, err = promptTwice(int(stdin.Fd()), prompt)
		if err != nil {
			return nil, err
		}
	default:
		if raw, err = readBounded(stdin); err != nil {
			return nil, err
		}
	}
	return bytes.TrimSpace(raw), nil
}

func readBounded(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSecret+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSecret {
		return nil, fmt.Errorf("the input is longer than %d bytes: not a secret", maxSecret)
	}
	return b, nil
}

func promptTwice(fd int, prompt io.Writer) ([]byte, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return nil, err
	}
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt)
	go func() {
		if _, ok := <-c; ok {
			_ = term.Restore(fd, state)
			os.Exit(caddy.ExitCodeFailedStartup)
		}
	}()
	defer func() { signal.Stop(c); close(c) }()
	fmt.Fprint(prompt, "Secret: ")
	first, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(prompt, "Again: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(first, again) {
		return nil, errors.New("the two entries differ")
	}
	return first, nil
}
