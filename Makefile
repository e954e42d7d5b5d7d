# Every target installs what it needs into .venv first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Linters and scanners for manifests and the Dockerfile live apart: checkov pins its own dependencies.
TOOLS  := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
IMAGE  ?= apiserver-tls-guard:0.1.0
HOST   ?= 127.0.0.1
PORT   ?= 8443
MODE   ?= enforce
PY_SRC := webhook tests release $(wildcard benchmarks)

.PHONY: run test lint unit e2e kube cluster install lock clean bench fuzz soak image mutation pin flag-types node

# Installed from the hash-locked files in requirements/ (docs/image.md): every package at its locked version, every
# file checked against its hash, nothing resolved at install time; the image installs the same runtime lock.
# The project itself is installed without its dependencies (they came from the lock), built by the locked backend.
LOCK_DIR := requirements
PIP_LOCKED := -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps
$(STAMP): pyproject.toml $(LOCK_DIR)/dev.txt $(LOCK_DIR)/build.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python $(PIP_LOCKED) -r $(LOCK_DIR)/build.txt -r $(LOCK_DIR)/dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

$(TOOLS_STAMP): $(LOCK_DIR)/tools.txt
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python $(PIP_LOCKED) -r $(LOCK_DIR)/tools.txt
	touch $@

# Rewrites the locks from pyproject.toml and requirements/*.in with uv (from the tools lock), keeping every pin that
# still fits; `make lock UPGRADE=1` moves everything to the newest versions that fit. dev.txt (runtime and dev
# extras together) is resolved first and runtime.txt within it, so the image's runtime versions are exactly the
# ones the test environment has (tests/commands/test_locks.py checks both). One target Python for all: 3.11, the
# Dockerfile's and Debian 12's; --universal keeps the markers for every platform (the release builds arm64 too).
UV_COMPILE = $(TOOLS)/bin/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	$(if $(UPGRADE),--upgrade)
lock: $(TOOLS_STAMP)
	$(UV_COMPILE) pyproject.toml --extra dev -o $(LOCK_DIR)/dev.txt
	$(UV_COMPILE) pyproject.toml -c $(LOCK_DIR)/dev.txt -o $(LOCK_DIR)/runtime.txt
	$(UV_COMPILE) $(LOCK_DIR)/build.in -o $(LOCK_DIR)/build.txt
	$(UV_COMPILE) $(LOCK_DIR)/tools.in -o $(LOCK_DIR)/tools.txt

install: $(STAMP) $(TOOLS_STAMP)

run: $(STAMP)
	$(BIN)/apiserver-tls-guard serve --host $(HOST) --port $(PORT) --certs-dir certs --mode $(MODE)

lint: $(STAMP)
	$(BIN)/ruff check $(PY_SRC)
	$(BIN)/ruff format --check $(PY_SRC)
	$(BIN)/mypy

unit: $(STAMP) $(TOOLS_STAMP)
	TOOLS_BIN=$(abspath $(TOOLS))/bin $(BIN)/pytest -q -n 2 --ignore=tests/e2e

# The real control plane, built from Go modules (tests/e2e/kube/README.md). Each binary is rebuilt only when its
# module's go.mod or go.sum changes; warm Go caches make a rebuild take seconds.
KUBE_BIN  := .kube-bin
K8S_MOD   := tests/e2e/kube/k8s
ETCD_MOD  := tests/e2e/kube/etcd
KUBE_VERSION := $(shell sed -n 's|^require k8s.io/kubernetes ||p' $(K8S_MOD)/go.mod)
ETCD_VERSION := $(shell sed -n 's|^require go.etcd.io/etcd/server/v3 ||p' $(ETCD_MOD)/go.mod)
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION)))
GOBUILD := CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -p 2 -trimpath

# kubeadm is the oracle of the bootstrap-configuration tests (tests/e2e/test_bootstrap_kubeadm_e2e.py).
KUBE_CMDS := kube-apiserver kube-controller-manager kubeadm
$(addprefix $(KUBE_BIN)/,$(KUBE_CMDS)) &: $(K8S_MOD)/go.mod $(K8S_MOD)/go.sum
	@mkdir -p $(KUBE_BIN)
	@echo "building $(KUBE_CMDS) $(KUBE_VERSION) (cold: about 10 min on 2 cores)"
	@start=$$(date +%s); cd $(K8S_MOD) && $(GOBUILD) -ldflags "$(KUBE_LDFLAGS)" -o $(abspath $(KUBE_BIN))/ \
		$(addprefix k8s.io/kubernetes/cmd/,$(KUBE_CMDS)) \
		&& echo "built $(KUBE_CMDS) in $$(( $$(date +%s) - start )) s"
	@touch $(addprefix $(KUBE_BIN)/,$(KUBE_CMDS))

$(KUBE_BIN)/etcd: $(ETCD_MOD)/go.mod $(ETCD_MOD)/go.sum
	@mkdir -p $(KUBE_BIN)
	@echo "building etcd $(ETCD_VERSION)"
	@start=$$(date +%s); cd $(ETCD_MOD) && $(GOBUILD) -ldflags "-s -w" -o $(abspath $(KUBE_BIN))/etcd \
		go.etcd.io/etcd/server/v3 && echo "built etcd in $$(( $$(date +%s) - start )) s"
	@touch $@

# CustomResourceDefinitions the end-to-end suite installs, from the Go modules that ship them (never committed):
# the Policy Report APIs (wgpolicyk8s.io from Kyverno's module, openreports.io from its own), cert-manager's, and
# the Prometheus Operator's PrometheusRule.
CRDS_DIR   := $(KUBE_BIN)/crds
CRDS_STAMP := $(CRDS_DIR)/.fetched
CRD_MODULES := github.com/kyverno/kyverno@v1.19.1:config/crds/policyreport/*.yaml \
	github.com/openreports/reports-api@v0.2.1:config/crd/*.yaml \
	github.com/cert-manager/cert-manager@v1.21.2:deploy/crds/cert-manager.io_*.yaml \
	github.com/prometheus-operator/prometheus-operator@v0.85.0:example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
$(CRDS_STAMP): Makefile
	@mkdir -p $(CRDS_DIR)
	@for spec in $(CRD_MODULES); do \
		module=$${spec%%:*}; files=$${spec#*:}; \
		dir=$$(cd $(K8S_MOD) && GOFLAGS=-mod=mod go mod download -json $$module | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
		test -n "$$dir" || { echo "cannot download $$module" >&2; exit 1; }; \
		cp $$dir/$$files $(CRDS_DIR)/ && chmod u+w $(CRDS_DIR)/*.yaml; \
	done
	@touch $@

# helm and actionlint (one module), and `promrules`, a small program on Prometheus' own rule parser (what
# `promtool check rules` runs): the chart, release workflow and alert rules are checked with the real tools.
HELM_MOD  := tests/e2e/kube/helm
PROM_MOD  := tests/e2e/kube/promrules
$(KUBE_BIN)/helm $(KUBE_BIN)/actionlint &: $(HELM_MOD)/go.mod $(HELM_MOD)/go.sum
	@mkdir -p $(KUBE_BIN)
	@start=$$(date +%s); cd $(HELM_MOD) && $(GOBUILD) -ldflags "-s -w" -o $(abspath $(KUBE_BIN))/ \
		helm.sh/helm/v3/cmd/helm github.com/rhysd/actionlint/cmd/actionlint \
		&& echo "built helm and actionlint in $$(( $$(date +%s) - start )) s"
	@touch $(KUBE_BIN)/helm $(KUBE_BIN)/actionlint
$(KUBE_BIN)/promrules: $(PROM_MOD)/go.mod $(PROM_MOD)/go.sum $(PROM_MOD)/main.go
	@mkdir -p $(KUBE_BIN)
	@cd $(PROM_MOD) && $(GOBUILD) -ldflags "-s -w" -o $(abspath $@) . && echo "built promrules"

# The node of tests/e2e/node: kubelet, kube-proxy and kube-scheduler from the Kubernetes module (about 1 min more
# after the three above), containerd and runc from their own pinned modules, a FROM-scratch sandbox program.
NODE_CMDS := kubelet kube-proxy kube-scheduler
CTRD_MOD  := tests/e2e/kube/containerd
RUNC_MOD  := tests/e2e/kube/runc
PAUSE_MOD := tests/e2e/kube/pause
CTRD_VERSION := $(shell sed -n 's|^require github.com/containerd/containerd/v2 ||p' $(CTRD_MOD)/go.mod)
RUNC_VERSION := $(shell sed -n 's|^require github.com/opencontainers/runc ||p' $(RUNC_MOD)/go.mod)
CTRD_CMDS := containerd containerd-shim-runc-v2 ctr
$(addprefix $(KUBE_BIN)/,$(NODE_CMDS)) &: $(K8S_MOD)/go.mod $(K8S_MOD)/go.sum
	@mkdir -p $(KUBE_BIN)
	@start=$$(date +%s); cd $(K8S_MOD) && $(GOBUILD) -ldflags "$(KUBE_LDFLAGS)" -o $(abspath $(KUBE_BIN))/ \
		$(addprefix k8s.io/kubernetes/cmd/,$(NODE_CMDS)) \
		&& echo "built $(NODE_CMDS) in $$(( $$(date +%s) - start )) s"
	@touch $(addprefix $(KUBE_BIN)/,$(NODE_CMDS))
# The tags leave out the snapshotters that need cgo libraries (btrfs, devmapper, zfs); overlayfs stays.
$(addprefix $(KUBE_BIN)/,$(CTRD_CMDS)) &: $(CTRD_MOD)/go.mod $(CTRD_MOD)/go.sum
	@mkdir -p $(KUBE_BIN)
	@start=$$(date +%s); cd $(CTRD_MOD) && $(GOBUILD) -tags "no_btrfs no_devmapper no_zfs" \
		-ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$(CTRD_VERSION)" \
		-o $(abspath $(KUBE_BIN))/ $(addprefix github.com/containerd/containerd/v2/cmd/,$(CTRD_CMDS)) \
		&& echo "built containerd $(CTRD_VERSION) in $$(( $$(date +%s) - start )) s"
	@touch $(addprefix $(KUBE_BIN)/,$(CTRD_CMDS))
# runc's seccomp filter is cgo on libseccomp (Debian's libseccomp-dev, installed when missing).
$(KUBE_BIN)/runc: $(RUNC_MOD)/go.mod $(RUNC_MOD)/go.sum
	@mkdir -p $(KUBE_BIN)
	@test -e /usr/include/seccomp.h || $(PYTHON) -m tests.e2e.node.host /usr/include/seccomp.h
	@start=$$(date +%s); cd $(RUNC_MOD) && CGO_ENABLED=1 GOFLAGS=-buildvcs=false go build -p 2 -trimpath \
		-tags seccomp -ldflags "-s -w -X main.version=$(patsubst v%,%,$(RUNC_VERSION))" -o $(abspath $@) \
		github.com/opencontainers/runc && echo "built runc $(RUNC_VERSION) in $$(( $$(date +%s) - start )) s"
	@touch $@
$(KUBE_BIN)/pause: $(PAUSE_MOD)/go.mod $(PAUSE_MOD)/go.sum $(PAUSE_MOD)/main.go
	@mkdir -p $(KUBE_BIN)
	@cd $(PAUSE_MOD) && $(GOBUILD) -ldflags "-s -w" -o $(abspath $@) . && echo "built pause"
NODE_BINS := $(addprefix $(KUBE_BIN)/,$(NODE_CMDS) $(CTRD_CMDS) runc pause)

kube: $(addprefix $(KUBE_BIN)/,$(KUBE_CMDS)) $(KUBE_BIN)/etcd $(CRDS_STAMP) \
	$(KUBE_BIN)/helm $(KUBE_BIN)/actionlint $(KUBE_BIN)/promrules $(NODE_BINS)

# Without go the suite skips, saying so; .ci/run sets REQUIRE_E2E=1 so that CI fails instead.
# The node suite needs the image too; where it cannot be built (not root, not Debian) the suite says why.
e2e: $(STAMP)
	@if command -v go >/dev/null; then $(MAKE) --no-print-directory kube; fi
	@$(PYTHON) -m tests.e2e.node.host || echo "the node suite will fail or skip, saying why"
	@$(MAKE) --no-print-directory image || echo "make image failed: the node suite will fail or skip, saying why"
	KUBE_BIN=$(abspath $(KUBE_BIN)) $(BIN)/pytest -q tests/e2e

# A control plane to try things by hand: prints a kubeconfig path, stops on Ctrl-C.
cluster: $(STAMP) kube
	KUBE_BIN=$(abspath $(KUBE_BIN)) $(BIN)/python -m tests.e2e.cluster

# One real node to try things by hand (tests/e2e/node): prints a kubeconfig for the host, stops on Ctrl-C.
node: $(STAMP) kube image
	KUBE_BIN=$(abspath $(KUBE_BIN)) $(BIN)/python -m tests.e2e.node.run

test: lint unit e2e

# kube-apiserver's boolean and list flags, read from the built binary's --help into a committed file
# (tests/e2e/test_flag_types_e2e.py fails when they drift apart).
flag-types: $(STAMP) $(KUBE_BIN)/kube-apiserver
	$(BIN)/python -m webhook.cmdline.pflag_help $(KUBE_BIN)/kube-apiserver

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

# Generated bodies (tests/admission/test_fuzz.py) and requests made from the OpenAPI document by schemathesis
# (tests/admission/test_openapi.py), both against the real HTTPS server.
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} SCHEMA_EXAMPLES=$${SCHEMA_EXAMPLES:-1000} \
		$(BIN)/pytest -q -s tests/admission/test_fuzz.py tests/admission/test_openapi.py

soak: $(STAMP)
	$(BIN)/python -m benchmarks.soak --seconds $${SOAK_SECONDS:-60} --rate 200

# Pins VERSION (e.g. make pin VERSION=0.2.0) in every place a user pins one: package, image tag, chart, hooks;
# IMAGE_REPOSITORY (e.g. ghcr.io/acme/apiserver-tls-guard) moves the image's registry path everywhere too.
pin: $(STAMP)
	$(BIN)/python -m release.pin $(VERSION) $(if $(IMAGE_REPOSITORY),--image $(IMAGE_REPOSITORY))

# The image built here without any registry (tests/e2e/node/image.py): a Debian base made by mmdebstrap, the
# Dockerfile as users build it, buildah without a daemon; an OCI archive containerd imports. Users: README, "Image".
IMAGE_ARCHIVE := .image/apiserver-tls-guard.oci.tar
$(IMAGE_ARCHIVE): Dockerfile $(LOCK_DIR)/build.txt $(LOCK_DIR)/runtime.txt pyproject.toml README.md $(shell find webhook -name '*.py' -o -name '*.yaml' -o -name '*.json')
	$(PYTHON) -m tests.e2e.node.image --tag $(IMAGE) --out $@
image: $(IMAGE_ARCHIVE)

clean:
	rm -rf $(VENV) $(TOOLS) $(KUBE_BIN) .image .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Small bugs put into the core modules one at a time; the tests must catch 90 % (tests/mutation/mutate.py).
mutation: $(STAMP)
	$(BIN)/python -m tests.mutation.mutate

# --- Peers: Kyverno and Gatekeeper beside the product on the same kube-apiserver (benchmarks/PEERS.md) ---
# `make peers` builds niced with one package at a time, so that a cold build (Kyverno ~96 MB of Go source in 2,714
# packages, Gatekeeper ~60 MB in 1,388; 1.6x the source of kube-apiserver + kube-controller-manager + kubeadm)
# does not starve the tests that share the machine. `make bench-peers` is a benchmark, run on a machine given to
# it: it builds at full speed (PEERS_NICE=0, PEERS_JOBS=2). Either can be overridden. Each peer is rebuilt only
# when its wrapper module's go.mod or go.sum changes; PEERS_BIN=<dir> uses peers built there and builds none.
KYVERNO_MOD    := tests/e2e/kube/kyverno
GATEKEEPER_MOD := tests/e2e/kube/gatekeeper
PEERS_NICE     ?= 19
PEERS_JOBS     ?= 1
PEERS_GOBUILD   = CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n $(PEERS_NICE) go build -p $(PEERS_JOBS) -trimpath \
	-ldflags "-s -w"
PEERS_CRDS     := $(KUBE_BIN)/peers-crds
PEERS_CRDS_STAMP := $(PEERS_CRDS)/.fetched

.PHONY: peers bench-peers

$(KUBE_BIN)/kyverno: $(KYVERNO_MOD)/go.mod $(KYVERNO_MOD)/go.sum
	@mkdir -p $(KUBE_BIN)
	@echo "building kyverno (cold: many minutes; nice $(PEERS_NICE), -p $(PEERS_JOBS))"
	@start=$$(date +%s); cd $(KYVERNO_MOD) && $(PEERS_GOBUILD) -o $(abspath $@) github.com/kyverno/kyverno/cmd/kyverno \
		&& echo "built kyverno in $$(( $$(date +%s) - start )) s"
	@touch $@

$(KUBE_BIN)/gatekeeper: $(GATEKEEPER_MOD)/go.mod $(GATEKEEPER_MOD)/go.sum
	@mkdir -p $(KUBE_BIN)
	@echo "building gatekeeper (cold: many minutes; nice $(PEERS_NICE), -p $(PEERS_JOBS))"
	@start=$$(date +%s); cd $(GATEKEEPER_MOD) && $(PEERS_GOBUILD) -o $(abspath $@) github.com/open-policy-agent/gatekeeper/v3 \
		&& echo "built gatekeeper in $$(( $$(date +%s) - start )) s"
	@touch $@

# The peers' own CRDs, from the module versions the wrapper modules pin (never committed).
$(PEERS_CRDS_STAMP): $(KYVERNO_MOD)/go.mod $(GATEKEEPER_MOD)/go.mod
	@mkdir -p $(PEERS_CRDS)/kyverno $(PEERS_CRDS)/gatekeeper
	@kdir=$$(cd $(KYVERNO_MOD) && go list -m -f '{{.Dir}}' github.com/kyverno/kyverno) && \
		gdir=$$(cd $(GATEKEEPER_MOD) && go list -m -f '{{.Dir}}' github.com/open-policy-agent/gatekeeper/v3) && \
		test -n "$$kdir" && test -n "$$gdir" && \
		find $$kdir/config/crds -name '*.yaml' -exec cp {} $(PEERS_CRDS)/kyverno/ \; && \
		cp $$gdir/manifest_staging/charts/gatekeeper/crds/*.yaml $(PEERS_CRDS)/gatekeeper/ && \
		chmod -R u+w $(PEERS_CRDS)
	@touch $@

peers: $(KUBE_BIN)/kyverno $(KUBE_BIN)/gatekeeper $(PEERS_CRDS_STAMP)

# matplotlib draws benchmarks/results/peers.png; only this benchmark needs it.
PEERS_PLOT_STAMP := $(VENV)/.matplotlib
$(PEERS_PLOT_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.8'
	touch $@

# Builds what it needs, then the right-answer tables and (unless PEERS_COST=0) the pod-create cost loop.
# The control plane it needs is etcd, kube-apiserver and kube-controller-manager only, not all of `make kube`
# (the node's containerd, runc, kubelet, helm...): on a fresh clone that is the difference of minutes.
bench-peers: PEERS_NICE = 0
bench-peers: PEERS_JOBS = 2
bench-peers: $(STAMP) $(PEERS_PLOT_STAMP) $(if $(PEERS_BIN),,peers)
	@if [ ! -x $(KUBE_BIN)/kube-apiserver ] || [ ! -x $(KUBE_BIN)/etcd ]; then \
		$(MAKE) --no-print-directory $(KUBE_BIN)/kube-apiserver $(KUBE_BIN)/etcd; fi
	@start=$$(date +%s); KUBE_BIN=$(abspath $(KUBE_BIN)) PEERS_BIN=$(abspath $(or $(PEERS_BIN),$(KUBE_BIN))) \
		$(BIN)/python -m benchmarks.peers.run && echo "bench-peers ran in $$(( $$(date +%s) - start )) s"
