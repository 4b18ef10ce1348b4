#!/usr/bin/env bash
# Runs every test of mxgate. Installs what the tests need when it is
# missing (on Debian, through apt-get), and never skips a test under CI.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: Go is required (https://go.dev/dl/); none found on PATH" >&2
	exit 1
fi

# The Redis tests start their own redis-server on a free loopback port
# (redis-cli joins the Cluster), the README's walkthrough is replayed with
# curl, the JWE interop tests run Node.js, the systemd unit is checked with
# systemd-analyze and the alert rules with promtool; all come from Debian's
# packages when missing.
missing=""
command -v redis-server >/dev/null 2>&1 || missing="$missing redis-server"
command -v redis-cli >/dev/null 2>&1 || missing="$missing redis-tools"
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
	sudo=""
	if [ "$(id -u)" != 0 ]; then
		if command -v sudo >/dev/null 2>&1; then
			sudo=sudo
		else
			echo "test.sh: missing$missing, and this user cannot install them (apt-get install$missing)" >&2
			exit 1
		fi
	fi
	echo "test.sh: installing$missing from Debian's packages"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The jwe interop tests run the npm package jose, pinned in its lock file.
if [ ! -f jwe/testdata/interop/node_modules/jose/package.json ]; then
	npm ci --prefix jwe/testdata/interop --no-audit --no-fund --silent
fi
# The e2e SDK tests run MX's Node SDK, mx-platform-node, pinned likewise
# (its packages run no install scripts).
if [ ! -f e2e/testdata/mxsdk/node_modules/mx-platform-node/package.json ]; then
	npm ci --prefix e2e/testdata/mxsdk --ignore-scripts --no-audit --no-fund --silent
fi

# The fdx_auth interop tests run a certified authorization server, the npm
# package oidc-provider, and the DPoP client library dpop, pinned likewise
# (no install scripts needed).
if [ ! -f e2e/testdata/as/node_modules/oidc-provider/package.json ] || [ ! -f e2e/testdata/as/node_modules/dpop/package.json ]; then
	npm ci --prefix e2e/testdata/as --ignore-scripts --no-audit --no-fund --silent
fi

# Under CI the Redis, systemd and promtool tests fail, never skip, if their
# programs cannot be found.
export CI="${CI:-}"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "test.sh: gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

# go vet and staticcheck (pinned in tools/staticcheck/go.mod) run beside
# the tests, which spend most of their time waiting on real processes, over
# the gateway's module and bench's.
(go vet ./... && go run -modfile tools/staticcheck/go.mod honnef.co/go/tools/cmd/staticcheck ./... &&
	go -C bench vet ./... && (cd bench && go run -modfile ../tools/staticcheck/go.mod honnef.co/go/tools/cmd/staticcheck ./...)) &
checks=$!
# -race covers every package; fuzz targets run on their seed corpora. The
# end-to-end package, which mostly waits on real processes and timers,
# starts first and runs beside the others; its output follows theirs.
e2e_out=$(mktemp)
trap 'rm -f "$e2e_out"' EXIT
go test -race -count=1 ./e2e >"$e2e_out" 2>&1 &
e2e=$!
status=0
go test -race -count=1 $(go list ./... | grep -v '/e2e$') || status=$?
# tools/metricuses, its own module (Prometheus's PromQL parser is no
# requirement of the gateway's): the metrics and labels the alert rules and
# the dashboard use are ones the gateway exposes.
(go -C tools/metricuses vet ./... && go -C tools/metricuses test -race -count=1 ./...) || status=1
# bench, its own module (what only the benchmarks need is no requirement of
# the gateway's): the harnesses' own tests, which start no benchmark.
go -C bench test -race -count=1 ./... || status=1
wait "$e2e" || status=1
cat "$e2e_out"
wait "$checks" || status=1
exit "$status"
