# spotler-bridge: one entry point for installing, checking, running and measuring.
#   make install   virtualenv in .venv: the locked dependencies (requirements/*.lock), the package
#   make lock      refresh the lock files from pyproject.toml
#   make check     lint, types, every test (real Kafka broker started and stopped), chart checks
#   make test      every test against a real Kafka broker
#   make run       Kafka, the simulator and `bridge serve`, wired together, in the foreground
#   make bench     the benchmark harness (tests/bench)
#   make mutants   mutation testing of the pure core (mutmut, pinned; slow, not part of CI)
VENV ?= .venv
BIN := $(VENV)/bin
export PY := $(BIN)/python

.PHONY: install lock lint format typecheck test unit check deploy-check tools kafka-up kafka-down run bench mutants clean

install: $(VENV)/.installed

# Installs exactly the locked versions (hashes checked), then the package itself without deps.
$(VENV)/.installed: pyproject.toml requirements/dev.lock
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes -r requirements/dev.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Refresh the lock files after a change of pyproject.toml's dependencies (needs PyPI).
lock: install
	$(BIN)/uv pip compile -q pyproject.toml --universal --python-version 3.11 --generate-hashes \
		-o requirements/runtime.lock
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --universal --python-version 3.11 \
		--generate-hashes -o requirements/dev.lock
	$(BIN)/uv pip compile -q pyproject.toml --extra rdkafka --universal --python-version 3.11 \
		--generate-hashes -o requirements/rdkafka.lock

lint: install
	$(BIN)/ruff check bridge tests
	$(BIN)/ruff format --check bridge tests
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format bridge tests
	$(BIN)/ruff check --fix bridge tests

typecheck: install
	$(BIN)/mypy

test: install
	scripts/test.sh

unit: install
	$(BIN)/python -m pytest tests/unit tests/simulator

tools:
	scripts/tools.sh

deploy-check: install tools
	scripts/check-deploy.sh

check: lint typecheck deploy-check test

kafka-up:
	scripts/kafka.sh up

kafka-down:
	scripts/kafka.sh down

run: install
	scripts/run-local.sh

bench: install
	$(BIN)/python -m tests.bench

MUTMUT_VERSION := 3.8.1
MUTANTS_VENV ?= .venv-mutants
MUTANTS_JOBS ?= 2
# mutmut runs the tests against its mutated copy in mutants/. It needs a virtualenv of its own,
# without the package installed: with the editable install of .venv, `import bridge` loads the
# working tree instead and no mutant can be seen ("Unable to force test failures").
$(MUTANTS_VENV)/.installed: requirements/dev.lock
	python3 -m venv $(MUTANTS_VENV)
	$(MUTANTS_VENV)/bin/pip install -q --upgrade pip
	$(MUTANTS_VENV)/bin/pip install -q --require-hashes -r requirements/dev.lock
	$(MUTANTS_VENV)/bin/pip install -q "mutmut==$(MUTMUT_VERSION)"
	touch $@

# MODULE=bridge/core/errors.py limits a run to one module of the pure core ([tool.mutmut]).
# The score per module is printed at the end (scripts/mutants_score.py); docs/testing.md has it.
# SAMPLE=N checks only a fixed random sample of N of MODULE's mutants (scripts/mutants_sample.py).
mutants: $(MUTANTS_VENV)/.installed
	$(MUTANTS_VENV)/bin/mutmut run --max-children $(MUTANTS_JOBS) $(if $(SAMPLE),\
		$$($(MUTANTS_VENV)/bin/python scripts/mutants_sample.py $(MODULE) $(SAMPLE)),\
		$(if $(MODULE),"$(subst /,.,$(basename $(MODULE))).*",))
	$(MUTANTS_VENV)/bin/python scripts/mutants_score.py $(MODULE)

clean:
	rm -rf mutants $(MUTANTS_VENV) $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .kafka .kafka-test .tools var
