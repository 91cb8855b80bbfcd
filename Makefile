# Two commands for users: `make deploy` and `make test`. Each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)

# make deploy [CONTEXT=docker-desktop] [INVENTORY=inventory/hosts.yml] [ARGS='--tags chatbot']
CONTEXT ?=
INVENTORY ?=
ARGS ?=

# Simulated test cluster (tools/testcluster.py) used by `make test`.
TESTCLUSTER := $(BIN)/python tools/testcluster.py
TESTCLUSTER_KUBECONFIG := $(abspath .testcluster/kubeconfig)
TESTCLUSTER_CONTEXT := kwok-desktop-sim
# KEEP_CLUSTER=1 leaves the simulated cluster running after `make test`.
KEEP_CLUSTER ?=

.PHONY: help venv deploy test lint unit molecule integration cluster-up cluster-down cluster-build clean

help:
	@echo "make deploy   - deploy the stack with site.yml to the current kube context (CONTEXT=..., INVENTORY=..., ARGS=...)"
	@echo "make test     - lint, unit tests, then molecule scenarios and integration tests on a simulated cluster"
	@echo "make cluster-up / cluster-down - start / stop the simulated cluster (KWOK + real control plane)"

$(BIN)/.installed: requirements.txt requirements.yml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/ansible-galaxy collection install -r requirements.yml
	touch $@

venv: $(BIN)/.installed

deploy: venv
	$(BIN)/ansible-playbook site.yml \
	  $(if $(INVENTORY),-i $(INVENTORY)) \
	  $(if $(CONTEXT),-e ai_stack_context=$(CONTEXT)) $(ARGS)

lint: venv
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --profile production
	$(BIN)/ansible-playbook site.yml --syntax-check

unit: venv
	$(BIN)/python -m pytest -q tests --ignore=tests/integration

cluster-build: venv
	$(TESTCLUSTER) build

cluster-up: venv
	$(TESTCLUSTER) up

cluster-down: venv
	$(TESTCLUSTER) down

# Molecule scenarios and integration tests against the simulated cluster.
molecule: venv
	cd $(CURDIR) && $(BIN)/molecule test --all

integration: venv
	K8S_AUTH_KUBECONFIG=$(TESTCLUSTER_KUBECONFIG) K8S_AUTH_CONTEXT=$(TESTCLUSTER_CONTEXT) \
	  $(BIN)/python -m pytest -q tests/integration

test: venv
	$(MAKE) lint
	$(MAKE) unit
	@started=0; \
	if ! $(TESTCLUSTER) status >/dev/null 2>&1; then $(TESTCLUSTER) up || exit 1; started=1; fi; \
	rc=0; $(MAKE) molecule integration || rc=$$?; \
	if [ $$started = 1 ] && [ -z "$(KEEP_CLUSTER)" ]; then $(TESTCLUSTER) down; fi; \
	exit $$rc

clean: cluster-down
	rm -rf $(VENV) .ansible
