# mentalsim: every target sets itself up (a .venv with the pinned requirements) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help setup test test-fast bench data demo pretrain sweep finetune-long report lint format clean
.DEFAULT_GOAL := help

help:  ## list the targets (this)
	@grep -E '^[a-z][a-z-]*%?:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([^:]+):.*## /\1\t/' | expand -t 16

setup: $(STAMP)  ## create .venv and install the pinned requirements

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(STAMP)

test: $(STAMP)  ## run the whole test suite
	$(PY) -m pytest

test-fast: $(STAMP)  ## the test suite without the slow tests
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)  ## benchmarks: SSIM, generator speed, training steps and memory per model, time to quality (~15 min more); bench/RESULTS.md
	$(PY) -m bench

data: $(STAMP)  ## fetch the MNIST digits and write the generated Moving MNIST test set (data/mmnist-test.npz)
	$(PY) launch.py data mnist
	$(PY) launch.py data moving-mnist --split test --num 2000 --seed 1 --out data/mmnist-test.npz

demo: $(STAMP)  ## train the Moving MNIST E3D-LSTM baseline's demo profile (~4 min on 2 CPU cores) and test it
	$(PY) launch.py train ablations/moving_mnist/e3d_baseline.yaml --profile demo

PRETRAINED := ablations/moving_mnist/pretrained

# The showcase's stage-1 rows, each trained from scratch at 2 seeds: <variant>-s<seed>, one core each; then the other
# recurrent families at seed 0 with the same recipe (ConvLSTM ~20 min, PredRNN ~37 min, PredRNN++ ~55 min a run).
PRETRAIN_RUNS := e3d_baseline-s0 e2d-s0 residual-s0 e3d_baseline-s1 e2d-s1 residual-s1 \
	convlstm-s0 predrnn-s0 predrnnpp-s0

pretrain: $(STAMP)  ## the showcase's stage 1: E3D-LSTM, E2D-LSTM, E3D-LSTM + residuals from scratch at 2 seeds (~2.2 h a run, 2 at a time), ConvLSTM, PredRNN, PredRNN++ at seed 0, and ship them
	$(MAKE) --no-print-directory -j2 $(addprefix pretrain-,$(PRETRAIN_RUNS))
	$(PY) launch.py verify $(foreach run,$(PRETRAIN_RUNS),$(PRETRAINED)/mmnist_$(run).json)

# One run, pretrain-<variant>-s<seed>: train (or resume, or find finished) runs/pretrain/mmnist_<variant>-s<seed>, then
# ship its final weights with a manifest into $(PRETRAINED), as the shipped files were (weights only). Only the first of
# the two parallel runs draws a progress bar, so the two do not share a line.
pretrain_variant = $(word 1,$(subst -s, ,$*))
pretrain_seed = $(word 2,$(subst -s, ,$*))
PRETRAIN_ARGS = ablations/moving_mnist/$(pretrain_variant).yaml --profile pretrain --train.seed=$(pretrain_seed) \
	--train.runs_dir=runs/pretrain --train.run_name=mmnist_$*

pretrain-%: $(STAMP)
	$(PY) launch.py train $(PRETRAIN_ARGS) $(if $(filter e3d_baseline-s0,$*),,--quiet)
	$(PY) launch.py ship runs/pretrain/mmnist_$* --name mmnist_$* --out $(PRETRAINED) \
		--command-line "python launch.py train $(PRETRAIN_ARGS)"

SWEEPS ?= runs/baselines runs/family_baselines runs/finetune runs/search

sweep: $(STAMP)  ## the showcase's stage 2: shipped baselines (and the other families') scored, no/fixed/gated skips x l1 finetune grid with seeds, an Optuna search of the l1 weight, the report
	$(PY) launch.py sweep sweeps/baselines.yaml --workers 2
	$(PY) launch.py sweep sweeps/family_baselines.yaml --workers 2
	$(PY) launch.py sweep sweeps/finetune.yaml --workers 2
	$(PY) launch.py sweep sweeps/search.yaml --workers 2
	$(PY) launch.py report $(SWEEPS) --out runs/report --wandb offline

finetune-long: $(STAMP)  ## the finetune grid of make sweep at 500 steps, one seed (6 cells, ~45 min on 2 cores), and its report
	$(PY) launch.py sweep sweeps/finetune_long.yaml --workers 2
	$(PY) launch.py report runs/finetune_long --out runs/report_long --wandb offline

report: $(STAMP)  ## tables, axis effects, figures and runs/report/report.html from the sweeps in SWEEPS
	$(PY) launch.py report $(SWEEPS) --out runs/report --wandb offline

lint: $(STAMP)  ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:  ## remove the virtual environment and caches (keeps data/ and runs/)
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
