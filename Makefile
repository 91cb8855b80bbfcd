# Two commands for users: `make deploy` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)

# make deploy [CONTEXT=docker-desktop] [INVENTORY=inventory/hosts.yml] [ARGS='--tags chatbot'] [PROFILE=1] [MITOGEN=1]
CONTEXT ?=
PROFILE ?=
MITOGEN ?=
INVENTORY ?=
ARGS ?=

# Simulated test cluster (tools/testcluster) used by `make test`.
TESTCLUSTER := PYTHONPATH=$(abspath tools) $(BIN)/python -m testcluster
TESTCLUSTER_KUBECONFIG := $(abspath .testcluster/kubeconfig)
TESTCLUSTER_CONTEXT := kwok-desktop-sim
# Real kind cluster (tools/kindcluster) used by `make test` and by `make deploy` when
# there is no kube context at all.
KINDCLUSTER := PYTHONPATH=$(abspath tools) $(BIN)/python -m kindcluster
# KEEP_CLUSTER=1 leaves the test clusters running after `make test`.
KEEP_CLUSTER ?=

.PHONY: help venv deploy diagnose test bench lint unit molecule-kind molecule-sim integration kind-integration test-kind test-sim \
	cluster-up cluster-down cluster-build kind-up kind-down kind-build clean

help:
	@echo "make deploy   - deploy the stack with site.yml to the current kube context (CONTEXT=..., INVENTORY=..., ARGS=..., PROFILE=1 for task times, MITOGEN=1 for Mitogen's faster strategy)"
	@echo "make diagnose - read-only diagnosis of the deployed stack, exit 0 only with no findings (CONTEXT=..., INVENTORY=..., ARGS='-e diagnose_format=json')"
	@echo "make test     - lint, unit tests, then molecule scenarios and integration tests on a simulated cluster"
	@echo "make bench    - time no-op, first and --tags runs against kubectl apply, on the simulated cluster (not part of make test)"
	@echo "make kind-up / kind-down       - start / stop the local kind cluster (real containers, built offline)"
	@echo "make cluster-up / cluster-down - start / stop the simulated cluster (KWOK + real control plane)"

$(BIN)/.installed: requirements.txt requirements.yml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/ansible-galaxy collection install -r requirements.yml
	touch $@

venv: $(BIN)/.installed

# With no kubeconfig or no context at all, deploys to the local kind cluster (made on first use).
deploy: venv
	@$(BIN)/python tools/deploy.py $(if $(INVENTORY),--inventory $(INVENTORY)) \
	  $(if $(CONTEXT),--context $(CONTEXT)) $(if $(PROFILE),--profile) $(if $(MITOGEN),--mitogen) -- $(ARGS)

# make diagnose [CONTEXT=docker-desktop] [INVENTORY=inventory/hosts.yml] [ARGS='-e diagnose_format=json -e diagnose_bundle=/tmp']
# Read-only: changes nothing on the cluster; exit 0 with no findings, non-zero with findings.
diagnose: venv
	$(BIN)/ansible-playbook playbooks/diagnose.yml $(if $(INVENTORY),-i $(INVENTORY)) \
	  $(if $(CONTEXT),-e ai_stack_context=$(CONTEXT)) $(ARGS)

lint: venv
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ansible-playbook site.yml --syntax-check

unit: venv
	$(BIN)/python -m pytest -q tests --ignore=tests/integration
	cd tests/standins && CGO_ENABLED=0 go vet ./... && CGO_ENABLED=0 go test -count=1 ./...

cluster-build: venv
	$(TESTCLUSTER) build

cluster-up: venv
	$(TESTCLUSTER) up

cluster-down: venv
	$(TESTCLUSTER) down

kind-build: venv
	$(KINDCLUSTER) build

kind-up: venv
	$(KINDCLUSTER) up

kind-down: venv
	$(KINDCLUSTER) down

# Molecule scenarios on real containers (kind) and on the simulated cluster (sim).
molecule-kind: venv
	MOLECULE_CLUSTER=kind $(BIN)/molecule test -s default

molecule-sim: venv
	MOLECULE_CLUSTER=sim $(BIN)/molecule test -s ecosystem

integration: venv
	K8S_AUTH_KUBECONFIG=$(TESTCLUSTER_KUBECONFIG) K8S_AUTH_CONTEXT=$(TESTCLUSTER_CONTEXT) \
	  $(BIN)/python -m pytest -q tests/integration --ignore=tests/integration/kind

# Integration tests that need real containers, volumes and nodes (the kind cluster must be up).
kind-integration: venv
	K8S_AUTH_KUBECONFIG=$(abspath .kindcluster/kubeconfig) K8S_AUTH_CONTEXT=kind-desktop \
	  $(BIN)/python -m pytest -q tests/integration/kind

# Each starts its cluster unless it is up, and stops it afterwards unless KEEP_CLUSTER=1
# or it was already running. kind-down fails if anything of the cluster is left behind.
test-kind: venv
	@started=0; \
	if ! $(KINDCLUSTER) status >/dev/null 2>&1; then $(KINDCLUSTER) up || exit 1; started=1; fi; \
	rc=0; $(MAKE) molecule-kind kind-integration || rc=$$?; \
	if [ $$started = 1 ] && [ -z "$(KEEP_CLUSTER)" ]; then $(KINDCLUSTER) down || rc=1; fi; \
	exit $$rc

test-sim: venv
	@started=0; \
	if ! $(TESTCLUSTER) status >/dev/null 2>&1; then $(TESTCLUSTER) up || exit 1; started=1; fi; \
	rc=0; $(MAKE) molecule-sim integration || rc=$$?; \
	if [ $$started = 1 ] && [ -z "$(KEEP_CLUSTER)" ]; then $(TESTCLUSTER) down; fi; \
	exit $$rc

# Lint and unit tests while both clusters start, then molecule `default` on kind followed by
# the integration tests, alongside molecule `ecosystem` on the simulated cluster
# (tools/testrun.py says how and why; it prints each phase's time last).
test: venv
	$(BIN)/python tools/testrun.py

# Timings side by side in one run (tools/bench.py); writes .bench/results.md.
bench: venv
	$(BIN)/python tools/bench.py

clean: cluster-down kind-down
	rm -rf $(VENV) .ansible
