# sower — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
DATA_DIR  ?= ./.sower
GOTESTFLAGS ?=

# Code generators, pinned; installed into ./bin so that `make generate` needs
# nothing but the Go module proxy (the remote buf registry is not used).
BUF_VERSION          := v1.75.0
PROTOC_GEN_GO        := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC   := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
PROTOC_GEN_GATEWAY   := github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.33.0
PROTOC_GEN_OPENAPI   := github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.33.0
GRPCURL              := github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4

# System packages the tests drive for real: ansible-playbook (the Standby
# role's tests) and etcdctl (cross-checks `sower cluster members`); and
# libyaml's headers, which the policy parser's cgo binding builds against.
APT_PACKAGES := ansible-core etcd-client libyaml-dev

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: run
run: build ## start a single-node Leader under ./.sower and print how to call it
	$(BIN)/sower server --data-dir $(DATA_DIR)

.PHONY: build
build: ## build bin/sower and the pod programs
	@[ -f /usr/include/yaml.h ] || { echo "make build: the policy parser links the system libyaml (cgo); install it: apt-get install libyaml-dev" >&2; exit 1; }
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

PREFIX ?= /usr/local

.PHONY: install
install: build ## copy sower and the pod programs to /usr/local/bin (PREFIX=...), or put ./bin on PATH instead
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/sower $(BIN)/sower-seed-fetcher $(BIN)/sower-authn-client $(DESTDIR)$(PREFIX)/bin/

.PHONY: test
test: system-deps tools check-generated build vet unit ## everything CI runs: build, vet, generated-code check, all tests
	@echo "make test: all checks passed"

.PHONY: unit
unit: ## run every Go test with the race detector
	$(GO) test -race -count=1 -timeout 15m $(GOTESTFLAGS) ./...

.PHONY: vet
vet: ## go vet and gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.' ; true)); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: system-deps
system-deps: ## install the Debian packages the tests need (apt, as root)
	@missing=""; \
	  command -v ansible-playbook >/dev/null || missing="$$missing ansible-core"; \
	  command -v etcdctl >/dev/null || missing="$$missing etcd-client"; \
	  [ -f /usr/include/yaml.h ] || missing="$$missing libyaml-dev"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then echo "make test: need$$missing; run as root or install them with apt-get" >&2; exit 1; fi; \
	    echo "installing$$missing"; \
	    apt-get update -qq || { echo "make test: apt-get update failed; cannot install$$missing" >&2; exit 1; }; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || { echo "make test: apt-get install$$missing failed" >&2; exit 1; }; \
	  fi; \
	  command -v ansible-playbook >/dev/null && command -v etcdctl >/dev/null && [ -f /usr/include/yaml.h ] || { echo "make test: ansible-playbook, etcdctl or yaml.h still missing after install" >&2; exit 1; }

.PHONY: tools
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/protoc-gen-grpc-gateway $(BIN)/protoc-gen-openapiv2 $(BIN)/grpcurl ## install the pinned code generators into ./bin

$(BIN)/buf:                     ; GOBIN=$(BIN) GOFLAGS= $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(BIN)/protoc-gen-go:           ; GOBIN=$(BIN) GOFLAGS= $(GO) install $(PROTOC_GEN_GO)
$(BIN)/protoc-gen-go-grpc:      ; GOBIN=$(BIN) GOFLAGS= $(GO) install $(PROTOC_GEN_GO_GRPC)
$(BIN)/protoc-gen-grpc-gateway: ; GOBIN=$(BIN) GOFLAGS= $(GO) install $(PROTOC_GEN_GATEWAY)
$(BIN)/protoc-gen-openapiv2:    ; GOBIN=$(BIN) GOFLAGS= $(GO) install $(PROTOC_GEN_OPENAPI)
$(BIN)/grpcurl:                 ; GOBIN=$(BIN) GOFLAGS= $(GO) install $(GRPCURL)

.PHONY: generate
generate: tools ## lint the API and regenerate Go, gateway and OpenAPI code
	$(BIN)/buf lint
	$(BIN)/buf generate

.PHONY: check-generated
check-generated: generate ## fail when committed generated code differs from what the .proto files produce
	@if ! git diff --quiet -- proto || [ -n "$$(git ls-files --others --exclude-standard proto)" ]; then \
	  echo "generated code in proto/ is stale: run 'make generate' and commit the result" >&2; \
	  git status --short proto >&2; exit 1; fi

.PHONY: clean
clean: ## remove build output and the local data dir
	rm -rf $(BIN) $(DATA_DIR)
