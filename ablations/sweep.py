"""Sweeps: a YAML file in W&B's sweep schema, expanded into cells and run by local workers over an Optuna ledger.

This module only gathers the sweep's public names; the sweep path, step by step, and the file that holds each step:

1. file: ``ablations/sweep_file.py`` reads and checks the sweep file (:func:`load_sweep`: W&B's schema, metric,
   parameters, stage-2 settings, a search's run_cap, seed and pruner).
2. cells: ``ablations/sweep_file.py`` expands it into cells (grid, ablation; a search's trial by :func:`search_cell`),
   each named from its axes and identified by its resolved config's hash (:func:`cell_config`).
3. ledger: ``ablations/ledger.py`` keeps the Optuna study: :func:`prepare` creates it and enqueues every cell once;
   claims under a lock, heartbeats, re-enqueued dead cells; :func:`summarize` and :func:`format_summary` read it back.
4. worker: ``ablations/runner.py`` starts the worker processes (:func:`run_sweep`); each :func:`work` claims cells
   from the ledger and records how each ended.
5. run: ``ablations/runner.py``'s :func:`train_cell` trains a cell's run with ``core/trainer.py``'s ``train``.
6. record: ``core/tracking.py``'s ``Tracker`` writes the run folder (config.yaml, metrics.jsonl, summary.json,
   frames); ``core/records.py`` reads it back (``read_run``).
7. row: ``analysis/collect.py`` turns each run record into one table row.

Optuna is imported lazily and only under ``ablations/`` (``core/`` knows nothing of it); importing this module imports
neither Optuna nor torch.
"""

from ablations.ledger import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    MAX_RETRY,
    CellStatus,
    Ledger,
    Summary,
    default_storage,
    format_summary,
    prepare,
    summarize,
)
from ablations.runner import CellFailed, Objective, Report, parse_gpus, run_sweep, train_cell, visible_gpus, work
from ablations.sweep_file import (
    CELL_METHODS,
    CELL_THREADS,
    METHODS,
    OWN_PARAMETERS,
    SEARCH_METHODS,
    TOP_LEVEL_KEYS,
    Cell,
    Parameter,
    Sweep,
    SweepError,
    agent_command,
    cell_config,
    cell_name,
    expand_ablation,
    expand_grid,
    load_sweep,
    metric_names,
    search_cell,
    stage1_checkpoint,
)

__all__ = [
    "CELL_METHODS",
    "CELL_THREADS",
    "GRACE_PERIOD_S",
    "HEARTBEAT_INTERVAL_S",
    "MAX_RETRY",
    "METHODS",
    "OWN_PARAMETERS",
    "SEARCH_METHODS",
    "TOP_LEVEL_KEYS",
    "Cell",
    "CellFailed",
    "CellStatus",
    "Ledger",
    "Objective",
    "Parameter",
    "Report",
    "Summary",
    "Sweep",
    "SweepError",
    "agent_command",
    "cell_config",
    "cell_name",
    "default_storage",
    "expand_ablation",
    "expand_grid",
    "format_summary",
    "load_sweep",
    "metric_names",
    "parse_gpus",
    "prepare",
    "run_sweep",
    "search_cell",
    "stage1_checkpoint",
    "summarize",
    "train_cell",
    "visible_gpus",
    "work",
]
