# Every target bootstraps .venv itself on first use; later runs reuse it.
# Re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench serve lint soak clean mutation

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

test: $(VENV)/.dev $(WF_VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.dev
	$(BIN)/ruff check handlers adapters infra policy tests

# 50,000 events through `switchyard serve` with two SIGKILLs, then the randomised fault
# schedules under the long hypothesis profile; both check the invariants.
soak: $(VENV)/.dev
	$(BIN)/python -m bench.soak
	HYPOTHESIS_PROFILE=soak $(BIN)/python -m pytest -q tests/faults

# Every figure against its baseline measured in the same run, as one table (a few
# minutes); also writes bench/results/latest.json, which `switchyard cost` reads.
# bench/ is a folder, so the target is phony (declared above).
bench: $(VENV)/.dev
	$(BIN)/python -m bench.run

# Mutation testing of the core with mutmut (tools/mutation.py): a fresh run of every
# target, then the kill rate per module and the survivors, also written to
# tests/mutation/report.md. Tens of minutes on 2 cores: not part of `make test` (its
# cheap sample is tests/mutation/test_mutants_die.py, which is).
mutation: $(VENV)/.dev
	nice -n 15 $(BIN)/python -m tools.mutation run

clean:
	rm -rf $(VENV) $(WF_VENV) .pytest_cache .hypothesis mutants
