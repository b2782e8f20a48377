# MeshFoundry: `make up` runs the service, `make test` runs the tests. Both set up .venv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up test bench lint clean

install: $(STAMP)

# torch==2.13.0 first: on machines that carry a local CPU wheel of it, this avoids pulling several GB of CUDA
# packages; elsewhere pip resolves the project's own torch range as usual.
$(STAMP): pyproject.toml inference/bundled_models.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "torch==2.13.0" || echo "torch 2.13.0 not available here; using the project's range"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m inference.bundled_models
	touch $(STAMP)

up: install
	$(BIN)/meshfoundry up

# Two workers (pytest-xdist): each test has its own database and queue names, so they run side by side safely.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .meshfoundry-test
