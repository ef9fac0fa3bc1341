# kabuflow — `make help` lists the targets. The two a newcomer needs: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/local
CONTAINERS_OUT ?= runs/containers
ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "kabuflow needs Python 3.11 ($(PY) not found)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned exactly: the CPU wheel; a range would pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install kabuflow with its pinned dependencies

run: $(STAMP) ## set up, then run the whole pipeline locally (KFP local runner) on the embedded synthetic market
	$(BIN)/kabuflow run --out $(OUT) $(ARGS)

sysdeps: ## install the Debian packages the integration tests start (pushgateway, chromium)
	bash scripts/sysdeps.sh

lint: $(STAMP) ## ruff check + ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) sysdeps lint ## lint, then every test (starts its own S3, GCS, pushgateway, J-Quants and KFP servers)
	$(BIN)/pytest -q

bench: $(STAMP) ## performance suite: prints measured ratios side by side (reads ../shared/data when present)
	$(BIN)/kabuflow bench $(ARGS)

compile: $(STAMP) ## compile the pipeline YAML for the cluster (PROFILE, IMAGE)
	$(BIN)/kabuflow compile --profile $(or $(PROFILE),a100) --image $(or $(IMAGE),ghcr.io/kabuflow/kabuflow:$$(git rev-parse --short HEAD)) --out pipeline.yaml

image: ## build the cpu and gpu images (needs a Docker engine); timestamps fixed to the commit time
	docker build -f docker/Dockerfile --target cpu --build-arg SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) --build-arg GIT_SHA=$$(git rev-parse HEAD) -t kabuflow:cpu-$$(git rev-parse --short HEAD) .
	docker build -f docker/Dockerfile --target gpu --build-arg SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct) --build-arg GIT_SHA=$$(git rev-parse HEAD) -t kabuflow:gpu-$$(git rev-parse --short HEAD) .

podman: ## install and configure podman as a Docker-compatible engine (root; idempotent)
	bash scripts/podman-setup.sh

image-cpu: podman ## build localhost/kabuflow:cpu-<sha> with podman from this machine's own mirrors
	bash scripts/image-build.sh cpu

run-containers: $(STAMP) ## make run, every task in a container of the cpu image (make image-cpu first)
	$(BIN)/kabuflow run --runner docker --out $(CONTAINERS_OUT) $(ARGS)

image-test: $(STAMP) ## fresh machine -> podman, base and cpu image, a small run in containers, checked
	bash scripts/image-test.sh

fmt: $(STAMP) ## format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## remove run outputs (keeps .venv)
	rm -rf runs local_outputs .pytest_cache

.PHONY: help install run sysdeps lint test bench compile image podman image-cpu run-containers image-test fmt clean
