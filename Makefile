# mxgate: build, run and test.
#
#   make run    run the gateway on Caddyfile.example (offline, loopback)
#   make test   run every test: vet, unit, fuzz seeds, end to end, race detector
#   make bench  run the Go benchmarks
#   make bench-mdx  the MDX chain beside bare Caddy and an nginx gateway (minutes;
#               installs nginx-light, libnginx-mod-http-js, redis-server if missing)
#   make bench-mdx-tls  the MDX and FDX sites over TLS beside bare Caddy and nginx,
#               and a fleet of three behind a TCP balancer (minutes; installs
#               libnginx-mod-stream too)
#   make fuzz   fuzz every parser of untrusted input for FUZZTIME each
#   make image-test  build the container image and run it (needs buildah,
#               podman and runc; installs them from Debian's packages)

GO       ?= go
BIN      := bin/mxgate
# mxgate's version and commit, stamped into the binary (`mxgate version`).
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
COMMIT   := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/mxgate/mxgate/internal/version.Version=$(VERSION) \
            -X github.com/mxgate/mxgate/internal/version.Commit=$(COMMIT)
FUZZTIME ?= 20s
# Demo credentials from MX's documentation; never use them for real.
DEMO_MDX_HMAC_KEY := QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=
DEMO_MX_CLIENT_ID := CLIENT-1234
DEMO_MX_API_KEY   := API-KEY-4567

.PHONY: build run test bench bench-mdx bench-mdx-tls fuzz image-test clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/mxgate

run: build
	./$(BIN) fdx-dev --dir .dev/fdx
	MDX_HMAC_KEY="$${MDX_HMAC_KEY:-$(DEMO_MDX_HMAC_KEY)}" \
	MX_CLIENT_ID="$${MX_CLIENT_ID:-$(DEMO_MX_CLIENT_ID)}" \
	MX_API_KEY="$${MX_API_KEY:-$(DEMO_MX_API_KEY)}" \
	./$(BIN) run --config Caddyfile.example --adapter caddyfile

test:
	./scripts/test.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

bench-mdx:
	$(GO) -C bench run ./mdx

bench-mdx-tls:
	$(GO) -C bench run ./mdx -section tls -targets tls,fdx -traffic get -rates 2900 -storm "" \
		-open-slice 500ms -open-slice-total 40s -fleet 3

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

image-test:
	./scripts/image-test.sh

clean:
	rm -rf bin
