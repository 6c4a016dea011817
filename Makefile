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

# Benchmarks beside their raw-disk baselines, several runs for medians.
bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCH_TIME) -count $(BENCH_COUNT) ./journal/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZ_TIME) ./journal/
	$(GO) test -run '^$$' -fuzz '^FuzzParseIndex$$' -fuzztime $(FUZZ_TIME) ./journal/

clean:
	$(GO) clean -testcache
