# mxgate's container image: a static binary on an empty base image, run as
# an unprivileged numeric user, with no shell, no package manager and
# nothing writable but /data.
#
# Build (the version and commit appear in `mxgate version`):
#
#   docker build -t mxgate \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg COMMIT="$(git rev-parse HEAD)" .
#
# (buildah build --format docker … takes the same arguments; the Docker
# format keeps the HEALTHCHECK, which the OCI format has no place for.)
#
# Run, with the root file system read-only:
#
#   docker run --read-only --tmpfs /tmp \
#     -v mxgate-data:/data \
#     -v /etc/mxgate/Caddyfile:/etc/mxgate/Caddyfile:ro \
#     -v /etc/mxgate/credentials:/run/secrets:ro -e CREDENTIALS_DIRECTORY=/run/secrets \
#     -p 443:8443 mxgate
#
# The process runs as 65532:65532 without capabilities: listen on ports
# above 1023 (8443 above) and publish them, or grant NET_BIND_SERVICE.
# The admin endpoint (reload, stop) is mxgate's default, a Unix socket only
# that user can open, /tmp/mxgate-65532/admin.sock; nothing of it is on TCP.
# Reload from inside the container:
#
#   docker exec <container> mxgate reload --config /etc/mxgate/Caddyfile --adapter caddyfile
# Caddy keeps certificates, locks and the autosaved configuration under
# /data (XDG_DATA_HOME, XDG_CONFIG_HOME); give it a volume.
#
# The HEALTHCHECK asks $MXGATE_HEALTH_URL with `mxgate healthcheck`, which
# exits 0 only on a 2xx answer. Serve a readiness endpoint there, for
# example
#
#   http://127.0.0.1:2020 {
#   	respond /ready 200
#   }
#
# (a readiness handler that answers 503 while a shared store is down is a
# better answer than a fixed 200), or set MXGATE_HEALTH_URL to the endpoint
# your configuration has.

# The Go toolchain image; pin it by digest for reproducible builds.
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=unknown
ARG COMMIT=unknown
RUN go build \
      -ldflags "-s -w -X github.com/mxgate/mxgate/internal/version.Version=${VERSION} -X github.com/mxgate/mxgate/internal/version.Commit=${COMMIT}" \
      -o /out/usr/bin/mxgate ./cmd/mxgate \
 && /out/usr/bin/mxgate version \
 && mkdir -p /out/etc/ssl/certs /out/etc/mxgate /out/data /out/tmp \
 && chmod 1777 /out/tmp \
 && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt \
 && cp LICENSE /out/etc/mxgate/LICENSE

FROM scratch
ARG VERSION=unknown
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="mxgate" \
      org.opencontainers.image.description="A security gateway for open-banking integrations with MX" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/usr /usr
COPY --from=build /out/etc /etc
COPY --from=build /out/tmp /tmp
COPY --from=build --chown=65532:65532 /out/data /data
ENV HOME=/data \
    XDG_DATA_HOME=/data \
    XDG_CONFIG_HOME=/data \
    MXGATE_HEALTH_URL=http://127.0.0.1:2020/ready
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8443
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/bin/mxgate", "healthcheck", "--timeout", "4s"]
ENTRYPOINT ["/usr/bin/mxgate"]
CMD ["run", "--config", "/etc/mxgate/Caddyfile", "--adapter", "caddyfile"]
