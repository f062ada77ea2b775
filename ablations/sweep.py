"""Sweeps: a YAML file in W&B's sweep schema, expanded into cells and run by workers over an Optuna ledger.

This module only gathers the sweep's public names. A cell from the sweep file to its row, step by step, with the file
and function of each:

1. file: ``ablations/sweep_file.py``'s :func:`load_sweep` reads and checks the sweep file (W&B's schema, metric,
   stage-2 settings, a search's run_cap, seed and pruner); each parameter by ``ablations/parameters.py``'s
   ``parse_parameter``, a SLURM setting by ``ablations/slurm_settings.py``.
2. cells: ``expand_grid`` or ``expand_ablation`` give each cell's parameters; ``_make_cell`` resolves its config once
   (``core/variants.py``'s ``load_variant``), names it from its axes (:func:`cell_name`) and identifies it by the
   config's hash (``core/config.py``'s ``config_hash``): a :class:`Cell` carries its typed config as ``cell.config``.
   A search's trials become cells as they are sampled (:func:`search_cell`).
3. launch: ``ablations/runner.py``'s :func:`launch`, the one sequence for every launcher (:class:`LocalLauncher`,
   ``ablations/slurm.py``'s ``SlurmLauncher``): stage 1 first if needed, then ``ablations/ledger.py``'s :func:`prepare`
   creates the Optuna study and enqueues every cell once (its axes as parameters by ``ablations/search_space.py``).
4. worker: each worker runs :func:`work`: ``session.claim()`` (a :class:`LedgerSession` from ``Ledger.open``), then
   ``with session.beating(claim)`` (``ablations/heartbeat.py``) the objective, then ``session.record(claim, outcome)``.
5. run: :func:`train_cell` refuses a cell whose files now resolve elsewhere (:func:`stale_cell`), then trains
   ``cell.config`` in ``cell.run_dir`` with ``core/trainer.py``'s ``train``.
6. record: ``core/tracking.py``'s ``Tracker`` writes the run folder (config.yaml, metrics.jsonl, summary.json,
   frames); ``core/records.py`` reads it back (``read_run``).
7. row: ``analysis/collect.py`` turns each run record into one table row.

Optuna is imported lazily and only by ``ablations/ledger.py`` and ``ablations/search_space.py``; importing this module
imports neither Optuna nor torch.
"""

from ablations.ledger import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    MAX_RETRY,
    Claim,
    Ledger,
    LedgerSession,
    Outcome,
    default_storage,
    prepare,
    summarize,
)
from ablations.parameters import CELL_METHODS, METHODS, SEARCH_METHODS, Parameter, SweepError, metric_names
from ablations.runner import (
    CellFailed,
    LocalLauncher,
    Objective,
    Report,
    launch,
    parse_gpus,
    run_sweep,
    train_cell,
    visible_gpus,
    work,
)
from ablations.summary import CellStatus, Summary, format_summary
from ablations.sweep_file import (
    CELL_THREADS,
    OWN_PARAMETERS,
    TOP_LEVEL_KEYS,
    Cell,
    Sweep,
    agent_command,
    cell_name,
    expand_ablation,
    expand_grid,
    load_sweep,
    search_cell,
    stage1_checkpoint,
    stale_cell,
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
    "Claim",
    "Ledger",
    "LedgerSession",
    "LocalLauncher",
    "Objective",
    "Outcome",
    "Parameter",
    "Report",
    "Summary",
    "Sweep",
    "SweepError",
    "agent_command",
    "cell_name",
    "default_storage",
    "expand_ablation",
    "expand_grid",
    "format_summary",
    "launch",
    "load_sweep",
    "metric_names",
    "parse_gpus",
    "prepare",
    "run_sweep",
    "search_cell",
    "stage1_checkpoint",
    "stale_cell",
    "summarize",
    "train_cell",
    "visible_gpus",
    "work",
]
