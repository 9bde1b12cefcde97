# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

install: $(STAMP)

# Reinstall only when the requirements or the project metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	$(BIN)/pip install -qq -r requirements.txt
	$(BIN)/pip install -qq --no-deps -e .
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

# Two workers: the end-to-end tests mostly wait on processes they started (Ray, MLflow, searches),
# so two at a time use the two cores; a module's tests stay on one worker (tests/conftest.py).
test: lint
	$(BIN)/pytest -n 2 --dist loadgroup

demo: $(STAMP)
	$(BIN)/lvsearch demo --out demo-output

bench: $(STAMP)
	$(BIN)/python bench/cache_sizes.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/resident.py
	$(BIN)/python bench/step_phases.py
	$(BIN)/python bench/loss.py
	$(BIN)/python bench/hostmemory.py
	$(BIN)/python bench/gpu.py --smoke
	$(BIN)/python bench/frames.py
	$(BIN)/python bench/probe_cache.py
	$(BIN)/python bench/search_overhead.py
	$(BIN)/python bench/first_trial.py
	$(BIN)/python bench/sam_cache.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
