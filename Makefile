# walmq: see README.md. Every target runs on a fresh clone; tools are
# fetched at pinned versions through the Go module proxy.
GO              ?= go
STATICCHECK     := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCH_COUNT     ?= 5
BENCH_TIME      ?= 1s
FUZZ_TIME       ?= 30s

.PHONY: all build test check bench fuzz clean

all: check test

build:
	$(GO) build ./...

# The test command: every package, with the race detector. The seed corpus
# of every fuzz target runs here too.
test:
	$(GO) test -race ./...

check:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Benchmarks, several runs each for medians. PKG narrows them, e.g.
# make bench PKG=./journal/ BENCH=AppendSync
PKG             ?= ./...
BENCH           ?= .
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCH_TIME) -count $(BENCH_COUNT) -timeout 60m $(PKG)

# Every fuzz target for FUZZ_TIME each (their seed corpus runs in make test).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZ_TIME) ./journal/
	$(GO) test -run '^$$' -fuzz '^FuzzParseIndex$$' -fuzztime $(FUZZ_TIME) ./journal/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZ_TIME) ./fsm/
	$(GO) test -run '^$$' -fuzz '^FuzzReadStream$$' -fuzztime $(FUZZ_TIME) ./fsm/snapstore/

clean:
	$(GO) clean -testcache
