# mentalsim: every target sets itself up (a .venv with the pinned requirements) on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast bench data demo pretrain sweep finetune-long report lint format clean

setup: $(STAMP)  ## create .venv and install the pinned requirements

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(STAMP)

test: $(STAMP)  ## run the whole test suite
	$(PY) -m pytest

test-fast: $(STAMP)  ## the test suite without the slow tests
	$(PY) -m pytest -m "not slow"

bench: $(STAMP)  ## benchmarks (SSIM throughput, generator speed); figures in bench/RESULTS.md
	$(PY) -m bench

data: $(STAMP)  ## fetch the MNIST digits and write the generated Moving MNIST test set (data/mmnist-test.npz)
	$(PY) launch.py data mnist
	$(PY) launch.py data moving-mnist --split test --num 2000 --seed 1 --out data/mmnist-test.npz

demo: $(STAMP)  ## train the Moving MNIST E3D-LSTM baseline's demo profile (~4 min on 2 CPU cores) and test it
	$(PY) launch.py train ablations/moving_mnist/e3d_baseline.yaml --profile demo

PRETRAINED := ablations/moving_mnist/pretrained

pretrain: $(STAMP)  ## the showcase's stage 1: train the E3D-LSTM and E2D-LSTM baselines side by side (~2 h on 2 cores) and ship them
	$(MAKE) --no-print-directory -j2 pretrain-e3d_baseline pretrain-e2d
	$(PY) launch.py verify $(PRETRAINED)/mmnist_e3d_baseline.json $(PRETRAINED)/mmnist_e2d.json

# One baseline: train (or resume, or find finished) runs/pretrain/mmnist_<variant>, then ship its final weights with a
# manifest into $(PRETRAINED). The E2D run trains without a progress bar, so the two bars do not share a line.
PRETRAIN_ARGS = ablations/moving_mnist/$*.yaml --profile pretrain --train.runs_dir=runs/pretrain --train.run_name=mmnist_$*

pretrain-%: $(STAMP)
	$(PY) launch.py train $(PRETRAIN_ARGS) $(if $(filter e2d,$*),--quiet)
	$(PY) launch.py ship runs/pretrain/mmnist_$* --name mmnist_$* --out $(PRETRAINED) \
		--command-line "python launch.py train $(PRETRAIN_ARGS)"

SWEEPS ?= runs/baselines runs/finetune runs/search

sweep: $(STAMP)  ## the showcase's stage 2: shipped baselines scored, no/fixed/gated skips x l1 finetune grid with seeds, an Optuna search of the l1 weight, the report
	$(PY) launch.py sweep sweeps/baselines.yaml --workers 2
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
