# personsearch developer entry points. Every target sets up the environment itself (idempotent).
#   make demo          the main job on the built-in synthetic dataset (DEVICE=cuda: on a GPU)
#   make test          the unit tests (CPU), reference lane (.venv: Python 3.10, torch 2.3.1)
#   make test-latest   the unit tests on the newest-PyTorch lane (Python 3.12, requirements/latest.txt;
#                      its environment is built once and cached outside the clone, see .ci/venv-latest)
#   make lint          black + isort + flake8 at line length 100
#   make regression    configs/quick_schedules/: train each, check TEST.EXPECTED_RESULTS (slow)
PYTHON ?= $(shell command -v python3.10 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= output/demo
# the main job's model: the headline UGAS (on SeqNet) trained from scratch on the synthetic set,
# sized for 2 CPU cores (DEMO_CONFIG=configs/synthetic/OIM_R10.yaml: the OIM baseline, faster)
DEMO_CONFIG ?= configs/synthetic/UGAS_R10.yaml
# where the main job's models run: empty = the config's MODEL.DEVICE (cpu), or cuda for a GPU
DEVICE ?=
DEVICE_OPTS = $(if $(DEVICE),MODEL.DEVICE $(DEVICE))
# more config overrides for the main job's models, e.g. DEMO_OPTS="SOLVER.AMP.ENABLED True"
DEMO_OPTS ?=

.PHONY: venv demo test test-latest lint format regression clean-venv

# (Re)install only when the reference lane's pins or setup.py changed since the last successful
# install.
$(STAMP): requirements.txt requirements/reference.txt setup.py
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 10) else \
	  "personsearch needs Python 3.10 (found %d.%d at $(PYTHON)); install it with pyenv (see .python-version) or pass PYTHON=/path/to/python3.10" % v)'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# The main job: the synthetic data prepared (rendered once; a no-op when current) + statistics and
# pictures; the untrained model's score (the floor); training and evaluation on the CPU; the same
# results re-scored at every gallery size (+ plot), on the low-resolution queries and with CBGM;
# then a search with a report.
demo: venv
	$(PY) datasets/prepare_synthetic.py
	$(PY) tools/analyze_dataset.py --dataset synthetic_train synthetic_test --output $(DEMO)/dataset
	$(PY) tools/visualize_data.py --dataset synthetic_test --num-images 4 --output $(DEMO)/dataset
	# the floor: the same model with random weights
	$(PY) tools/train_net.py --config-file $(DEMO_CONFIG) --eval-only MODEL.WEIGHTS "" \
	  OUTPUT_DIR $(DEMO)/untrained $(DEVICE_OPTS) $(DEMO_OPTS)
	$(PY) tools/train_net.py --config-file $(DEMO_CONFIG) OUTPUT_DIR $(DEMO)/train \
	  $(DEVICE_OPTS) $(DEMO_OPTS)
	$(PY) tools/evaluate_search.py --dataset synthetic_test --all --output $(DEMO)/search \
	  --results $(DEMO)/train/inference/synthetic_test/search_results.pth
	$(PY) tools/evaluate_search.py --dataset synthetic_test --subset resolution \
	  --output $(DEMO)/search/lowres --results $(DEMO)/train/inference/synthetic_test/search_results.pth
	$(PY) tools/evaluate_search.py --dataset synthetic_test --cbgm --output $(DEMO)/search/cbgm \
	  --results $(DEMO)/train/inference/synthetic_test/search_results.pth
	# search: the test images indexed with the model just trained, 3 queries, HTML reports
	rm -rf $(DEMO)/search_index
	$(PY) tools/search.py index --config-file $(DEMO_CONFIG) --dataset synthetic_test \
	  --index $(DEMO)/search_index MODEL.WEIGHTS $(DEMO)/train/model_final.pth \
	  $(DEVICE_OPTS) $(DEMO_OPTS)
	$(PY) tools/search.py query --index $(DEMO)/search_index --exclude-query-image \
	  --dataset-query synthetic_test:0,1,2 --output $(DEMO)/search $(if $(DEVICE),--device $(DEVICE))

test: venv
	$(PY) -m pytest -q tests

test-latest:
	bash .ci/test-latest

lint: venv
	$(PY) -m black -l 100 --check personsearch benchmarks datasets tools tests
	$(PY) -m isort --check-only personsearch benchmarks datasets tools tests
	$(PY) -m flake8 personsearch benchmarks datasets tools tests

format: venv
	$(PY) -m isort personsearch benchmarks datasets tools tests
	$(PY) -m black -l 100 personsearch benchmarks datasets tools tests

# detectron2's quick_schedules convention: each *_acc_test.yaml trains from scratch and ends with
# verify_results on its TEST.EXPECTED_RESULTS (measured means, 3 std tolerance); exit 1 on a miss
regression: venv
	$(PY) datasets/prepare_synthetic.py
	set -e; for c in configs/quick_schedules/*_acc_test.yaml; do \
	  n=$$(basename $$c .yaml); \
	  $(PY) tools/train_net.py --config-file $$c OUTPUT_DIR output/quick_schedules/$$n $(DEVICE_OPTS); \
	done

clean-venv:
	rm -rf $(VENV)
