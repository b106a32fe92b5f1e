# Two commands matter on a fresh clone: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
SAM_VENV := .venv-sam
SAM_CLI_VERSION := 1.170.0
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
PY := $(VENV)/bin/python
SAM := $(SAM_VENV)/bin/sam
# SAM CLI talks to no AWS account in these targets; dummy credentials keep it from looking for any.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline AWS_DEFAULT_REGION=us-east-1

IMAGE ?= local/assets/sample.jpg
PROMPT ?= A slow cinematic push-in on a quiet harbour at dawn, gentle waves, drifting mist
NEGATIVE_PROMPT ?=
SEED ?=
RESOLUTION ?=
DURATION ?=

.PHONY: help demo stack chaos bench test check lint typecheck template build pytest clean

help:
	@echo "make demo   - run the whole pipeline locally on IMAGE= with PROMPT= (sample image by default)"
	@echo "make test   - lint, type-check, validate and build the template, and run the test suite"
	@echo "make check  - the fast loop: lint, type-check and the tests that need no local stack"
	@echo "make stack  - start the local stack and keep it running (prints endpoints and env)"
	@echo "make chaos  - a fault-injected load run of 1,000 uploads (UPLOADS=n), with a report"
	@echo "make bench  - every performance figure next to its baseline; writes docs/PERFORMANCE.md"

$(VENV)/.installed: pyproject.toml local/find-python.sh
	@python313="$$(sh local/find-python.sh)"; \
	  echo "Creating $(VENV) with $$python313"; \
	  "$$python313" -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

# SAM CLI pins its own boto3 and click, so it lives in its own environment.
$(SAM_VENV)/.installed: Makefile local/find-python.sh
	@python313="$$(sh local/find-python.sh)"; "$$python313" -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --disable-pip-version-check aws-sam-cli==$(SAM_CLI_VERSION)
	@touch $@

# checkov pins its own dependency tree too.
$(CHECKOV_VENV)/.installed: Makefile local/find-python.sh
	@python313="$$(sh local/find-python.sh)"; "$$python313" -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	@touch $@

demo: $(VENV)/.installed
	$(PY) -m local.demo --image "$(IMAGE)" --prompt "$(PROMPT)" \
	  --negative-prompt "$(NEGATIVE_PROMPT)" --seed "$(SEED)" \
	  --resolution "$(RESOLUTION)" --duration "$(DURATION)"

stack: $(VENV)/.installed
	$(PY) -m local.stack

# Performance figures with their baselines, measured in one run; the package sizes are those of
# a fresh build of the code as it is.
bench: $(VENV)/.installed build
	$(PY) -m bench

# 1,000 uploads through the local stack with faults injected everywhere; prints a report.
chaos: $(VENV)/.installed
	$(PY) -m local.chaos --uploads $(or $(UPLOADS),1000)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy layers/shared/pika_pipeline cli/pika_pipeline_cli functions local tests bench

template: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM_ENV) $(SAM) validate --lint --template template.yaml
	$(CHECKOV_VENV)/bin/checkov --file template.yaml --framework cloudformation \
	  --compact --quiet --skip-download

# Builds for arm64 without Docker: sam needs a python3.13 on PATH, so put the one we found first.
# Lambda's code directories are read-only, so Python cannot cache the bytecode it compiles there:
# without .pyc files in the package every cold start compiles every module it imports. They are
# compiled here with the runtime's Python, unchecked-hash: no source timestamp has to survive the zip.
build: $(VENV)/.installed $(SAM_VENV)/.installed
	@python313="$$(sh local/find-python.sh)"; \
	  PATH="$$(dirname "$$python313"):$$PATH" $(SAM_ENV) $(SAM) build --template template.yaml
	$(PY) -m compileall -q -j 0 --invalidation-mode unchecked-hash .aws-sam/build
	$(PY) -m local.build_report .aws-sam/build

pytest: $(VENV)/.installed
	$(PY) -m pytest -q

test: lint typecheck template build pytest

# The fast loop while working: no template validation, no build, no local stack (the tests that
# need one are marked `stack`, see tests/conftest.py). `make test` stays the full gate.
check: lint typecheck
	$(PY) -m pytest -q -m "not stack"

clean:
	rm -rf .aws-sam .local-stack .mypy_cache .ruff_cache .pytest_cache
