# Every target bootstraps .venv itself on first use; later runs reuse it.
# Re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench serve lint soak clean asyncapi-specs catalog-check chromium screenshot mutation

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# pulumi-policy pins protobuf 5 while google-cloud-firestore needs 6; the pack runs on 6
# (tests/policy serves it over gRPC), so it goes in without its pins.
$(VENV)/.dev: pyproject.toml policy/requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps -r policy/requirements.txt
	touch $@ $(VENV)/.base

demo: $(VENV)/.base
	$(BIN)/switchyard demo

serve: $(VENV)/.base
	$(BIN)/switchyard serve

# workflows-emulator pins an old fastapi: it gets its own venv (tests/gcp runs it).
WF_VENV ?= .venv-workflows
$(WF_VENV)/.installed:
	$(PYTHON) -m venv $(WF_VENV)
	$(WF_VENV)/bin/pip install -q workflows-emulator==1.10.0
	touch $@

# The official AsyncAPI JSON Schemas (npm package @asyncapi/specs, pinned with its integrity
# in tests/asyncapi/package-lock.json): the tests validate the exported catalog against them.
ASYNCAPI_SPECS := tests/asyncapi/node_modules/@asyncapi/specs/schemas/3.0.0.json
$(ASYNCAPI_SPECS): tests/asyncapi/package.json tests/asyncapi/package-lock.json
	npm ci --prefix tests/asyncapi --no-audit --no-fund --loglevel=error
	touch $@

asyncapi-specs: $(ASYNCAPI_SPECS)

# The console's browser tests drive Debian's Chromium (playwright never downloads its own).
# Installed here when missing and we are root; otherwise those tests fail saying so.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "chromium: $(CHROMIUM) is missing; install the Debian package 'chromium' (as root:" \
		     "apt-get install -y chromium). The browser tests fail without it."; \
	fi

test: $(VENV)/.dev $(WF_VENV)/.installed $(ASYNCAPI_SPECS) chromium
	$(BIN)/python -m pytest

# The README's console screenshot, from headless Chromium against a real `switchyard serve`
# with demo data (tests/console/test_screenshot.py checks this still works).
screenshot: $(VENV)/.dev chromium
	$(BIN)/python -m tests.console.screenshot --out docs/console.png

lint: $(VENV)/.dev
	$(BIN)/ruff check handlers adapters infra cli policy tests bench
	$(BIN)/mypy
	$(BIN)/actionlint -shellcheck= -pyflakes= ci/github-actions/*.yml
	@$(MAKE) --no-print-directory catalog-check

# The event contracts must not break producers or consumers of the previous version:
# compared with the merge base of origin/main when this branch has commits of its own,
# else with the previous commit; a clone without that history has nothing to compare.
catalog-check: $(VENV)/.base
	@if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
		echo "catalog-check: not a git checkout, nothing to compare against (skipped)"; \
	elif base=$$(git merge-base HEAD origin/main 2>/dev/null) && \
			[ "$$base" != "$$(git rev-parse HEAD)" ]; then \
		$(BIN)/switchyard catalog check --against "$$base"; \
	elif git rev-parse --verify --quiet HEAD~1 >/dev/null; then \
		$(BIN)/switchyard catalog check --against HEAD~1; \
	else \
		echo "catalog-check: no origin/main and no previous commit (skipped)"; \
	fi

# 50,000 events through `switchyard serve` with two SIGKILLs, then the randomised fault
# schedules under the long hypothesis profile; both check the invariants.
soak: $(VENV)/.dev
	$(BIN)/python -m bench.soak
	HYPOTHESIS_PROFILE=soak $(BIN)/python -m pytest -q tests/faults

# Every figure against its baseline measured in the same run, as one table (a few
# minutes); also writes bench/results/latest.json, which `switchyard cost` reads.
# bench/ is a folder, so the target is phony (declared above).
LAMBDA_VENV ?= .venv-lambda
bench: $(VENV)/.dev $(LAMBDA_VENV)/.boto3
	$(BIN)/python -m bench.run

# The Lambda runtime's Python (infra.aws.packaging.bytecode_interpreter finds it: on PATH,
# $$SWITCHYARD_LAMBDA_PYTHON or pyenv) with boto3, for figure 2's cold import as Lambda
# runs it. Without that Python the bench says so and measures with this one.
$(LAMBDA_VENV)/.boto3: | $(VENV)/.dev
	@py=$$($(BIN)/python -c 'from infra.aws.packaging import bytecode_interpreter as b; print(b() or "")'); \
	if [ -n "$$py" ]; then \
		$$py -m venv $(LAMBDA_VENV) && $(LAMBDA_VENV)/bin/pip install -q boto3 && touch $@; \
	else echo "no Python of the Lambda runtime's version here: figure 2 uses $(BIN)/python"; fi

# Mutation testing of the core with mutmut (tools/mutation.py): a fresh run of every
# target, then the kill rate per module and the survivors, also written to
# tests/mutation/report.md. Tens of minutes on 2 cores: not part of `make test` (its
# cheap sample is tests/mutation/test_mutants_die.py, which is).
mutation: $(VENV)/.dev asyncapi-specs
	nice -n 15 $(BIN)/python -m tools.mutation run

clean:
	rm -rf $(VENV) $(WF_VENV) $(LAMBDA_VENV) .pytest_cache .hypothesis .mypy_cache tests/asyncapi/node_modules mutants
