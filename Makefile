# Stampede. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
STAMPEDE := $(BIN)/stampede

# make bench scenario=NAME [api=fake|local|kind|kubeconfig=PATH] [modes=a,b] [out=DIR]
scenario ?= relabel
api ?= fake
modes ?=
out ?=

GOLANGCI_LINT_VERSION := v2.15.0

.PHONY: help build test bench generate lint tools clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 12

build: ## build bin/stampede
	$(GO) build -o $(STAMPEDE) ./cmd/stampede

test: ## run every test with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 40m ./...

bench: build ## run a scenario in every mode: make bench scenario=relabel [api=..] [modes=..]
	@if ! $(STAMPEDE) help run >/dev/null 2>&1; then \
		echo "make bench: 'stampede run' does not exist yet (the harness is not built); see the README's status section" >&2; exit 1; fi
	$(STAMPEDE) run --scenario $(scenario) --api $(api) $(if $(modes),--modes $(modes)) $(if $(out),--out $(out))

generate: ## regenerate committed generated code (BPF objects, protobuf)
	@command -v protoc >/dev/null || { apt-get update && apt-get install -y protobuf-compiler; } # protobuf (controlplane/xdsapi)
	@command -v clang >/dev/null && test -f /usr/include/bpf/bpf_helpers.h && test -f /usr/include/linux/bpf.h || \
		{ $$([ "$$(id -u)" = 0 ] || echo sudo) apt-get update && $$([ "$$(id -u)" = 0 ] || echo sudo) apt-get install -y clang llvm libbpf-dev linux-libc-dev; } # BPF (bpf/, bpf2go)
	$(GO) generate ./...

lint: ## run golangci-lint (pinned)
	@test -x $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION) || GOBIN=$(CURDIR)/$(BIN)/.lint $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	@test -x $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION) || mv $(BIN)/.lint/golangci-lint $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
	$(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION) run ./...

tools: ## build the tools the tests and the local backend need (kube-apiserver)
	@echo "make tools: nothing to build yet"

clean: ## remove build output
	rm -rf $(BIN)
