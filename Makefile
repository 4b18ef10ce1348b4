# mxgate: build, run and test.
#
#   make run    run the gateway on Caddyfile.example (offline, loopback)
#   make test   run every test: vet, unit, fuzz seeds, end to end, race detector
#   make bench  run the benchmarks
#   make fuzz   fuzz every parser of untrusted input for FUZZTIME each

GO       ?= go
BIN      := bin/mxgate
FUZZTIME ?= 20s
# The demo key from MX's MDX On Demand documentation; never use it for real.
DEMO_MDX_HMAC_KEY := QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=

.PHONY: build run test bench fuzz clean

build:
	$(GO) build -o $(BIN) ./cmd/mxgate

run: build
	MDX_HMAC_KEY="$${MDX_HMAC_KEY:-$(DEMO_MDX_HMAC_KEY)}" ./$(BIN) run --config Caddyfile.example --adapter caddyfile

test:
	./scripts/test.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

clean:
	rm -rf bin
