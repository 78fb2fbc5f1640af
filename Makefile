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
BATCH_SIZE ?= 0
APISERVER_BASE_URL ?= http://localhost:8010
KIND_CONTEXT ?= kind-gateway-api-stack

# The levels of the proof ladder: one pytest marker and one make target each (make test-<level>).
LEVELS := lint services schemas controlplane istiod images charts dataplane node

.PHONY: help setup prepare deploy push-images teardown destroy test lint lint-only pytest demo test-insert bench clean \
	collection changelog release \
	$(addprefix test-,$(LEVELS))

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@printf '  make %-12s %s\n' 'test-<level>' 'one level of the ladder, one of: $(LEVELS)'

setup: ## install the pinned toolchain into .venv (uv.lock) and the Ansible collections
	@bash tools/setup.sh dev

deploy: ## create a kind cluster and deploy the whole stack to it (needs docker, kind, helm, kubectl)
	@bash tools/check-deploy-prereqs.sh
	@bash tools/setup.sh deploy
	ansible-playbook playbooks/kind.yml -i $(INVENTORY)
	ansible-playbook playbooks/site.yml -i $(INVENTORY)
	@echo "Deployed. Through the Gateway on this machine:"
	@echo "  apiserver  http://localhost:8010/docs  (POST /external-insert, GET /external-read; header x-api-key)"
	@echo "  dagster    http://localhost:3010/"
	@echo "  grafana    http://localhost:4010/  (user admin)"
	@echo "  mongodb    mongodb://localhost:27018/?directConnection=true  (SCRAM users apiserver, pipeline)"
	@echo "API key (Secret apiserver/apiserver-api-key), for example for make test-insert:"
	@echo "  export APISERVER_API_KEY=\$$(kubectl --context $(KIND_CONTEXT) -n apiserver get secret apiserver-api-key -o jsonpath='{.data.api-key}' | base64 -d)"
	@echo "Grafana password (Secret monitoring/grafana-admin):"
	@echo "  kubectl --context $(KIND_CONTEXT) -n monitoring get secret grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d"

teardown: ## remove the stack from the cluster of INVENTORY (CRDs stay; see playbooks/teardown.yml)
	@bash tools/setup.sh deploy
	ansible-playbook playbooks/teardown.yml -i $(INVENTORY)

destroy: ## delete the kind cluster of make deploy and the images it built (playbooks/destroy.yml)
	@bash tools/setup.sh deploy
	ansible-playbook playbooks/destroy.yml -i $(INVENTORY)

push-images: ## build both images and push them to the inventory's registry (INVENTORY=, REGISTRY=)
	@bash tools/setup.sh deploy
	ansible-playbook playbooks/images.yml -i $(INVENTORY) $(if $(REGISTRY),-e stack_image_registry=$(REGISTRY))

prepare: ## build (or reuse) every binary, image and chart the tests use (needs Go)
	@bash tools/setup.sh test
	python -m stacktools prepare

test: ## every check: set-up, builds, linters, all levels; prints a time table
	@bash tools/ladder.sh

lint: setup lint-only ## ruff, mypy (strict), yamllint, ansible-lint (production profile)

lint-only:
	ruff check .
	ruff format --check .
	mypy tools/stacktools/src services/apiserver/src services/pipeline/src
	MYPYPATH=services/pipeline/tests mypy services/pipeline/tests tools/demo.py bench/pipeline.py bench/site.py \
		bench/gateway.py bench/charts.py
	MYPYPATH=bench mypy bench/apiserver.py bench/measure.py bench/bare_fastapi.py
	mypy tests/node tools/stacktools/tests/test_node.py
	yamllint --strict .
	ansible-lint

pytest: prepare ## every test suite (after the builds)
	pytest

$(addprefix test-,$(LEVELS)): test-%: prepare ## one level of the ladder: make test-<level>
	pytest -m $*

demo: setup ## the data path without Kubernetes: FerretDB, apiserver, generator, Delta export
	python tools/demo.py --count $(COUNT)

test-insert: setup ## post COUNT random records to APISERVER_BASE_URL (needs APISERVER_API_KEY)
	stack-insert --count $(COUNT) --concurrency $(CONCURRENCY) --base-url $(APISERVER_BASE_URL) \
		--batch-size $(BATCH_SIZE)

bench: setup ## benchmarks (print numbers; not tests)
	python bench/apiserver.py
	python bench/pipeline.py
	python bench/site.py
	python bench/gateway.py
	python bench/charts.py

collection: setup ## build the Galaxy collection into dist/ (gateway_api_stack-showcase-<version>.tar.gz)
	ansible-galaxy collection build --force --output-path dist .

changelog: setup ## fold changelogs/fragments/ into changelogs/changelog.yaml and CHANGELOG.md (version of galaxy.yml)
	antsibull-changelog lint
	antsibull-changelog release

release: setup ## the collection tarball and both images tagged with the version (REGISTRY=host/owner [PUSH=1])
	python -m stacktools release $(if $(REGISTRY),--registry $(REGISTRY)) $(if $(PUSH),--push)

clean: ## remove local state (.venv, caches, dist/); the shared binary cache stays
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache collections/installed dist
