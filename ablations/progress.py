"""One progress display for a whole sweep, across its cells and workers: steps done, it/s, ETA, and the cells
running, done, failed and pruned.

The parent process of :func:`ablations.runner.launch` polls it while its workers train. It reads what is already
written: each cell's state from the ledger (:func:`ablations.ledger.summarize`) and each cell's training step from
its run folder (the last row of ``metrics.jsonl``), so workers report nothing extra and a worker on another machine
counts as well. On a terminal it is a tqdm bar redrawn in place. In a log file (output not a terminal) it is a plain
line at most every ``log_every_s`` seconds, and only when something moved, so a log never fills with carriage returns.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ablations.ledger import Ledger, summarize
from ablations.summary import Summary
from ablations.sweep_file import Cell, Sweep

TERMINAL_EVERY_S = 2.0  # how often the bar on a terminal is redrawn
LOG_EVERY_S = 60.0  # at most one line a minute in a log file
_TAIL_BYTES = 4096  # enough for the last few rows of metrics.jsonl


@dataclass(frozen=True)
class Snapshot:
    """Where the sweep stands: steps done of the planned total, and the cells by state."""

    steps_done: int
    steps_total: int
    done: int
    running: int
    failed: int
    pruned: int
    waiting: int
    steps_reused: int = 0  # of steps_done, those of cells copied from another sweep's finished run: no training speed

    def counts(self) -> str:
        return (f"{self.running} running, {self.done} done, {self.failed} failed, {self.pruned} pruned, "
                f"{self.waiting} waiting")  # fmt: skip


def last_step(run_dir: str | Path) -> int:
    """The step of the last complete row of a run folder's metrics.jsonl; 0 when it has none yet."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - _TAIL_BYTES))
            lines = handle.read().split(b"\n")
    except OSError:
        return 0
    for line in reversed(lines[:-1]):  # the piece after the last newline is a row still being written
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return 0


class SweepProgress:
    """Polled by the sweep's parent (:meth:`poll`); ``close`` writes the final state."""

    def __init__(self, sweep: Sweep, ledger: Ledger, stream: IO[str] | None = None,
                 log_every_s: float = LOG_EVERY_S) -> None:  # fmt: skip
        self.sweep, self.ledger = sweep, ledger
        self.stream = stream if stream is not None else sys.stdout
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = TERMINAL_EVERY_S if self.terminal else log_every_s
        self._steps: dict[str, int] = {}  # cell id -> planned training steps (its config's train.steps)
        self._copied: dict[str, bool] = {}  # done cell id -> whether its run was reused from another sweep
        self._started = time.monotonic()
        self._start_steps: int | None = None  # steps already done when this display began: not this session's speed
        self._last_poll = -math.inf
        self._last_line: tuple | None = None
        self._bar = None

    def snapshot(self, summary: Summary) -> Snapshot:
        """Steps and cell counts from a ledger summary and the run folders. A finished cell counts all its planned
        steps; a pruned or failed one the steps it reached, and no more (its rest will never run). A search's trials
        not sampled yet count the steps of the trials known so far."""
        done = total = reused = 0
        for status in summary.cells:
            planned = self._planned(status.cell)
            reached = planned if status.status == "done" else min(last_step(status.cell.run_dir), planned)
            done += reached
            reused += reached if status.status == "done" and self._reused(status.cell) else 0
            total += planned if status.status in ("done", "running", "waiting", "interrupted") else reached
        unsampled = max(0, summary.sweep.planned - len(summary.cells))
        if unsampled and self._steps:
            total += unsampled * round(sum(self._steps.values()) / len(self._steps))
        return Snapshot(done, total, summary.done, summary.count("running"), summary.failed, summary.pruned,
                        summary.count("waiting", "interrupted") + unsampled, reused)  # fmt: skip

    def poll(self, force: bool = False) -> Snapshot | None:
        """Read the ledger and the run folders and show where the sweep stands, unless it was shown less than
        ``every_s`` ago; None when nothing was read (too soon, or the ledger did not answer: the next poll tries)."""
        now = time.monotonic()
        if not force and now - self._last_poll < self.every_s:
            return None
        self._last_poll = now
        try:
            snap = self.snapshot(summarize(self.sweep, self.ledger))
        except Exception:  # an unreachable ledger: the workers say so themselves; the display waits
            return None
        if self._start_steps is None:
            self._start_steps = snap.steps_done - snap.steps_reused
        self._show(snap, now - self._started)
        return snap

    def close(self) -> None:
        self.poll(force=True)
        if self._bar is not None:
            self._bar.close()

    def rate(self, snap: Snapshot, elapsed_s: float) -> float | None:
        """Steps a second trained since this display began (all workers together), not counting cells reused from
        another sweep (copied in a moment, they would promise an ETA far too soon); None before there is one."""
        gained = snap.steps_done - snap.steps_reused - (self._start_steps or 0)
        return gained / elapsed_s if gained > 0 and elapsed_s > 0 else None

    def line(self, snap: Snapshot, elapsed_s: float) -> str:
        """``sweep NAME: 1234/4000 steps (31%), 2.10 it/s, ETA 22 min; cells: 2 running, 3 done, ...`` (the cells alone
        while no steps are planned: checkpoints scored as they are, a search before its first trial)."""
        rate = self.rate(snap, elapsed_s)
        share = f" ({100 * snap.steps_done / snap.steps_total:.0f}%)" if snap.steps_total else ""
        speed = f", {rate:.2f} it/s, ETA {_duration((snap.steps_total - snap.steps_done) / rate)}" if rate else ""
        steps = f"{snap.steps_done}/{snap.steps_total} steps{share}{speed}; " if snap.steps_total else ""
        return f"sweep {self.sweep.name}: {steps}cells: {snap.counts()}"

    def _show(self, snap: Snapshot, elapsed_s: float) -> None:
        if self.terminal:
            # The bar counts the steps there are to train: reused cells' steps, copied at once, would skew its rate.
            trained, to_train = snap.steps_done - snap.steps_reused, snap.steps_total - snap.steps_reused
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=to_train, initial=trained, desc=f"sweep {self.sweep.name}", unit="step",
                                 file=self.stream, dynamic_ncols=True)  # fmt: skip
            self._bar.total = to_train
            self._bar.n = trained
            reused = f"; {snap.steps_reused} steps reused" if snap.steps_reused else ""
            self._bar.set_postfix_str(snap.counts() + reused, refresh=False)
            self._bar.refresh()
            return
        state = (snap.steps_done, snap.steps_total, snap.done, snap.running, snap.failed, snap.pruned)
        if state != self._last_line:  # a quiet minute writes nothing
            self._last_line = state
            print(self.line(snap, elapsed_s), file=self.stream, flush=True)

    def _reused(self, cell: Cell) -> bool:
        """Whether a done cell's run was copied from another sweep's (its summary says ``reused_from``)."""
        if cell.id not in self._copied:
            try:
                record = json.loads((Path(cell.run_dir) / "summary.json").read_text())
            except (OSError, ValueError):
                return False  # not readable yet: asked again at the next poll
            self._copied[cell.id] = bool(record.get("reused_from"))
        return self._copied[cell.id]

    def _planned(self, cell: Cell) -> int:
        self._steps.setdefault(cell.id, cell.config.train.steps)
        return self._steps[cell.id]


class LinesOverBar:
    """A worker's stdout on the terminal where the sweep's parent redraws its progress bar, on the last line, without
    a newline: each line the worker writes first clears that line, so it never lands inside the bar (which the parent
    redraws below it within 2 s)."""

    CLEAR = "\r\x1b[2K"

    def __init__(self, stream) -> None:
        self._stream, self._line_start = stream, True

    def write(self, text: str) -> int:
        pieces = []
        for piece in text.splitlines(keepends=True):
            pieces.append((self.CLEAR if self._line_start else "") + piece)
            self._line_start = piece.endswith("\n")
        self._stream.write("".join(pieces))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
