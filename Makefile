# One entry point per job; every target uses the project's own virtualenv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export PYTHONUNBUFFERED := 1

DATA ?= data/synthetic
RUN ?= runs/demo
INDEX ?= indexes/demo
HOST ?= 127.0.0.1
PORT ?= 8000
FAISS ?= cpu

.PHONY: install lint test demo data contact-sheet train index serve bench clean

# Idempotent: the stamp file changes only when pyproject.toml does.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch is pinned in the same command so no resolver step can swap in a CUDA build.
	$(PY) -m pip install -q torch==2.13.0 -e ".[$(FAISS),dev]"
	touch $@

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest -q

data: install
	$(PY) -m training.synthetic --out $(DATA) --ids 300 --images-per-id 4 --seed 0

contact-sheet: data
	$(PY) -m training.contact_sheet --root $(DATA) --out $(DATA)/contact_sheet.png

demo: contact-sheet
	@echo "Synthetic set in $(DATA); contact sheet at $(DATA)/contact_sheet.png"

bench: install
	@mkdir -p out/bench
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b --out out/bench || exit 1; done

clean:
	rm -rf runs indexes out .pytest_cache .ruff_cache
