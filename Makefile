# Task runner. `make deploy` deploys to a local kind cluster; `make test` runs every check
# that this repository can run without a cluster. Both do their own set-up.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

INVENTORY ?= inventories/local
COUNT ?= 1000
CONCURRENCY ?= 32
APISERVER_BASE_URL ?= http://localhost:8010

.PHONY: help setup deploy test lint pytest demo test-insert bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install the pinned toolchain into .venv (uv.lock) and the Ansible collections
	@bash tools/setup.sh

deploy: ## create a kind cluster and deploy the whole stack to it (needs docker, kind, helm, kubectl)
	@bash tools/check-deploy-prereqs.sh
	@$(MAKE) --no-print-directory setup
	ansible-playbook playbooks/kind.yml -i $(INVENTORY)
	ansible-playbook playbooks/site.yml -i $(INVENTORY)

test: setup lint pytest ## every check: linters, then all test suites

lint: setup ## ruff, mypy (strict), yamllint, ansible-lint (production profile)
	ruff check .
	ruff format --check .
	mypy tools/stacktools/src services/apiserver/src services/pipeline/src

pytest: setup ## the test suites (FerretDB and the control plane are built on first use)
	pytest

demo: setup ## the data path without Kubernetes: FerretDB, apiserver, generator, Delta export
	python tools/demo.py --count $(COUNT)

test-insert: setup ## post COUNT random records to APISERVER_BASE_URL (needs APISERVER_API_KEY)
	stack-insert --count $(COUNT) --concurrency $(CONCURRENCY) --base-url $(APISERVER_BASE_URL)

bench: setup ## benchmarks (print numbers; not tests)

clean: ## remove local state (.venv, caches); the shared binary cache stays
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache collections/installed
