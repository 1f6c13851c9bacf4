# personsearch developer entry points. Every target sets up the environment itself (idempotent).
#   make demo   the main job on the built-in synthetic dataset
#   make test   the unit tests (CPU)
#   make lint   black + isort + flake8 at line length 100
PYTHON ?= $(shell command -v python3.10 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= output/demo

.PHONY: venv demo test lint format clean-venv

# (Re)install only when requirements.txt or setup.py changed since the last successful install.
$(STAMP): requirements.txt setup.py
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 10) else \
	  "personsearch needs Python 3.10 (found %d.%d at $(PYTHON)); install it with pyenv (see .python-version) or pass PYTHON=/path/to/python3.10" % v)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(PY) tools/analyze_dataset.py --dataset synthetic_train synthetic_test --output $(DEMO)/dataset
	$(PY) tools/visualize_data.py --dataset synthetic_train --num-images 4 --output $(DEMO)/dataset

test: venv
	$(PY) -m pytest -q tests

lint: venv
	$(PY) -m black -l 100 --check personsearch tools tests
	$(PY) -m isort --check-only personsearch tools tests
	$(PY) -m flake8 personsearch tools tests

format: venv
	$(PY) -m isort personsearch tools tests
	$(PY) -m black -l 100 personsearch tools tests

clean-venv:
	rm -rf $(VENV)
