"""The whole-sweep progress display: steps and cells read from the ledger and the run folders, a bar on a terminal,
plain lines in a log file."""

import io
import json
import re
from pathlib import Path

import sweep_fakes
from test_sweep import FAST, write_sweep

import ablations.progress as progress_module
from ablations.ledger import CellStatus, Summary
from ablations.progress import LinesOverBar, SweepProgress, last_step
from ablations.sweep import load_sweep, run_sweep

DEMO_STEPS = 300  # the demo profile's train.steps: every cell of write_sweep's grid plans this many


def write_rows(run_dir: str, *steps: int, cut_off: bool = False) -> None:
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    rows = "".join(json.dumps({"step": step, "train/loss": 0.1}) + "\n" for step in steps)
    Path(run_dir, "metrics.jsonl").write_text(rows + ('{"step": 999, "train/lo' if cut_off else ""))


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_last_step_reads_the_last_complete_row(tmp_path):
    assert last_step(tmp_path / "not-started") == 0
    write_rows(str(tmp_path), 10, 20, 30, cut_off=True)  # a row being written is not counted
    assert last_step(tmp_path) == 30


def test_steps_count_what_each_cell_did_and_will_do(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path))
    cells = sweep.cells
    states = ["done", "running", "pruned", "failed", "waiting", "waiting", "waiting", "waiting"]
    for cell, steps in zip(cells[:4], [(100, 200, 300), (50, 120), (100,), (10, 20)], strict=True):
        write_rows(cell.run_dir, *steps)
    summary = Summary(sweep, [CellStatus(cell, state) for cell, state in zip(cells, states, strict=True)])
    snap = SweepProgress(sweep, ledger=None).snapshot(summary)
    # done: all 300; running: 120 of 300; pruned and failed: what they reached, and their rest leaves the total
    assert snap.steps_done == 300 + 120 + 100 + 20
    assert snap.steps_total == 300 + 300 + 100 + 20 + 4 * 300
    assert (snap.done, snap.running, snap.failed, snap.pruned, snap.waiting) == (1, 1, 1, 1, 4)


def test_a_log_file_gets_plain_lines_only_when_something_moved(tmp_path, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path))
    states = {"now": ["running"] + ["waiting"] * 7}
    monkeypatch.setattr(
        progress_module,
        "summarize",
        lambda sweep, ledger: Summary(
            sweep, [CellStatus(cell, state) for cell, state in zip(sweep.cells, states["now"], strict=True)]
        ),
    )
    log = io.StringIO()
    display = SweepProgress(sweep, ledger=None, stream=log, log_every_s=3600)
    write_rows(sweep.cells[0].run_dir, 100)
    display.poll()
    assert display.poll() is None  # within log_every_s: nothing read, nothing written
    display.poll(force=True)  # nothing moved: no second line
    write_rows(sweep.cells[0].run_dir, 100, 200)
    display._started -= 10  # as if 10 s had passed: 100 steps in 10 s
    display.poll(force=True)
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in log.getvalue()
    assert lines[0] == "sweep grid: 100/2400 steps (4%); cells: 1 running, 0 done, 0 failed, 0 pruned, 7 waiting"
    speed = re.match(r"sweep grid: 200/2400 steps \(8%\), ([\d.]+) it/s, ETA (\d) min; cells: 1 running", lines[1])
    assert speed and 5 < float(speed[1]) <= 10 and 3 <= int(speed[2]) <= 8  # 100 steps in a little over 10 s


def test_cells_reused_from_another_sweep_count_as_done_but_not_toward_the_speed(tmp_path, monkeypatch):
    """A reused cell's 300 steps arrive in a moment: counted done, never as training speed (the search's ETA once
    said 40 s 2.5 minutes before its end); the terminal's bar counts only the steps there are to train."""
    sweep = load_sweep(write_sweep(tmp_path))
    states = {"now": ["running"] + ["waiting"] * 7}
    monkeypatch.setattr(progress_module, "summarize", lambda sweep, ledger: Summary(
        sweep, [CellStatus(cell, state) for cell, state in zip(sweep.cells, states["now"], strict=True)]))  # fmt: skip
    log = io.StringIO()
    display = SweepProgress(sweep, ledger=None, stream=log, log_every_s=3600)
    write_rows(sweep.cells[0].run_dir, 100)
    display.poll(force=True)
    reused = sweep.cells[1]
    write_rows(reused.run_dir, 100, 200, 300)
    Path(reused.run_dir, "summary.json").write_text(json.dumps({"status": "finished", "reused_from": "runs/grid/x"}))
    states["now"] = ["running", "done"] + ["waiting"] * 6
    write_rows(sweep.cells[0].run_dir, 100, 200)
    display._started -= 10  # 100 steps trained in 10 s, and 300 copied
    snap = display.poll(force=True)
    assert (snap.steps_done, snap.steps_reused) == (200 + 300, 300)
    assert 5 < display.rate(snap, 10) <= 10  # the trained 100 steps alone
    assert re.search(r"500/2400 steps \(21%\), [\d.]+ it/s, ETA \d min", log.getvalue().splitlines()[-1])

    terminal = Terminal()
    bar = SweepProgress(sweep, ledger=None, stream=terminal)
    bar.poll(force=True)
    bar.close()
    assert "200/2100" in terminal.getvalue() and "300 steps reused" in terminal.getvalue()


def test_a_sweep_without_training_steps_shows_its_cells_alone(tmp_path, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path, **{"train.steps": {"value": 0}}))
    monkeypatch.setattr(progress_module, "summarize", lambda sweep, ledger: Summary(
        sweep, [CellStatus(cell, "waiting") for cell in sweep.cells]))  # fmt: skip
    log = io.StringIO()
    SweepProgress(sweep, ledger=None, stream=log).poll()
    assert log.getvalue() == "sweep grid: cells: 0 running, 0 done, 0 failed, 0 pruned, 8 waiting\n"


def test_a_terminal_gets_one_bar_redrawn_in_place(tmp_path, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path))
    monkeypatch.setattr(
        progress_module,
        "summarize",
        lambda sweep, ledger: Summary(
            sweep, [CellStatus(cell, "done" if i < 2 else "running") for i, cell in enumerate(sweep.cells)]
        ),
    )
    terminal = Terminal()
    display = SweepProgress(sweep, ledger=None, stream=terminal)
    display.poll(force=True)
    display.close()
    out = terminal.getvalue()
    assert "\r" in out and "sweep grid" in out and "600/2400" in out and "6 running, 2 done" in out


def test_a_sweep_with_two_workers_ends_with_its_whole_progress(tmp_path, calls, capfd):
    sweep = load_sweep(write_sweep(tmp_path))
    run_sweep(sweep, workers=2, objective=sweep_fakes.log_steps, **FAST)
    out = capfd.readouterr().out
    assert "sweep grid: 2400/2400 steps (100%)" in out and "cells: 0 running, 8 done, 0 failed, 0 pruned" in out


def test_a_workers_lines_on_a_terminal_clear_the_bars_line_first():
    """On a terminal the parent's bar sits on the last line, unterminated; a worker's line must not land inside it."""
    terminal = Terminal()
    out = LinesOverBar(terminal)
    assert out.write("claiming a cell\nworker 0: ") == len("claiming a cell\nworker 0: ")
    out.write("val/mse 12\n")
    out.flush()
    clear = "\r\x1b[2K"
    assert terminal.getvalue() == f"{clear}claiming a cell\n{clear}worker 0: val/mse 12\n" and out.isatty()
