# Portcullis. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
GO       ?= go
BIN      := bin
LINT     := $(GO) tool -modfile=tools/go.mod golangci-lint
CONTROLLER_GEN := $(GO) tool controller-gen
FUZZTIME ?= 60s
# A test package's time limit under make test, above go test's default of 10 minutes: the e2e
# package (test/) has run for 11 on a 2-CPU machine under the race detector (5 since).
TEST_TIMEOUT ?= 30m
# The packages that run longest (each starts API servers) first, so that the others run beside
# them rather than before them: go test starts packages in the order given.
SLOW_TEST_PKGS := ./test ./test/load
BENCHTIME ?= 1s
BENCHCOUNT ?= 6
RATES ?= 500,1000,2000
DURATION ?= 10s
TENANT_RATE ?= 0
N ?= 10000
AUDIT_CPU ?=
AUDIT_ROUNDS ?= 1
FORMAT ?= yaml
PODS ?= 1000
POD ?= bench
OPA ?=
CREATES ?= 1000
SOAK ?= 10m
SOAK_RATE ?= 500
ROUNDS ?= 3
LOAD_ROUNDS ?= 1
# What the binaries say of themselves (version, --version, portcullis_build_info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/portcullis-dev/portcullis/pkg/version.Version=$(VERSION) -X github.com/portcullis-dev/portcullis/pkg/version.Commit=$(COMMIT)

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build kubectl-portcullis into bin/
	@echo "== building bin/kubectl-portcullis"
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/kubectl-portcullis ./cmd/kubectl-portcullis

.PHONY: demo
demo: envtest-bins build ## Run a local control plane with the webhook, apply the examples, tear down
	@echo "== compiling the demo"
	$(GO) build -o $(BIN)/demo ./test/demo
	$(BIN)/demo -root .

.PHONY: demo-offline
demo-offline: build ## Check the example workloads with the CLI only (no cluster)
	@$(BIN)/kubectl-portcullis check -f examples/workloads --policies manifests/library --policies examples/policies; \
	  code=$$?; echo "== exit status $$code (0: nothing denied, 1: a Deny rule failed, 2: bad input)"; \
	  [ $$code -le 1 ]

.PHONY: envtest-bins
envtest-bins: ## Build kube-apiserver, etcd and kubectl for envtest into bin/k8s (cached)
	./hack/envtest-bins.sh

.PHONY: test
test: envtest-bins build helm-bin opa-bin ## Run every test: unit, golden, fixtures, e2e against a real API server, the library's suites
	@echo "== compiling every test binary with the race detector (minutes on a cold cache; a line per package)"
	$(GO) test -race -count=1 -run '^$$' -exec /bin/true ./...
	@echo "== running every test, with the race detector (the e2e tests start kube-apiserver and etcd)"
	KUBEBUILDER_ASSETS=$(CURDIR)/bin/k8s $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(SLOW_TEST_PKGS) ./...
	@echo "== every benchmark once (-benchtime 1x), so a broken one fails the build"
	$(GO) test -run '^$$' -bench . -benchtime 1x ./pkg/... ./internal/...
	@echo "== the policy library's test suites"
	$(BIN)/kubectl-portcullis test manifests/library
	$(MAKE) --no-print-directory test-monitoring
	$(MAKE) --no-print-directory test-chart

.PHONY: chart
chart: ## Write charts/portcullis from the kustomize install (its one source of truth)
	$(GO) run ./hack/chart .

.PHONY: helm-bin
helm-bin: ## Build helm v4 into bin/ from the module proxy (tools/helm), for the chart's tests
	@echo "== building bin/helm (tools/helm; minutes on a cold cache)"
	$(GO) build -modfile=tools/helm/go.mod -o $(BIN)/helm helm.sh/helm/v4/cmd/helm

.PHONY: test-chart
test-chart: helm-bin ## Lint the Helm chart with helm and check it renders what kustomize builds
	$(GO) run ./hack/chart -verify $(BIN)/helm .

.PHONY: test-monitoring
test-monitoring: ## Check and unit-test the monitoring kit's alerting rules with promtool
	$(GO) run ./hack/monitoring

.PHONY: image
image: ## Build the server image (docker), with the version and commit
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t portcullis-webhook:$(VERSION) .

.PHONY: image-digests
image-digests: ## Print the current digests of the Dockerfile's base images, to bump their pins
	@for ref in golang:1.26 gcr.io/distroless/static-debian12:nonroot; do \
	  echo "$$ref@$$($(GO) run github.com/google/go-containerregistry/cmd/crane digest $$ref)"; done

.PHONY: docs
docs: ## Write the README's policy library table from the policies' annotations
	$(GO) run ./hack/librarydocs .

.PHONY: generate
generate: ## Regenerate deepcopy and CRDs (controller-gen, pinned in go.mod)
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./pkg/apis/... \
	  crd:crdVersions=v1 output:crd:artifacts:config=manifests/crds
	@# The OpenReports CRDs the audit writes, as the module in go.mod ships them.
	@# `go list -m` names no directory for a module not yet in the module cache: download it first.
	$(GO) mod download github.com/openreports/reports-api
	install -m 0644 $$($(GO) list -m -f '{{.Dir}}' github.com/openreports/reports-api)/config/crd/openreports.io_*.yaml manifests/crds/

.PHONY: verify-generated
verify-generated: generate ## Fail when generated files are stale
	@git diff --exit-code -- pkg/apis manifests/crds || \
	  { echo "generated files are stale: run 'make generate' and commit the result"; exit 1; }
	@test -z "$$(git status --porcelain -- pkg/apis manifests/crds)" || \
	  { git status --porcelain -- pkg/apis manifests/crds; echo "untracked generated files: run 'make generate' and commit"; exit 1; }

.PHONY: golden
golden: ## Regenerate the CLI's golden files
	$(GO) test ./cmd/kubectl-portcullis/... ./pkg/policytest -run Golden -update

.PHONY: lint
lint: ## Run golangci-lint (v2, pinned in tools/go.mod)
	$(LINT) run ./...

.PHONY: bench
bench: ## Run the engine benchmarks (BENCHCOUNT runs each) into bin/bench-<commit>.txt, benchstat's input
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) ./pkg/... ./internal/... | tee $(BIN)/bench-$(VERSION).txt
	@echo "== wrote $(BIN)/bench-$(VERSION).txt; compare two with: go run golang.org/x/perf/cmd/benchstat@latest OLD NEW"

.PHONY: bench-apiserver
bench-apiserver: envtest-bins ## Create the benchmark Pod CREATES times (dry run) through a real API server without and with the webhook, ROUNDS rounds: the p50/p99 it adds
	$(GO) run ./test/load -root . -apiserver-creates $(CREATES) -rounds $(ROUNDS)

.PHONY: bench-soak
bench-soak: envtest-bins ## The server with 100 ClusterPolicies (copies of the library's; SOAK_DISTINCT=1: none sharing a CEL program) under SOAK_RATE reviews/s for SOAK (default 500/s, 10m): RSS every 10 s, one table (SERVER_FLAGS: more flags for the server)
	$(GO) run ./test/load -root . -soak $(SOAK) -rates $(SOAK_RATE) $(if $(SOAK_DISTINCT),-soak-distinct) $(if $(SERVER_FLAGS),-server-flags "$(SERVER_FLAGS)")

.PHONY: bench-load
bench-load: envtest-bins ## Load the webhook over HTTPS at fixed rates; p50/p99, CPU per review, RSS, vs a no-op floor (TENANT_RATE: beside a costly tenant; LOAD_ROUNDS: alternate the phases that many times, medians of the ratios; SERVER_GOGC, SERVER_GOMAXPROCS: the server's, not the floor's; SERVER_CPU_LIMIT: the server in a cgroup with that CPU quota, as root; SERVER_CPUS: the CPUs it may run on; SERVER_FLAGS: more flags for the server, e.g. --gc-cycle-interval=1s)
	$(GO) run ./test/load -root . -rates $(RATES) -duration $(DURATION) -tenant-rate $(TENANT_RATE) -load-rounds $(LOAD_ROUNDS) $(if $(SERVER_GOGC),-server-gogc $(SERVER_GOGC)) $(if $(SERVER_GOMAXPROCS),-server-gomaxprocs $(SERVER_GOMAXPROCS)) $(if $(SERVER_CPU_LIMIT),-server-cpu-limit $(SERVER_CPU_LIMIT)) $(if $(SERVER_CPUS),-server-cpus $(SERVER_CPUS)) $(if $(SERVER_FLAGS),-server-flags "$(SERVER_FLAGS)")

.PHONY: bench-audit
bench-audit: envtest-bins ## Audit N Pods (default 10000) in a real API server: scan objects/s, peak RSS, report bytes, admission p99 during scans vs idle and vs the API server listing alone, at the first of RATES (PIN=1: the control plane on CPU 0, the server and load on CPU 1; AUDIT_GOGC: the server's --audit-gogc; SERVER_GOGC, SERVER_GOMAXPROCS: the server's GOGC and GOMAXPROCS; AUDIT_ROUNDS: alternate the phases that many times, medians of the ratios)
	$(GO) run ./test/load -root . -audit-objects $(N) -audit-cpu "$(AUDIT_CPU)" -audit-rounds $(AUDIT_ROUNDS) -rates $(RATES) -duration $(DURATION) $(if $(PIN),-pin) $(if $(AUDIT_GOGC),-audit-gogc $(AUDIT_GOGC)) $(if $(SERVER_GOGC),-server-gogc $(SERVER_GOGC)) $(if $(SERVER_GOMAXPROCS),-server-gomaxprocs $(SERVER_GOMAXPROCS))

.PHONY: bench-cli
bench-cli: build $(if $(OPA),opa-bin) ## Time check on PODS generated Pods (default 1000 of ~7 KB; FORMAT=yaml|json; POD=small: ~260 bytes): medians of wall, CPU, peak RSS; OPA=1: OPA too, on the same JSON List, verdicts compared
	$(GO) run ./test/benchcli -root . -n $(PODS) -pod $(POD) $(if $(OPA),-format json -opa $(BIN)/opa,-format $(FORMAT))

.PHONY: opa-bin
opa-bin: ## Build opa into bin/ from the module proxy (tools/opa), for make bench-cli OPA=1
	@echo "== building bin/opa (tools/opa; minutes on a cold cache)"
	$(GO) build -modfile=tools/opa/go.mod -o $(BIN)/opa github.com/open-policy-agent/opa

.PHONY: fuzz
fuzz: ## Fuzz manifest reading (and its one-pass YAML and JSON readers, and JSON validation), evaluation, policy compilation, JSON bounds, presized and strict decoding, direct CEL evaluation, LIST pages and the review handler for FUZZTIME each
	$(GO) test ./pkg/manifest -run '^$$' -fuzz 'FuzzRead$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/manifest -run '^$$' -fuzz FuzzReadHead -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/manifest -run '^$$' -fuzz FuzzBlockYAMLToJSON -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./internal/jsonscan -run '^$$' -fuzz FuzzMembers -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./internal/jsonscan -run '^$$' -fuzz FuzzValid -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/policies -run '^$$' -fuzz FuzzDecodeEvaluate -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/policies -run '^$$' -fuzz FuzzCompile -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/policies -run '^$$' -fuzz FuzzScanBounds -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/policies -run '^$$' -fuzz FuzzPresizedDecodeAgrees -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/policies -run '^$$' -fuzz FuzzStrictDecodersAgree -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/policies -run '^$$' -fuzz FuzzDirectAgrees -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/audit -run '^$$' -fuzz FuzzSplitPage -fuzztime $(FUZZTIME) -fuzzminimizetime 1s
	$(GO) test ./pkg/server -run '^$$' -fuzz FuzzReviewHandler -fuzztime $(FUZZTIME) -fuzzminimizetime 1s

.PHONY: clean
clean: ## Remove build output
	rm -rf $(BIN)
