# mxgate: build, run and test.
#
#   make run    run the gateway on Caddyfile.example (offline, loopback)
#   make test   run every test: vet, unit, fuzz seeds, end to end, race detector
#   make bench  run the benchmarks
#   make bench-mdx  the MDX chain beside bare Caddy and an nginx gateway (minutes;
#               installs nginx-light, libnginx-mod-http-js, redis-server if missing)
#   make fuzz   fuzz every parser of untrusted input for FUZZTIME each

GO       ?= go
BIN      := bin/mxgate
FUZZTIME ?= 20s
# Demo credentials from MX's documentation; never use them for real.
DEMO_MDX_HMAC_KEY := QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=
DEMO_MX_CLIENT_ID := CLIENT-1234
DEMO_MX_API_KEY   := API-KEY-4567

.PHONY: build run test bench bench-mdx fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/mxgate

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
	$(GO) run ./bench/mdx

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin
