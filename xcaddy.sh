#!/usr/bin/env bash
# Builds mxgate with xcaddy, as any Caddy plugin is built, from this
# checkout and the Caddy version in go.mod, then checks that the binary
# lists every mxgate module.
set -euo pipefail
cd "$(dirname "$0")"

# xcaddy's version is pinned in tools/xcaddy/go.mod.
caddy_version=$(go list -m -f '{{.Version}}' github.com/caddyserver/caddy/v2)
out=${1:-bin/mxgate-xcaddy}
mkdir -p "$(dirname "$out")"

tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
(cd tools/xcaddy && go build -o "$tools/xcaddy" github.com/caddyserver/xcaddy/cmd/xcaddy)

# xcaddy asks `go get github.com/mxgate/mxgate`, which looks up the module's
# published versions before using the local replacement. Answer that from a
# file proxy that knows no versions, so Go uses this checkout; every other
# module still comes from the usual proxy.
mkdir -p "$tools/proxy/github.com/mxgate/mxgate/@v"
: >"$tools/proxy/github.com/mxgate/mxgate/@v/list"
GOPROXY="file://$tools/proxy,$(go env GOPROXY)" GONOSUMDB=github.com/mxgate/mxgate \
	"$tools/xcaddy" build "$caddy_version" \
	--output "$out" \
	--with "github.com/mxgate/mxgate=$(pwd)"

modules=$("$out" list-modules)
# every module ID registered under caddymodule/ (one package per feature)
ids=$(grep -rho --include='*.go' --exclude='*_test.go' 'ID: *"[a-z0-9_.]*"' caddymodule | sed 's/.*"\(.*\)"/\1/' | sort -u)
if [ -z "$ids" ]; then
	echo "xcaddy.sh: found no module IDs under caddymodule/" >&2
	exit 1
fi
missing=0
for id in $ids; do
	if ! grep -qx "$id" <<<"$modules"; then
		echo "xcaddy.sh: $out lacks module $id" >&2
		missing=1
	fi
done
[ "$missing" = 0 ] || exit 1
echo "xcaddy.sh: $out (Caddy $caddy_version) lists every mxgate module:"
sed 's/^/  /' <<<"$ids"
