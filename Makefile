# sower — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# smallstep's embedded authority runs without a database here; these tags keep
# the unused badger, MySQL and PostgreSQL drivers out of the binaries (-6.5 MB).
BUILD_TAGS := nobadger,nomysql,nopgx
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
# podman and runc run the images and the Kubernetes pod specs (deploy/);
# see ../shared/CONTAINERS.md for why runc and the containers.conf below.
APT_PACKAGES := ansible-core etcd-client libyaml-dev podman runc

# Images (deploy/images): static binaries, FROM scratch, tagged IMAGE_REPO/<program>:VERSION.
IMAGE_REPO   ?= localhost
IMAGES       := sower sower-seed-fetcher sower-authn-client
STATIC_BIN   := $(BIN)/static
STATIC_FLAGS := -trimpath -tags netgo,osusergo,$(BUILD_TAGS) -ldflags '$(LDFLAGS) -linkmode external -extldflags -static'
CONTAINERS_CONF := /etc/containers/containers.conf

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
	$(GO) build -trimpath -tags $(BUILD_TAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

PREFIX ?= /usr/local

.PHONY: install
install: build ## copy sower and the pod programs to /usr/local/bin (PREFIX=...), or put ./bin on PATH instead
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN)/sower $(BIN)/sower-seed-fetcher $(BIN)/sower-authn-client $(DESTDIR)$(PREFIX)/bin/

.PHONY: static
static: ## build static binaries (libyaml linked in) into bin/static, for the images
	@[ -f /usr/lib/x86_64-linux-gnu/libyaml.a ] || [ -n "$$(find /usr/lib -name libyaml.a -print -quit 2>/dev/null)" ] || { echo "make static: libyaml.a is missing; install it: apt-get install libyaml-dev" >&2; exit 1; }
	@mkdir -p $(STATIC_BIN)
	CGO_ENABLED=1 $(GO) build $(STATIC_FLAGS) -o $(STATIC_BIN)/ ./cmd/...

.PHONY: image
image: static ## build the OCI images (podman, FROM scratch) of the sower programs, tagged $(IMAGE_REPO)/<program>:$(VERSION)
	@command -v podman >/dev/null || { echo "make image: podman is missing; install it: apt-get install podman runc (or run make system-deps as root)" >&2; exit 1; }
	@for b in $(IMAGES); do \
	  podman build --quiet -f deploy/images/Containerfile.$$b \
	    --build-arg BINARY=$$b --build-arg VERSION=$(VERSION) \
	    --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	    --build-arg CREATED=$$(git log -1 --format=%cI 2>/dev/null || echo 1970-01-01T00:00:00Z) \
	    -t $(IMAGE_REPO)/$$b:$(VERSION) $(STATIC_BIN) >/dev/null || { echo "make image: podman build of $$b failed" >&2; exit 1; }; \
	  echo "$(IMAGE_REPO)/$$b:$(VERSION) $$(podman image inspect --format '{{.Size}}' $(IMAGE_REPO)/$$b:$(VERSION)) bytes"; \
	done

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
	  command -v podman >/dev/null || missing="$$missing podman"; \
	  command -v runc >/dev/null || missing="$$missing runc"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then echo "make test: need$$missing; run as root or install them with apt-get" >&2; exit 1; fi; \
	    echo "installing$$missing"; \
	    apt-get update -qq || { echo "make test: apt-get update failed; cannot install$$missing" >&2; exit 1; }; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || { echo "make test: apt-get install$$missing failed" >&2; exit 1; }; \
	  fi; \
	  command -v ansible-playbook >/dev/null && command -v etcdctl >/dev/null && [ -f /usr/include/yaml.h ] && command -v podman >/dev/null && command -v runc >/dev/null || { echo "make test: ansible-playbook, etcdctl, yaml.h, podman or runc still missing after install" >&2; exit 1; }
	@# podman's defaults fail on this kind of machine (crun and the hybrid
	@# cgroup layout; a RLIMIT_NOFILE it may not set): runc, cgroupfs, no
	@# default ulimits. Written only where there is no file: a machine's own
	@# configuration is left alone.
	@if [ ! -e $(CONTAINERS_CONF) ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "make test: $(CONTAINERS_CONF) is missing; run as root or write it as ../shared/CONTAINERS.md says" >&2; exit 1; fi; \
	  mkdir -p $(dir $(CONTAINERS_CONF)) && \
	  printf '# written by sower'"'"'s make system-deps (podman on hybrid cgroups)\n[containers]\ndefault_ulimits = []\n\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' > $(CONTAINERS_CONF) || { echo "make test: cannot write $(CONTAINERS_CONF)" >&2; exit 1; }; \
	  echo "wrote $(CONTAINERS_CONF) (runc, cgroupfs)"; \
	fi

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
