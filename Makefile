# walmq: see README.md. Every target runs on a fresh clone; tools are
# fetched at pinned versions through the Go module proxy.
GO              ?= go
STATICCHECK     := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Code generators for make proto, pinned; installed into ./bin/proto.
BUF             := github.com/bufbuild/buf/cmd/buf@v1.75.0
PROTOC_GEN_GO   := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.1
PROTOBIN        := $(CURDIR)/bin/proto
BENCH_COUNT     ?= 5
BENCH_TIME      ?= 1s
FUZZ_TIME       ?= 30s

.PHONY: all build run cluster cluster-stop test check bench fuzz proto clean jepsen

all: check test

# The binaries, into ./bin.
build:
	$(GO) build ./...
	$(GO) build -o bin/ ./cmd/...

# A single node on the embedded defaults: data in ./data, gRPC on
# 127.0.0.1:7420, the socket at ./data/walmq.sock. Ctrl-C stops it.
run: build
	./bin/walmq-node

# A three-node cluster in the background: nodes n1, n2, n3 with data and
# logs under $(CLUSTER_DIR), gRPC on 127.0.0.1:7421-7423, Raft on
# 127.0.0.1:7521-7523. make cluster-stop stops them (data is kept).
CLUSTER_DIR   ?= cluster-data
CLUSTER_PEERS := n1=127.0.0.1:7521,n2=127.0.0.1:7522,n3=127.0.0.1:7523
cluster: build
	@mkdir -p $(CLUSTER_DIR)
	@for i in 1 2 3; do \
	  if [ -f $(CLUSTER_DIR)/n$$i.pid ] && kill -0 $$(cat $(CLUSTER_DIR)/n$$i.pid) 2>/dev/null; then \
	    echo "n$$i already running (pid $$(cat $(CLUSTER_DIR)/n$$i.pid))"; continue; fi; \
	  nohup ./bin/walmq-node --node-id n$$i --data $(CLUSTER_DIR)/n$$i --listen 127.0.0.1:742$$i \
	    --raft-addr 127.0.0.1:752$$i --peers $(CLUSTER_PEERS) >>$(CLUSTER_DIR)/n$$i.log 2>&1 & \
	  echo $$! >$(CLUSTER_DIR)/n$$i.pid; echo "started n$$i (pid $$!, log $(CLUSTER_DIR)/n$$i.log)"; \
	done
	@echo "waiting for a leader and for every node to answer..."
	@for t in $$(seq 1 40); do \
	  out=$$(./bin/walmq --server 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 cluster status 2>&1) && \
	  ! echo "$$out" | grep -q -e unreachable -e "leader: *unknown" && break; sleep 0.5; done
	@./bin/walmq --server 127.0.0.1:7421,127.0.0.1:7422,127.0.0.1:7423 cluster status

cluster-stop:
	@for i in 1 2 3; do \
	  if [ -f $(CLUSTER_DIR)/n$$i.pid ]; then kill $$(cat $(CLUSTER_DIR)/n$$i.pid) 2>/dev/null && echo "stopped n$$i"; rm -f $(CLUSTER_DIR)/n$$i.pid; fi; \
	done

# jepsen-lite: three real nodes, every fault package, about two and a half
# minutes; exit status 0 only when the history is valid. JEPSEN_FLAGS adds
# flags, e.g. JEPSEN_FLAGS="--seed 7" or "--node-tags walmq_planted_bug".
JEPSEN_FLAGS ?=
jepsen:
	$(GO) run ./jepsen-lite --duration 120s $(JEPSEN_FLAGS)

# Regenerates the gRPC code in api/ from its .proto files.
proto:
	GOBIN=$(PROTOBIN) $(GO) install $(BUF)
	GOBIN=$(PROTOBIN) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(PROTOBIN) $(GO) install $(PROTOC_GEN_GRPC)
	cd api && PATH=$(PROTOBIN):$$PATH buf generate

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
	rm -rf bin
	$(GO) clean -testcache
