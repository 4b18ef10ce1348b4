#!/usr/bin/env bash
# Builds mxgate's container image from the Dockerfile and runs it, without a
# container daemon: buildah builds (vfs storage, chroot isolation), podman
# runs (runc, host network). Installs buildah, podman, runc and
# busybox-static from Debian's packages when missing.
#
#   scripts/image-test.sh            build, check the image, run it, probe it
#
# The Dockerfile's build stage needs a Go toolchain image. GO_IMAGE names
# one (for example golang:1.26-bookworm where a registry is reachable);
# without it, this script makes one from the Go toolchain on this machine
# (GOROOT) and busybox-static, so that the build needs no image registry.
# The build stage gets this machine's module and build caches as volumes,
# so that it neither downloads every module nor compiles Caddy from
# scratch on each run.
#
# Storage lives in $MXGATE_IMAGE_TEST_DIR (default ~/.cache/mxgate-image-test)
# and is kept between runs; delete it to start afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "image-test: $*"; }
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }

need=""
command -v buildah >/dev/null 2>&1 || need="$need buildah"
command -v podman >/dev/null 2>&1 || need="$need podman"
command -v runc >/dev/null 2>&1 || need="$need runc"
[ -n "${GO_IMAGE:-}" ] || [ -x /bin/busybox ] || need="$need busybox-static"
if [ -n "$need" ]; then
	sudo=""
	if [ "$(id -u)" != 0 ]; then
		command -v sudo >/dev/null 2>&1 || fail "missing$need, and this user cannot install them"
		sudo=sudo
	fi
	say "installing$need from Debian's packages"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

dir=${MXGATE_IMAGE_TEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mxgate-image-test}
mkdir -p "$dir"
store=(--root "$dir/storage" --runroot "$dir/run" --storage-driver vfs)
bah() { buildah "${store[@]}" "$@"; }
pod() { podman "${store[@]}" --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"; }

version=$(git describe --tags --always --dirty 2>/dev/null || echo unknown)
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
image=localhost/mxgate:image-test

# The build stage's toolchain image.
if [ -z "${GO_IMAGE:-}" ]; then
	goroot=$(go env GOROOT)
	gover=$(go env GOVERSION)
	GO_IMAGE=localhost/mxgate-go-toolchain:$gover
	if ! bah inspect --type image "$GO_IMAGE" >/dev/null 2>&1; then
		say "making $GO_IMAGE from $goroot and busybox-static"
		ctr=$(bah from scratch)
		mnt=$(bah mount "$ctr")
		mkdir -p "$mnt/usr/local" "$mnt/bin" "$mnt/etc/ssl/certs" "$mnt/tmp" "$mnt/root" "$mnt/go"
		chmod 1777 "$mnt/tmp"
		cp -a "$goroot" "$mnt/usr/local/go"
		cp /bin/busybox "$mnt/bin/busybox"
		for applet in sh mkdir cp chmod ls cat; do ln -s busybox "$mnt/bin/$applet"; done
		cp /etc/ssl/certs/ca-certificates.crt "$mnt/etc/ssl/certs/"
		bah unmount "$ctr" >/dev/null
		bah config --env PATH=/usr/local/go/bin:/go/bin:/bin --env GOPATH=/go --env HOME=/root \
			--env GOPROXY="$(go env GOPROXY)" "$ctr"
		bah commit --quiet "$ctr" "$GO_IMAGE" >/dev/null
		bah rm "$ctr" >/dev/null
	fi
fi

say "building $image ($version) on $GO_IMAGE"
start=$(date +%s)
bah build --quiet --format docker --isolation chroot --layers=false \
	--build-arg GO_IMAGE="$GO_IMAGE" --build-arg VERSION="$version" --build-arg COMMIT="$commit" \
	-v "$(go env GOMODCACHE):/go/pkg/mod" -v "$(go env GOCACHE):/root/.cache/go-build" \
	-t "$image" . >/dev/null
say "built in $(($(date +%s) - start))s"

# What the image is.
cfg=$(bah inspect --type image "$image" | python3 -c '
import json, sys
c = json.load(sys.stdin)["Docker"]["config"]
print("user=%s" % c.get("User"))
print("entrypoint=%s" % json.dumps(c.get("Entrypoint")))
print("healthcheck=%s" % json.dumps((c.get("Healthcheck") or {}).get("Test")))
')
echo "$cfg" | sed 's/^/    /'
echo "$cfg" | grep -qx 'user=65532:65532' || fail "the image does not run as 65532:65532"
echo "$cfg" | grep -qF 'healthcheck=["CMD", "/usr/bin/mxgate", "healthcheck"' || fail "no HEALTHCHECK with mxgate healthcheck"
echo "$cfg" | grep -qx 'entrypoint=\["/usr/bin/mxgate"\]' || fail "the entrypoint is not mxgate"
size=$(pod image inspect --format '{{.Size}}' "$image" 2>/dev/null || true)
ctr=$(bah from "$image")
mnt=$(bah mount "$ctr")
files=$(cd "$mnt" && find . -mindepth 1 | sort | tr '\n' ' ')
bah unmount "$ctr" >/dev/null
bah rm "$ctr" >/dev/null
for want in ./usr/bin/mxgate ./etc/ssl/certs/ca-certificates.crt ./data ./tmp; do
	case " $files " in *" $want "*) ;; *) fail "the image lacks $want: $files" ;; esac
done
case " $files " in *" ./bin/"* | *" ./bin "*) fail "the image has a /bin: $files" ;; esac
say "image files: $files(size ${size:-?} bytes)"

# podman schedules health checks with systemd timers; where systemd does
# not run, the check is run by hand below instead (podman still logs that
# it could not reach systemd: expected there). podman's default rlimits
# are above what a process without CAP_SYS_RESOURCE may set in some
# sandboxes; use the current ones there.
run_args=(--health-interval disable)
if ! out=$(pod run --rm --network host "${run_args[@]}" "$image" version 2>&1); then
	case "$out" in
	*rlimit*)
		run_args+=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=32768:32768")
		out=$(pod run --rm --network host "${run_args[@]}" "$image" version 2>&1) || fail "podman run: $out"
		;;
	*) fail "podman run: $out" ;;
	esac
fi
echo "$out" | sed 's/^/    /'
echo "$out" | grep -qx "mxgate $version" || fail "mxgate version does not say $version"
echo "$out" | grep -qx "commit $commit" || fail "mxgate version does not say commit $commit"
echo "$out" | grep -q "^caddy  v2\." || fail "mxgate version does not say Caddy's version"
if pod run --rm --network host "${run_args[@]}" --entrypoint /bin/sh "$image" -c true >/dev/null 2>&1; then
	fail "the image has a shell"
fi

# Run the gateway as an operator would: read-only root, state on a volume,
# the HMAC key as a credential file.
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
ready=$(freeport) mdx=$(freeport)
work=$(mktemp -d)
name=mxgate-image-test-$$
cleanup() { pod rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/data" "$work/creds"
chown 65532:65532 "$work/data"
key=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI= # MX's documentation's demo key
printf '%s\n' "$key" >"$work/creds/mdx-hmac.key"
chmod 0444 "$work/creds/mdx-hmac.key"
cat >"$work/Caddyfile" <<EOF
{
	auto_https off
}
http://127.0.0.1:$ready {
	respond /ready "ready" 200
}
http://127.0.0.1:$mdx {
	mdx_hmac verify {
		key {file.{\$CREDENTIALS_DIRECTORY}/mdx-hmac.key}
	}
	respond "signed" 200
}
EOF
pod run -d --name "$name" --network host "${run_args[@]}" \
	--read-only --tmpfs /tmp \
	-v "$work/data:/data" -v "$work/Caddyfile:/etc/mxgate/Caddyfile:ro" -v "$work/creds:/run/secrets:ro" \
	-e CREDENTIALS_DIRECTORY=/run/secrets -e MXGATE_HEALTH_URL="http://127.0.0.1:$ready/ready" \
	"$image" >/dev/null
healthy=""
for _ in $(seq 1 100); do
	if pod exec "$name" /usr/bin/mxgate healthcheck >/dev/null 2>&1; then
		healthy=yes
		break
	fi
	sleep 0.1
done
[ -n "$healthy" ] || fail "the HEALTHCHECK command never passed; logs: $(pod logs "$name" 2>&1 | tail -20)"
say "HEALTHCHECK command passes in the running container"
if pod healthcheck run "$name" >/dev/null 2>&1; then
	say "podman healthcheck run: healthy"
else
	say "podman healthcheck run did not report healthy here (it needs systemd for its timers); the command itself passed above"
fi

# The HMAC key reached the gateway from the credential file.
url="http://127.0.0.1:$mdx/inst1/accounts"
headers=$(MDX_HMAC_KEY=$key go run ./cmd/mxgate mdx-sign --url "$url" 2>/dev/null) || headers=""
[ -n "$headers" ] || headers=$(MDX_HMAC_KEY=$key ./bin/mxgate mdx-sign --url "$url")
curl_args=()
while IFS= read -r h; do curl_args+=(-H "$h"); done <<<"$headers"
code=$(curl -s -o /dev/null -w '%{http_code}' "${curl_args[@]}" "$url")
[ "$code" = 200 ] || fail "a request signed with the credential's key got $code; logs: $(pod logs "$name" 2>&1 | tail -20)"
code=$(curl -s -o /dev/null -w '%{http_code}' "$url")
[ "$code" = 412 ] || fail "an unsigned request got $code, want 412"
say "signed request 200, unsigned 412: the key came from the credential file"

# The admin endpoint is mxgate's default, a socket only the gateway's user
# can open (/tmp/mxgate-65532/admin.sock here): a reload as that user, in
# the container, reaches it.
pod exec "$name" /usr/bin/mxgate reload --config /etc/mxgate/Caddyfile --adapter caddyfile --force >/dev/null 2>&1 ||
	fail "mxgate reload in the container did not reach the admin endpoint; logs: $(pod logs "$name" 2>&1 | tail -20)"
say "mxgate reload in the container reaches the admin socket"

# Nothing but /data (and the /tmp tmpfs) was written.
[ -n "$(ls -A "$work/data")" ] || fail "nothing was written to /data"
pod stop -t 10 "$name" >/dev/null
say "PASS"
