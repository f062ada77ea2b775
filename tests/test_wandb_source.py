"""analysis.wandb_source: rows from W&B equal the local record's rows.

Real offline W&B runs are written once per module by the real tracker (offline mode, ~0.2 s each); the public API,
which needs a server, is driven by a stand-in built from those runs' real transaction logs.
"""

import math
import os
from pathlib import Path

import pandas as pd
import pytest

from analysis.collect import COLUMNS, collect
from analysis.wandb_source import collect_wandb, collect_wandb_offline
from core.config import config_hash, load
from core.tracking import Tracker, read_offline_run

wandb = pytest.importorskip("wandb")

MNIST_TEST = "generated Moving MNIST test set (test digits, seed 1, 2000 sequences)"
BASELINES = {
    "copy_last_frame": {"mse": 160.5, "mae": 300.25, "psnr": 14.5, "ssim": 0.61},
    "blank": {"mse": 110.0, "mae": 250.0, "psnr": 15.25, "ssim": 0.42},
}
SCORES = {"mse": 50.0, "mae": 100.0, "psnr": 20.0, "ssim": 0.8}
SECRET = "secret-key-0123456789"

# Columns that differ by design between the sources: W&B's clock, and the local config file.
NOT_COMPARED = ("started", "updated", "run_time_s", "config_path", "command")


def _record(root: Path, name: str, overrides: tuple[str, ...], status: str, mode: str = "offline") -> Path:
    """A run as the trainer leaves it, mirrored to W&B: loss rows, validation at step 20, then the end ``status``."""
    cfg = load(None, ["--variant=test_variant", *overrides])
    run_dir = root / name
    try:
        with Tracker(run_dir, cfg, mode=mode) as tracker:
            tracker.summary("running", test_set=MNIST_TEST)
            tracker.log({"train/loss": 0.9, "train/loss_l1": 0.45}, step=10)
            tracker.log({"train/loss": 0.5, "train/loss_l1": 0.25}, step=20)
            tracker.log({"val/mse": 61.0, "val/mse_by_frame": [60.0, 62.0]}, step=20)  # same step, another call
            if status == "finished":
                metrics = {f"test/{k}": v for k, v in SCORES.items()}
                metrics |= {f"test/{k}_by_frame": [v * 0.9, v * 1.1] for k, v in SCORES.items()}
                metrics |= {"test/num_sequences": 2000, "test/ssim_convention": "ours"}
                tracker.log(metrics, step=20)
                tracker.summary(
                    "finished", metrics=metrics, baselines=BASELINES, test_set=MNIST_TEST, step=20, best_val_mse=61.0
                )
            elif status == "failed":
                tracker.log({"train/eta": 0.5}, step=25)  # the last step: neither a loss nor a val/mse
                raise RuntimeError("out of memory")
            else:
                tracker.log({"train/loss": math.nan}, step=30)
                tracker.summary(status, reason="loss became nan by step 30", step=30)
    except RuntimeError:
        pass
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Runs of two sweeps (W&B groups) written offline: finished, diverged, failed; and one with W&B disabled."""
    home = tmp_path_factory.mktemp("wandb_home")
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        # Restored afterwards; the tracker sets the mode variables itself.
        for name, value in (
            ("WANDB_MODE", "offline"),
            ("WANDB_ERROR_REPORTING", "false"),
            ("WANDB_SILENT", "true"),
            ("WANDB_CONSOLE", "off"),
        ):
            patch.setenv(name, value)
        for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
            patch.setenv(name, str(home / name.lower()))
        patch.chdir(home)
        try:
            _record(root, "e3d_seed0", ("--tracking.group=sweep-a",), "finished")
            _record(root, "e2d_seed0", ("--tracking.group=sweep-a", "--model.conv=2d"), "diverged")
            _record(root, "res_seed0", ("--tracking.group=sweep-b", "--model.residual=true"), "failed")
            _record(root, "l1_seed1", ("--tracking.group=sweep-b", "--loss.l1_weight=1", "--train.seed=1"), "finished")
            _record(root, "local_only", (), "finished", mode="disabled")
        finally:
            wandb.teardown()
    return root


def _compared(frame: pd.DataFrame, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    return frame.set_index("run_name").sort_index().drop(columns=[*NOT_COMPARED, *drop])


# ---------------------------------------------------------------------------------------------------------------------
# Offline transaction logs


def test_offline_logs_give_the_rows_of_the_local_record(runs):
    local = collect(runs)
    offline = collect_wandb_offline(runs)
    assert list(offline.columns) == list(COLUMNS)
    assert sorted(offline["run_name"]) == ["e2d_seed0", "e3d_seed0", "l1_seed1", "res_seed0"]  # not local_only
    local = local[local["run_name"] != "local_only"]
    expected = _compared(local)
    pd.testing.assert_frame_equal(_compared(offline), expected, check_dtype=False)

    rows = offline.set_index("run_name")
    finished = rows.loc["e3d_seed0"]
    assert (finished["status"], finished["conv"], finished["seed"]) == ("finished", "3d", 0)
    assert (finished["mse"], finished["ssim"], finished["num_sequences"]) == (50.0, 0.8, 2000)
    assert finished["mse_by_frame"] == pytest.approx([45.0, 55.0])
    assert finished["loss_history"] == [(10, 0.9), (20, 0.5)] and finished["val_history"] == [(20, 61.0)]
    assert (finished["blank_mse"], finished["copy_last_frame_ssim"], finished["test_set"]) == (110.0, 0.61, MNIST_TEST)
    assert finished["run_dir"] == str(runs / "e3d_seed0") and finished["url"] is None
    assert finished["run_time_s"] >= 0 and finished["started"] <= finished["updated"]
    diverged = rows.loc["e2d_seed0"]
    assert (diverged["status"], diverged["step"], diverged["conv"]) == ("diverged", 30, "2d")
    assert diverged["status_reason"] == "loss became nan by step 30" and math.isnan(diverged["loss_history"][-1][1])
    failed = rows.loc["res_seed0"]
    assert (failed["status"], failed["step"], failed["residual"]) == ("failed", 25, True)


def test_wandb_holds_the_error_of_a_failed_run(runs):
    rows = collect_wandb_offline(runs).set_index("run_name")
    assert "out of memory" in (rows.loc["res_seed0", "status_reason"] or "")


def test_offline_configs_are_written_loadable(runs, tmp_path):
    frame = collect_wandb_offline(runs, config_dir=tmp_path / "configs").set_index("run_name")
    for name, row in frame.iterrows():
        assert row["config_path"] == str(tmp_path / "configs" / f"{name}.yaml")
        assert row["command"] == f"python launch.py train {row['config_path']}"
        assert config_hash(load(row["config_path"])) == row["config_hash"]


def test_a_broken_log_is_unreadable_and_a_folder_without_logs_an_error(runs, tmp_path):
    (log,) = (runs / "e3d_seed0" / "wandb").rglob("*.wandb")
    broken = tmp_path / "runs" / "broken" / log.relative_to(runs / "e3d_seed0")
    broken.parent.mkdir(parents=True)
    (tmp_path / "runs" / "broken" / "summary.json").write_text("{}")
    broken.write_bytes(b"XXXX" + log.read_bytes()[4:])
    row = collect_wandb_offline(tmp_path / "runs").iloc[0]
    assert row["status"] == "unreadable" and "not a W&B transaction log" in row["status_reason"]

    with pytest.raises(ValueError, match="no run folder holds a W&B log"):
        collect_wandb_offline(runs / "local_only")


# ---------------------------------------------------------------------------------------------------------------------
# The public API, through a stand-in fed by real offline records


class FakeSummary:
    """Like wandb's HTTPSummary: dict-like with keys() and [], nested dicts as objects of its own kind, no iteration."""

    def __init__(self, data: dict) -> None:
        self._data = data

    def keys(self):
        return self._data.keys()

    def __getitem__(self, key):
        value = self._data[key]
        return FakeSummary(value) if isinstance(value, dict) else value


class FakeRun:
    def __init__(self, record: dict, entity: str = "lab", state: str = "finished", summary: dict | None = None):
        self.entity, self.project, self.id, self.name = entity, record["project"], record["id"], record["name"]
        self.group, self.state = record["group"], state
        self.url = f"https://wandb.example/{entity}/{self.project}/runs/{self.id}"
        self.config = {**record["config"], "_wandb": {"cli_version": "0.31.0"}}
        self.summary = FakeSummary(record["summary"] if summary is None else summary)
        self._history = record["history"]

    def scan_history(self, keys=None, page_size=1000, min_step=0, max_step=None):
        """As W&B's: only the rows that hold every requested key, each cut to those keys."""
        rows = [row for row in self._history if keys is None or all(key in row for key in keys)]
        return iter([{key: row[key] for key in keys} if keys else dict(row) for row in rows])


class FakeApi:
    def __init__(self, runs: list[FakeRun], error: Exception | None = None) -> None:
        self._runs, self._error, self.calls = runs, error, []

    def runs(self, path, filters=None, order="+created_at", per_page=50, include_sweeps=False, lazy=True):
        self.calls.append((path, filters))
        entity, _, project = path.rpartition("/")
        for run in self._runs:
            if self._error is not None:
                raise self._error  # while paging, as a lazy listing fails
            if run.project == project and entity in ("", run.entity):
                yield run


@pytest.fixture(scope="module")
def records(runs) -> dict[str, dict]:
    return {path.name: read_offline_run(path / "wandb") for path in sorted(runs.iterdir()) if (path / "wandb").is_dir()}


def test_api_runs_give_the_rows_of_the_local_record(runs, records):
    api = FakeApi([FakeRun(record) for record in records.values()])
    frame = collect_wandb("lab/mentalsim", api=api)
    assert api.calls == [("lab/mentalsim", None)]
    assert list(frame.columns) == list(COLUMNS)
    ids = {name: record["id"] for name, record in records.items()}
    assert frame["run_dir"].tolist() == sorted(f"wandb:lab/mentalsim/{run_id}" for run_id in ids.values())
    assert frame.set_index("run_name")["url"].to_dict() == {
        name: f"https://wandb.example/lab/mentalsim/runs/{run_id}" for name, run_id in ids.items()
    }
    offline = collect_wandb_offline(runs)
    pd.testing.assert_frame_equal(_compared(frame, ("run_dir", "url")), _compared(offline, ("run_dir", "url")))
    assert frame.set_index("run_name").loc["e3d_seed0", "run_time_s"] == records["e3d_seed0"]["summary"]["_runtime"]


def test_the_group_filter_keeps_one_sweep(records):
    api = FakeApi([FakeRun(record) for record in records.values()])
    frame = collect_wandb("mentalsim", group="sweep-b", api=api)
    assert api.calls == [("mentalsim", {"group": "sweep-b"})]
    assert sorted(frame["run_name"]) == ["l1_seed1", "res_seed0"]
    with pytest.raises(ValueError, match=r"'lab/mentalsim', group 'sweep-c': no runs found"):
        collect_wandb("lab/mentalsim", group="sweep-c", api=api)


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("finished", "finished"),
        ("crashed", "failed"),
        ("failed", "failed"),
        ("killed", "killed"),
        ("running", "running"),
    ],
)
def test_a_run_without_our_status_takes_its_wandb_state(records, state, status):
    summary = {key: value for key, value in records["e3d_seed0"]["summary"].items() if key != "status"}
    api = FakeApi([FakeRun(records["e3d_seed0"], state=state, summary=summary)])
    assert collect_wandb("lab/mentalsim", api=api)["status"].tolist() == [status]


def test_a_run_that_crashed_while_running_is_failed(records):
    summary = {**records["e2d_seed0"]["summary"], "status": "running"}
    api = FakeApi([FakeRun(records["e2d_seed0"], state="crashed", summary=summary)])
    assert collect_wandb("lab/mentalsim", api=api)["status"].tolist() == ["failed"]


def test_configs_are_written_that_train_the_same_run(records, tmp_path):
    twin = FakeRun(records["e3d_seed0"])
    twin.id = "another-id"  # same name, another run: a file of its own
    api = FakeApi([FakeRun(record) for record in records.values()] + [twin])
    frame = collect_wandb("lab/mentalsim", api=api, config_dir=tmp_path / "configs")
    paths = sorted(Path(path).name for path in frame["config_path"])
    assert paths == sorted([f"{name}.yaml" for name in records] + ["e3d_seed0-another-id.yaml"])
    for _, row in frame.iterrows():
        assert row["command"] == f"python launch.py train {row['config_path']}"
        assert config_hash(load(row["config_path"])) == row["config_hash"]
    assert not list((tmp_path / "configs").glob(".*"))  # no temporary files left


def test_a_project_without_runs_is_an_error_naming_it(records):
    with pytest.raises(ValueError, match=r"W&B project 'lab/elsewhere': no runs found"):
        collect_wandb("lab/elsewhere", api=FakeApi([FakeRun(record) for record in records.values()]))
    with pytest.raises(ValueError, match="entity/project"):
        collect_wandb("a/b/c", api=FakeApi([]))


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (wandb.errors.CommError(f"connection refused for key {SECRET}"), "W&B could not be reached"),
        (wandb.errors.AuthenticationError("API key rejected"), "wandb login"),
        (KeyError("summaryMetrics"), "the W&B API failed"),
    ],
)
def test_api_failures_are_readable_errors_without_secrets(records, monkeypatch, error, message):
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    api = FakeApi([FakeRun(records["e3d_seed0"])], error=error)
    with pytest.raises(RuntimeError, match=r"W&B project 'lab/mentalsim'") as caught:
        collect_wandb("lab/mentalsim", api=api)
    assert message in str(caught.value) and type(error).__name__ in str(caught.value)
    assert SECRET not in str(caught.value) and caught.value.__cause__ is None


def test_the_real_api_without_a_login_says_how_to_log_in(tmp_path, monkeypatch):
    # No key anywhere: wandb.Api() refuses before any network call.
    for name in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    try:
        with pytest.raises(RuntimeError, match=r"W&B project 'lab/mentalsim'.*wandb login"):
            collect_wandb("lab/mentalsim")
    finally:
        wandb.teardown()  # wandb.Api() fixed the process's W&B settings from this environment: forget them
    assert os.environ.get("WANDB_API_KEY") is None
