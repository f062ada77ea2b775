"""Workers sharing one sweep through PostgreSQL, as workers on several machines do: every cell runs exactly once.

Starts a throwaway PostgreSQL server (Debian's `postgresql`, which .ci/run installs) on 127.0.0.1 in a temporary
folder. On a developer machine without PostgreSQL the test skips with the reason; under CI=true it must run.
"""

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
import sweep_fakes
from test_sweep import FAST, call_counts, write_search, write_sweep

import ablations.ledger as ledger_module
from ablations.sweep import Ledger, load_sweep, run_sweep


def _server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A throwaway PostgreSQL server: its URL, and stop/start for outage tests."""

    def __init__(self, binaries: Path, data: Path, port: int, as_postgres: list[str]) -> None:
        self.binaries, self.data, self.port, self.as_postgres = binaries, data, port, as_postgres
        self.url = f"postgresql://postgres@127.0.0.1:{port}/sweeps"

    def run(self, *command: str) -> None:
        done = subprocess.run([*self.as_postgres, *command], capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data}"
        self.run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-l", str(self.data / "log"), "-o", options,
                 "-w", "start")  # fmt: skip

    def stop(self, mode: str = "immediate") -> None:
        self.run(str(self.binaries / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def postgres_url(postgres_server):
    return postgres_server.url


@pytest.fixture
def postgres_server(tmp_path):
    binaries = _server_binaries()
    if binaries is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed; .ci/run should have installed Debian's postgresql")
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail("psycopg is missing from the environment (requirements.txt pins psycopg[binary])")
    # PostgreSQL refuses to run as root: as root, the server runs as the postgres user in a folder it owns.
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # Not under tmp_path: pytest's folders are private to root, and the server's user must reach its data folder.
    data = Path(tempfile.mkdtemp(prefix="mentalsim-pg-"))
    if as_postgres:
        shutil.chown(data, "postgres", "postgres")
    server = Server(binaries, data, _free_port(), as_postgres)
    server.run(str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    server.start()
    try:
        server.run(str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "sweeps")
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped by a test that failed mid-outage
            server.stop()
        shutil.rmtree(data, ignore_errors=True)


def test_two_workers_share_one_sweep_through_postgresql(tmp_path, postgres_url, calls):
    sweep = load_sweep(write_sweep(tmp_path))
    summary = run_sweep(sweep, workers=2, storage=postgres_url, objective=sweep_fakes.count_calls, **FAST)
    assert call_counts(calls) == {cell.id: 1 for cell in sweep.cells}
    assert (summary.done, summary.failed, summary.left) == (len(sweep.cells), 0, 0)
    assert not (tmp_path / "runs/grid/study.db").exists()  # the ledger is the server's
    again = run_sweep(load_sweep(write_sweep(tmp_path)), workers=2, storage=postgres_url,
                      objective=sweep_fakes.count_calls, **FAST)  # fmt: skip
    assert again.done == len(sweep.cells) and sum(call_counts(calls).values()) == len(sweep.cells)


def test_a_search_over_postgresql_keeps_to_run_cap(tmp_path, postgres_url, calls):
    # Three workers race for the last slots: the count-then-ask runs under the ledger's advisory lock.
    sweep = load_sweep(write_search(tmp_path, run_cap=5))
    summary = run_sweep(sweep, workers=3, storage=postgres_url, objective=sweep_fakes.count_calls, **FAST)
    assert sum(call_counts(calls).values()) == 5 and len(summary.cells) == 5
    assert (summary.done, summary.failed, summary.left) == (5, 0, 0)


def test_the_ledger_lock_excludes_other_sessions(postgres_url):
    ledger = Ledger(postgres_url, "locked", **FAST)
    events = []

    def contender() -> None:
        with ledger_module._exclusive(ledger):
            events.append("contender in")

    with ledger_module._exclusive(ledger):
        thread = threading.Thread(target=contender)
        thread.start()
        time.sleep(0.5)
        events.append("holder out")
    thread.join(timeout=10)
    assert events == ["holder out", "contender in"]
    other = Ledger(postgres_url, "another study", **FAST)  # a lock per study: others are not held up
    with ledger_module._exclusive(ledger), ledger_module._exclusive(other):
        pass


def test_workers_ride_out_a_postgresql_restart_and_run_every_cell_once(tmp_path, postgres_server, calls, monkeypatch):
    """The ledger's server stops mid-sweep (kill -9 of its processes: an immediate shutdown) and comes back 6 s later:
    the workers wait it out and every cell still runs exactly once."""
    sweep = load_sweep(write_sweep(tmp_path))
    monkeypatch.setenv("SWEEP_SLOW_S", "1")  # each cell takes a second: the outage falls mid-cell
    outage = {}

    def restart() -> None:
        while not call_counts(calls, "started"):
            time.sleep(0.05)
        postgres_server.stop("immediate")
        outage["down"] = time.monotonic()
        time.sleep(6)
        postgres_server.start()
        outage["up"] = time.monotonic()

    thread = threading.Thread(target=restart)
    thread.start()
    summary = run_sweep(sweep, workers=2, storage=postgres_server.url, objective=sweep_fakes.slow_silent, **FAST)
    thread.join()
    assert outage["up"] - outage["down"] >= 6
    assert call_counts(calls) == {cell.id: 1 for cell in sweep.cells}
    assert (summary.done, summary.failed, summary.left) == (len(sweep.cells), 0, 0)


@pytest.mark.parametrize("kind", ["grid", "search"])
def test_evaluations_and_cell_ends_inside_a_ledger_outage_lose_no_cell(tmp_path, postgres_server, calls, monkeypatch,
                                                                      kind):  # fmt: skip
    """Every write to the ledger waits out an outage: a grid's recorded validations, a search's reports to its pruner
    (and its should-prune reads) and each cell's end fall inside an 8 s outage (OUTAGE_S=40 for the issue's 40 s), and
    every cell still ends done (or pruned by its pruner), exactly once, none failed for a reason that is not its own."""
    sweep = load_sweep(write_sweep(tmp_path) if kind == "grid" else write_search(tmp_path, run_cap=4))
    monkeypatch.setenv("SWEEP_SLOW_S", "1")  # a validation every second, 3 per cell
    outage = {}

    def restart() -> None:
        while not call_counts(calls, "started"):
            time.sleep(0.05)
        time.sleep(0.5)  # mid-cell: its next validation, and another cell's end, fall inside the outage
        postgres_server.stop("immediate")
        outage["down"] = time.monotonic()
        time.sleep(seconds)
        postgres_server.start()
        outage["up"] = time.monotonic()

    seconds = float(os.environ.get("OUTAGE_S", "8"))
    thread = threading.Thread(target=restart)
    thread.start()
    summary = run_sweep(sweep, workers=2, storage=postgres_server.url, objective=sweep_fakes.slow_reports, **FAST)
    thread.join()
    assert outage["up"] - outage["down"] >= seconds
    statuses = {status.cell.id: (status.status, status.reason) for status in summary.cells}
    assert summary.failed == 0 and summary.left == 0, statuses
    assert all(status in ("done", "pruned") for status, _ in statuses.values()), statuses
    started, ended = call_counts(calls, "started"), call_counts(calls)
    assert set(started.values()) == {1}  # no cell ran twice
    assert sum(ended.values()) + sum(call_counts(calls, "pruned").values()) == len(statuses)
    if kind == "grid":
        assert set(started) == {cell.id for cell in sweep.cells} and summary.done == len(sweep.cells)
