"""Where a sweep stands, as its ledger says (:func:`ablations.ledger.summarize` builds it): each cell's status, metric
and tries, and the lines a sweep prints: the start, a finished cell's progress, the end-of-sweep table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ablations.parameters import SEARCH_METHODS
from ablations.sweep_file import Cell, Sweep


@dataclass
class CellStatus:
    cell: Cell
    status: str  # done | failed | diverged | pruned | running | waiting | interrupted
    value: float | None = None
    reason: str = ""
    trials: int = 0  # trials this cell has had (more than one after a retry)


@dataclass
class Summary:
    sweep: Sweep
    cells: list[CellStatus]

    def count(self, *statuses: str) -> int:
        return sum(c.status in statuses for c in self.cells)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def failed(self) -> int:
        return self.count("failed", "diverged")

    @property
    def pruned(self) -> int:
        return self.count("pruned")

    @property
    def left(self) -> int:
        """Cells (a search: trials up to run_cap) not yet done, failed or pruned: waiting, running or not started."""
        return max(len(self.cells), self.sweep.planned) - self.done - self.failed - self.pruned

    @property
    def best(self) -> CellStatus | None:
        finished = [c for c in self.cells if c.status == "done" and c.value is not None]
        sign = 1 if self.sweep.goal == "minimize" else -1
        return min(finished, key=lambda c: sign * c.value) if finished else None


def format_start(summary: Summary, url: str, workers: str) -> str:
    """The line a sweep starts with: what it is, where it stands, who runs it (``2 workers``, ``8 SLURM jobs``)."""
    sweep = summary.sweep
    what = f"a {sweep.method} search of {sweep.planned} trials" if sweep.method in SEARCH_METHODS else (
        f"{len(sweep.cells)} cells")  # fmt: skip
    return (f"{sweep.name}: {what}, {summary.done} done, {summary.failed} failed, {summary.pruned} pruned, "
            f"{summary.left} to run; {workers}; ledger {url}")  # fmt: skip


def format_summary(summary: Summary) -> str:
    """The end-of-sweep table: every cell, its status and metric, then the counts and the best cell."""
    sweep = summary.sweep
    width = max([len("cell"), *(len(c.cell.name) for c in summary.cells)])
    lines = [f"{'cell':<{width}}  {'status':<11}{sweep.metric:>12}  tries  reason"]
    for c in summary.cells:
        value = f"{c.value:.6g}" if c.value is not None else "-"
        lines.append(f"{c.cell.name:<{width}}  {c.status:<11}{value:>12}  {c.trials:>5}  {c.reason}".rstrip())
    lines.append(f"{sweep.name}: {_counts(summary)}")
    best = summary.best
    if best is not None:
        lines.append(f"best ({sweep.goal} {sweep.metric}): {best.cell.name} {best.value:.6g}  {best.cell.run_dir}")
    return "\n".join(lines)


def _counts(summary: Summary) -> str:
    search = summary.sweep.method in SEARCH_METHODS
    pruned = f"{summary.pruned} pruned, " if search else ""
    total = f"{summary.sweep.planned} trials" if search else f"{len(summary.cells)} cells"
    return f"{summary.done} done, {pruned}{summary.failed} failed, {summary.left} left of {total}"


def progress_line(summary: Summary) -> str:
    """The head of a finished cell's line: ``[3/8 done, 2 running, 0 failed, 3 left; best so far <cell> <value>]``."""
    best = summary.best
    best_text = f"; best so far {best.cell.name} {best.value:.6g}" if best is not None else ""
    pruned = f"{summary.pruned} pruned, " if summary.sweep.method in SEARCH_METHODS else ""
    return (f"[{summary.done}/{summary.sweep.planned} done, {summary.count('running')} running, {pruned}"
            f"{summary.failed} failed, {summary.left} left{best_text}]")  # fmt: skip
