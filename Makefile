# Every target installs what it needs into .venv first, so a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# LocalStack (S3 with real signature checks) lives in a virtualenv of its own: it needs Python 3.13.
LOCALSTACK_VENV  := .venv-localstack
LOCALSTACK_STAMP := $(LOCALSTACK_VENV)/.installed
LOCALSTACK_PYTHON ?= $(shell for p in python3.13 $(HOME)/.pyenv/versions/3.13*/bin/python3.13; do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo "$$p"; break; }; done)

.PHONY: run test test-unit openapi lint deploy-lint fmt clean loadtest bench profile soak chaos latency uppy-example

USERS    ?= 16
DURATION ?= 30
SOAK_USERS    ?= 64
SOAK_DURATION ?= 300
CHAOS_USERS    ?= 12
CHAOS_DURATION ?= 120

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server,dev,test,lint,bench]'
	touch $@

$(LOCALSTACK_STAMP): localstack/requirements-host.txt
	@test -n "$(LOCALSTACK_PYTHON)" || { echo "LocalStack needs Python 3.13: set LOCALSTACK_PYTHON" >&2; exit 1; }
	"$(LOCALSTACK_PYTHON)" -m venv $(LOCALSTACK_VENV)
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCALSTACK_VENV)/bin/python -m pip install --quiet -r localstack/requirements-host.txt
	touch $@

# The deployment artifacts' linters (cfn-lint, checkov, kubernetes-validate): a virtualenv of their own.
DEPLOY_VENV  := .venv-deploy
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
$(DEPLOY_STAMP): deploy/requirements-lint.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DEPLOY_VENV)/bin/python -m pip install --quiet -r deploy/requirements-lint.txt
	touch $@

# Uppy, the upload widget of the example in examples/uppy, from the npm registry (no CDN): the
# tarball is checked against the integrity pinned here before its bundle is unpacked.
UPPY_VERSION   := 5.2.4
UPPY_INTEGRITY := sha512-1btgAGUb7Tu7GympmA9XkyGcXBSM93d1FA36J6pY4lr6a0jMXfvFUg66Dbnm/Xaq6sFvm8KwSPJF46d8Ng0E8Q==
UPPY_DIR       := examples/uppy/vendor
UPPY_STAMP     := $(UPPY_DIR)/.uppy-$(UPPY_VERSION)
NPM ?= /usr/bin/npm
$(NPM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
$(UPPY_STAMP): | $(NPM)
	rm -rf $(UPPY_DIR) && mkdir -p $(UPPY_DIR)/pack
	cd $(UPPY_DIR)/pack && $(NPM) pack --silent uppy@$(UPPY_VERSION) >/dev/null
	test "sha512-$$(openssl dgst -sha512 -binary $(UPPY_DIR)/pack/uppy-$(UPPY_VERSION).tgz | base64 -w0)" = "$(UPPY_INTEGRITY)" \
		|| { echo "uppy-$(UPPY_VERSION).tgz does not match its pinned integrity" >&2; exit 1; }
	tar -xzf $(UPPY_DIR)/pack/uppy-$(UPPY_VERSION).tgz -C $(UPPY_DIR) --strip-components=2 \
		package/dist/uppy.min.mjs package/dist/uppy.min.css
	rm -rf $(UPPY_DIR)/pack
	touch $@

## uppy-example: vendor Uppy, then serve examples/uppy on :8081 (next to `make run`'s API on :8080)
uppy-example: $(UPPY_STAMP)
	@echo "open http://127.0.0.1:8081/#api=http://127.0.0.1:8080&token=<the token make run printed>"
	$(PYTHON) -m http.server 8081 --bind 127.0.0.1 --directory examples/uppy

# ClamAV's daemon, for the scanning tests (Debian's package; signatures are written by the tests).
CLAMD ?= /usr/sbin/clamd
$(CLAMD):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clamav-daemon

# Debian's Chromium, driven by Playwright's bundled driver in the browser test (no browser download).
CHROMIUM ?= /usr/bin/chromium
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

## run: install, then start the API on embedded moto S3 + DynamoDB (no Docker, no AWS account)
run: $(STAMP)
	$(BIN)/image-service dev

# The suite's processes (pytest-xdist): twice the cores, since a test spends about half its time
# waiting on its servers; each process has its own moto, the LocalStack modules share one
# (tests/conftest.py). TEST_WORKERS=0 runs it in one process. The 25 slowest are printed.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) * 2 )))

## test: install, then run the whole suite (it starts its own moto, LocalStack S3, clamd, Chromium)
test: $(STAMP) $(LOCALSTACK_STAMP) $(DEPLOY_STAMP) $(CLAMD) $(CHROMIUM) $(UPPY_STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25 $(PYTEST_ARGS)

## deploy-lint: cfn-lint and checkov on deploy/ (CloudFormation, Kubernetes), kubernetes-validate
deploy-lint: $(STAMP) $(DEPLOY_STAMP)
	$(BIN)/python -m pytest tests/integration/test_deploy_lint.py $(PYTEST_ARGS)

## openapi: record the OpenAPI document the service serves in docs/openapi.json (a unit test holds it)
openapi: $(STAMP)
	$(BIN)/python -c 'import asyncio, pathlib; from tests.unit.test_openapi_document import RECORDED, served_document; RECORDED.write_bytes(asyncio.run(served_document()))'

## test-unit: the fast tier only (tests/unit: codecs, layout, schemas, presigner, settings...), no server
test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

## loadtest: install, start `image-service dev` on a spare port, drive it (USERS=16 DURATION=30)
loadtest: $(STAMP)
	$(BIN)/image-service loadtest --dev --users $(USERS) --duration $(DURATION)

## soak: moto + serve --workers 2 + 2 workers under loadtest (SOAK_USERS=64 SOAK_DURATION=300), then audit
soak: $(STAMP)
	$(BIN)/python -m bench.soak --users $(SOAK_USERS) --duration $(SOAK_DURATION)

## chaos: the soak under SIGKILLed API processes and workers and frozen backends, then the audit
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --users $(CHAOS_USERS) --duration $(CHAOS_DURATION)

## latency: complete -> ready for dev and serve + worker, after a quiet minute and under load
latency: $(STAMP)
	$(BIN)/python -m bench.latency

## bench: the benchmarks that print numbers (API CPU per request, listing cost, variants, renditions, multipart)
bench: $(STAMP) $(LOCALSTACK_STAMP)
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.listing
	$(BIN)/python -m bench.variants
	$(BIN)/python -m bench.render
	$(BIN)/python -m bench.multipart
	$(BIN)/python -m bench.waits
	$(BIN)/python -m bench.reprocess

## profile: where one endpoint's CPU goes, per request (py-spy on serve under load)
ENDPOINT ?= POST /images/upload
CONNECTIONS ?= 16
profile: $(STAMP)
	$(BIN)/python -m bench.profile "$(ENDPOINT)" --concurrency $(CONNECTIONS)

## lint: ruff check, ruff format --check, strict mypy on the package
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) $(LOCALSTACK_VENV) $(DEPLOY_VENV) $(UPPY_DIR) .pytest_cache .mypy_cache .ruff_cache
