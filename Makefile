# uda_seg — the two commands a newcomer needs are `make demo` and `make test`.
# Both create (or reuse) the virtual environment in .venv first.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.uda_seg_installed
# Small, seeded, CPU-only: the tests never need a GPU.
PYTEST_ARGS ?= -q

.PHONY: help setup test lint demo model reproduce benchmark mutants clean

# `make model` needs the labelled data: refused before the virtual environment is made
ifneq ($(filter model,$(MAKECMDGOALS)),)
ifeq ($(strip $(CAMVID)),)
$(error make model needs the labelled frames: make model CAMVID=path/to/CamVid (either layout, or a folder with images/ and labels/); it writes runs/model/model.onnx)
endif
endif

help:
	@echo "make setup      create .venv (Python 3.11) and install torch 2.14.1 + uda_seg[train,ros,dev]"
	@echo "make test       run the test suite (sets up first if needed)"
	@echo "make lint       ruff (ruff.toml) and the import-linter layer contracts (.importlinter)"
	@echo "make demo       synthetic data -> train/adapt -> deploy -> bag -> ROS 2 node -> live mIoU"
	@echo "                (CAMVID=path/to/CamVid: real CamVid frames as the target and the bag)"
	@echo "make model CAMVID=path  train the shipped recipe on labelled frames and deploy it:"
	@echo "                runs/model/model.onnx for the node (about 25 min on 2 cores, resumable)"
	@echo "make reproduce  the paper's tables and figures at the reduced synthetic profile"
	@echo "make benchmark  inference speed of every backend and of the alternatives"
	@echo "make mutants    targeted mutation run (metrics, conversions, adversarial step, resume)"

setup: $(STAMP)

# Re-runs only when the packaging changes; a second `make setup` is instant.
$(STAMP): setup.py setup.cfg package.xml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[train,ros,dev]'
	@touch $(STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS) test

lint: setup
	$(VENV)/bin/ruff check src test benchmarks launch
	$(VENV)/bin/lint-imports .importlinter

# `make demo CAMVID=path/to/CamVid`: real CamVid frames (either layout) as the target and the bag
demo: setup
	$(PY) -m uda_seg_tools.demo $(if $(CAMVID),--camvid "$(CAMVID)")

# `make model CAMVID=path/to/CamVid`: the shipped recipe (config/real_pretrained.yaml) trained
# on the labelled frames and deployed into runs/model/model.onnx; rerun to resume after a stop.
# MODEL_ARGS passes more to `uda-seg model` (e.g. MODEL_ARGS="--input-size 240x320").
model: setup
	$(PY) -m uda_seg_core.cli model --data "$(CAMVID)" --out runs/model $(MODEL_ARGS)

reproduce: setup
	$(PY) -m uda_seg_core.cli reproduce --out runs/reproduce

benchmark: setup
	$(PY) benchmarks/inference_speed.py

# Mutation testing of the code the README's claims rest on (setup.cfg [mutmut] says which
# files and tests); 1250 mutants, 30 min on 2 cores (idle). Survivors: README.md, "Tests". Not in `test`.
mutants: setup
	rm -rf mutants
	OMP_NUM_THREADS=1 PYTHONPATH=src $(VENV)/bin/mutmut run
	$(VENV)/bin/mutmut results

clean:
	rm -rf build install log runs out .pytest_cache mutants
