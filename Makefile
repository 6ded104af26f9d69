# Stampede. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
STAMPEDE := $(BIN)/stampede

# make bench scenario=NAME [api=fake|local|kind|kubeconfig=PATH] [modes=a,b] [out=DIR] [shards=N]
scenario ?= relabel
api ?= fake
modes ?=
out ?=
shards ?=

GOLANGCI_LINT_VERSION := v2.15.0

# kube-apiserver for the local backend, built from internal/tools/kube-apiserver (a
# separate Go module) into the user's cache dir; the harness and the tests
# look for it there (or at $$STAMPEDE_KUBE_APISERVER).
KUBE_VERSION := v1.36.3
KUBE_CACHE := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/stampede
KUBE_APISERVER := $(or $(STAMPEDE_KUBE_APISERVER),$(KUBE_CACHE)/kube-apiserver-$(KUBE_VERSION))
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 -X k8s.io/component-base/version.gitTreeState=clean

.PHONY: help build test bench generate lint tools clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

build: ## build bin/stampede
	$(GO) build -o $(STAMPEDE) ./cmd/stampede

test: tools ## run every test with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 40m ./...

bench: build ## run a scenario in every mode: make bench scenario=relabel [api=..] [modes=..]
	$(STAMPEDE) run --scenario $(scenario) --api $(api) $(if $(modes),--modes $(modes)) $(if $(out),--out $(out)) $(if $(shards),--shards $(shards))

generate: ## regenerate committed generated code (BPF objects, protobuf)
	@command -v protoc >/dev/null || { apt-get update && apt-get install -y protobuf-compiler; } # protobuf (internal/xdsapi)
	@command -v clang >/dev/null && test -f /usr/include/bpf/bpf_helpers.h && test -f /usr/include/linux/bpf.h || \
		{ $$([ "$$(id -u)" = 0 ] || echo sudo) apt-get update && $$([ "$$(id -u)" = 0 ] || echo sudo) apt-get install -y clang llvm libbpf-dev linux-libc-dev; } # BPF (bpf/, bpf2go)
	$(GO) generate ./...

lint: ## run golangci-lint (pinned)
	@test -x $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION) || GOBIN=$(CURDIR)/$(BIN)/.lint $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	@test -x $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION) || mv $(BIN)/.lint/golangci-lint $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
	$(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION) run ./...

tools: ## build the tools the tests and the local backend need (kube-apiserver, cached by version)
	@if [ -x "$(KUBE_APISERVER)" ]; then echo "make tools: $(KUBE_APISERVER) is present"; else \
		echo "make tools: building kube-apiserver $(KUBE_VERSION) into $(KUBE_APISERVER) (takes minutes the first time)"; \
		mkdir -p "$(dir $(KUBE_APISERVER))" && \
		(cd internal/tools/kube-apiserver && $(GO) build -trimpath -ldflags "$(KUBE_LDFLAGS)" -o "$(KUBE_APISERVER).tmp" k8s.io/kubernetes/cmd/kube-apiserver) && \
		mv "$(KUBE_APISERVER).tmp" "$(KUBE_APISERVER)" && echo "make tools: built $(KUBE_APISERVER)"; fi

clean: ## remove build output
	rm -rf $(BIN)
