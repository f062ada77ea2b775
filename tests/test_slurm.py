"""The SLURM launcher: its settings and job parameters (fast), and sweeps submitted to a real one-node SLURM cluster.

The cluster tests start munged, slurmctld and slurmd (Debian's `munge` and `slurm-wlm`, which .ci/run installs) on
this machine with a key, a minimal slurm.conf, state, spool, logs and pid files in a temporary folder, on free ports,
and tear every process of theirs down afterwards (the daemons, and any job process, found by the slurm.conf path in
their environment). They share a throwaway PostgreSQL server as the ledger. On a developer machine without SLURM they
skip with the reason; under CI=true they must run.
"""

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cloudpickle
import pytest
import sweep_fakes
import test_sweep_postgres
import yaml
from test_sweep import FAST, call_counts, write_sweep

import launch
from ablations import slurm, slurm_settings
from ablations.sweep import SweepError, load_sweep

DAEMONS = ("munged", "slurmctld", "slurmd")
# The daemons' processes (slurmctld runs its scripts through a slurmscriptd child, which ignores SIGTERM).
DAEMON_NAMES = (*DAEMONS, "slurmscriptd")
# The throwaway PostgreSQL server's fixtures, shared (postgres_url asks for postgres_server).
postgres_url, postgres_server = test_sweep_postgres.postgres_url, test_sweep_postgres.postgres_server
_free_port = test_sweep_postgres._free_port

# ---------------------------------------------------------------------------------------------------------------------
# Settings, checked in the file and on the command line


def test_settings_come_from_the_file_and_the_command_line_wins(tmp_path):
    path = write_sweep(tmp_path, **{"slurm.partition": {"value": "gpu"}, "slurm.time": {"value": "4:00:00"},
                                    "slurm.gpus_per_job": {"value": 1}})  # fmt: skip
    sweep = load_sweep(path)
    assert slurm.slurm_settings(sweep) == slurm.SlurmSettings(partition="gpu", time=240, gpus_per_job=1)
    settings = slurm.slurm_settings(sweep, ["time=1-12:00", "account=vision", "cpus_per_job=4"])
    assert (settings.partition, settings.time, settings.account, settings.cpus_per_job) == ("gpu", 2160, "vision", 4)
    # The launcher's settings are not the cells' config: the same cells, ids and run folders with or without them.
    assert [c.id for c in sweep.cells] == [c.id for c in load_sweep(write_sweep(tmp_path / "plain")).cells]
    nested = write_sweep(tmp_path / "nested")
    spec = yaml.safe_load(nested.read_text())
    spec["parameters"]["slurm"] = {"parameters": {"account": {"value": "vision"}}}
    nested.write_text(yaml.safe_dump(spec))
    assert slurm.slurm_settings(load_sweep(nested)).account == "vision"  # W&B's nested form is slurm.account too


@pytest.mark.parametrize(
    ("key", "spec", "message"),
    [
        ("slurm.partiton", {"value": "gpu"}, "unknown parameter 'slurm.partiton' (did you mean 'slurm.partition'?)"),
        ("slurm.time", {"value": 240}, "parameters.slurm.time: 240 must be quoted text"),
        ("slurm.time", {"value": "tomorrow"}, "parameters.slurm.time: 'tomorrow' is not a SLURM time"),
        ("slurm.gpus_per_job", {"values": [1, 2]}, "parameters.slurm.gpus_per_job: a SLURM setting is a constant"),
        ("slurm.cpus_per_job", {"value": 0}, "parameters.slurm.cpus_per_job: 0 must be a whole number of at least 1"),
        ("slurm.partition", {"value": "two words"}, "parameters.slurm.partition: 'two words' must be a partition"),
        # it reaches the job script's #SBATCH lines: nothing but SLURM's name characters
        ("slurm.account", {"value": "a\ntouch /tmp/injected"}, "parameters.slurm.account: 'a\\ntouch"),
        ("slurm.partition", {"value": "gpu;rm"}, "parameters.slurm.partition: 'gpu;rm' must be a partition name"),
    ],
)
def test_a_bad_setting_in_the_file_names_the_file_key_and_value(tmp_path, key, spec, message):
    path = write_sweep(tmp_path, **{key: spec})
    with pytest.raises(SweepError) as error:
        load_sweep(path)
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("partition", "--slurm 'partition': expected NAME=VALUE"),
        ("gpus=2", "--slurm 'gpus=2': unknown SLURM setting 'gpus'"),
        ("gpus_per_job=-1", "--slurm 'gpus_per_job=-1': '-1' must be a whole number of at least 0"),
        ("time=0", "--slurm 'time=0': '0': a job's time limit must be positive"),
    ],
)
def test_a_bad_setting_on_the_command_line_names_the_flag_and_value(tmp_path, pair, message):
    with pytest.raises(SweepError) as error:
        slurm.slurm_settings(load_sweep(write_sweep(tmp_path)), [pair])
    assert message in str(error.value)


def test_slurm_times_parse_as_sbatch_reads_them():
    cases = {"90": 90, "1:30": 2, "2:00:00": 120, "1-0": 1440, "1-2:30": 1590, "0-0:0:1": 1, "1-00:00:00": 1440}
    assert {text: slurm_settings.parse_time(text) for text in cases} == cases


def test_the_command_line_refuses_slurm_settings_without_the_slurm_launcher(tmp_path, capsys):
    assert launch.main(["sweep", str(write_sweep(tmp_path)), "--slurm", "partition=gpu"]) == 2
    assert "--slurm partition=gpu: SLURM settings need --launcher slurm" in capsys.readouterr().err


def test_the_slurm_launcher_needs_slurm_where_it_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo, no sbatch
    path = write_sweep(tmp_path)
    assert launch.main(["sweep", str(path), "--launcher", "slurm", "--slurm", "partition=gpu"]) == 2
    assert "--launcher slurm needs SLURM's sinfo on PATH" in capsys.readouterr().err
    assert launch.main(["sweep", str(path), "--launcher", "slurm", "--slurm", "gpu_per_job=1"]) == 2
    assert "unknown SLURM setting 'gpu_per_job' (did you mean 'gpus_per_job'?)" in capsys.readouterr().err


def test_each_job_asks_for_its_time_gpus_cpus_and_partition(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")  # requirements.txt pins it; the local run of this file needs it
    # The job script is what is under test, not SLURM: submitit's executor refuses to exist where `srun` is missing
    # (its affinity() counts srun's CPUs), so the test tells it there is one, and runs on any machine.
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    sweep = load_sweep(write_sweep(tmp_path))
    settings = slurm.SlurmSettings(partition="gpu", account="vision", time=240, gpus_per_job=1, cpus_per_job=4)
    executor = submitit.SlurmExecutor(folder=tmp_path / "logs")
    executor.update_parameters(**slurm.executor_parameters(settings, sweep))  # submitit refuses a name it lacks
    script = executor._make_submission_file_text("python -m job", "uid")
    for flag in ("--partition=gpu", "--account=vision", "--time=240", "--gpus-per-node=1", "--cpus-per-task=4",
                 "--signal=USR2@90", "--job-name=sweep-grid"):  # fmt: skip
        assert f"#SBATCH {flag}\n" in script
    # the job imports this repository from any directory
    assert f"export PYTHONPATH={shlex.quote(str(slurm.REPO_ROOT))}" in script
    assert "gpus" not in " ".join(slurm.executor_parameters(slurm.SlurmSettings(), sweep))  # none asked, none given


def test_any_of_submitits_parameters_passes_through_checked_against_its_signature(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    path = write_sweep(tmp_path, **{"slurm.mem": {"value": "8G"}, "slurm.setup": {"value": ["module load cuda"]},
                                    "slurm.exclusive": {"value": True}})  # fmt: skip
    sweep = load_sweep(path)
    assert [c.id for c in sweep.cells] == [c.id for c in load_sweep(write_sweep(tmp_path / "plain")).cells]
    settings = slurm.slurm_settings(sweep, ["qos=high", "additional_parameters={wckey: study}", "constraint=a100"])
    executor = submitit.SlurmExecutor(folder=tmp_path / "logs")
    executor.update_parameters(**slurm.executor_parameters(settings, sweep))
    script = executor._make_submission_file_text("python -m job", "uid")
    for flag in ("--mem=8G", "--qos=high", "--constraint=a100", "--wckey=study", "--exclusive"):
        assert f"#SBATCH {flag}\n" in script
    assert script.index("export PYTHONPATH=") < script.index("module load cuda")  # the sweep's setup after ours
    refused = {
        "job_name=x": "the launcher sets submitit's 'job_name' itself",
        "nodes=2": "a job is one worker; ask for more workers with --workers",
        "memm=8G": "unknown SLURM setting 'memm' (did you mean 'mem'?)",
        "mem=8G\nrm -rf /": "must be one line: it is written into the job script",
        "use_srun=maybe": "'maybe' must be bool, as submitit's use_srun is",
        "array_parallelism=-1": "'-1' must be a whole number of at least 0",
    }
    for pair, message in refused.items():
        with pytest.raises(SweepError, match=re.escape(message)):
            slurm.slurm_settings(sweep, [pair])
    with pytest.raises(SweepError, match=re.escape("parameters.slurm.qos: a SLURM setting is a constant")):
        load_sweep(write_sweep(tmp_path / "axis", **{"slurm.qos": {"values": ["a", "b"]}}))


def test_an_sqlite_ledger_only_for_jobs_on_this_machine():
    assert slurm.storage_problem("sqlite:////runs/x/study.db", {"box"}, "box") is None
    assert slurm.storage_problem("sqlite:////runs/x/study.db", {"box.lab.org"}, "box") is None
    assert slurm.storage_problem("postgresql://u@db/sweeps", {"n1", "n2", "n3"}, "login") is None
    several = slurm.storage_problem("sqlite:////runs/x/study.db", {"n1", "n2"}, "n1")
    assert "partition has 2 nodes (n1, n2)" in several and "--storage postgresql://" in several
    assert "the jobs run on n1, not on this machine (login)" in slurm.storage_problem("sqlite:///x", {"n1"}, "login")


def test_the_job_body_runs_a_worker_in_a_fresh_process(tmp_path, calls, job_imports):
    # submitit's local executor: the worker pickled, started in a new interpreter, run over an SQLite ledger.
    submitit = pytest.importorskip("submitit")
    from ablations.ledger import Ledger, prepare, summarize

    sweep = load_sweep(write_sweep(tmp_path, **{"model.conv": {"value": "3d"}, "model.residual": {"value": False}}))
    ledger = Ledger(f"sqlite:///{tmp_path / 'runs/grid/study.db'}", "grid", **FAST)
    prepare(sweep, ledger)
    executor = submitit.LocalExecutor(folder=tmp_path / "logs")
    executor.update_parameters(timeout_min=2)
    job = executor.submit(slurm.SlurmWorker(), sweep, ledger, sweep_fakes.count_calls, 0, 1)
    assert job.result() == 2
    assert call_counts(calls) == {cell.id: 1 for cell in sweep.cells}
    assert summarize(sweep, ledger).done == 2
    assert callable(slurm.SlurmWorker().checkpoint)  # what makes submitit requeue it at a time limit or preemption


# ---------------------------------------------------------------------------------------------------------------------
# A real one-node SLURM cluster


def _our_processes(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (the cluster's SLURM_CONF=...): its daemons and its jobs."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _stop(pids: list[int], first: signal.Signals = signal.SIGTERM, wait_s: float = 10.0) -> None:
    """Send ``first``, wait up to ``wait_s`` for the processes to end, SIGKILL the rest."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, first)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(_running(pid) for pid in pids):
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture
def slurm_cluster(monkeypatch):
    """A one-node SLURM cluster on this machine; yields its folder. SLURM_CONF points the client commands (and
    submitit's sbatch, and the jobs, which inherit the environment) at it."""
    missing = [name for name in (*DAEMONS, "mungekey", "sbatch") if shutil.which(name) is None]
    if os.geteuid() != 0:
        missing.append("root (the test cluster's daemons run as root)")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{', '.join(missing)} missing; .ci/run should have installed Debian's slurm-wlm and munge")
        pytest.skip(f"no local SLURM ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    folder = Path(tempfile.mkdtemp(prefix="mentalsim-slurm-"))
    conf = folder / "slurm.conf"
    marker = f"SLURM_CONF={conf}"
    env = {**os.environ, "SLURM_CONF": str(conf)}  # every daemon carries the marker too, so teardown finds it
    try:
        folder.chmod(0o755)  # munged wants its socket's folder reachable by every user
        (folder / "state").mkdir()
        (folder / "spool").mkdir()

        def run(*command: str) -> str:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr or done.stdout}")
            return done.stdout

        host = socket.gethostname()
        # slurmd -C prints this machine's NodeName=<hostname> CPUs=... line: the node matches what slurmd finds.
        node = run("slurmd", "-C").splitlines()[0].strip()
        conf.write_text(
            f"""ClusterName=mentalsimtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder / "munge.socket"}
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={folder / "slurmctld.pid"}
SlurmdPidFile={folder / "slurmd.pid"}
SlurmctldLogFile={folder / "slurmctld.log"}
SlurmdLogFile={folder / "slurmd.log"}
# No cgroups in a container: track job processes through /proc, bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
# Jobs share the node by CPU (select/linear would run one job per node: the workers one after another).
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
{node} NodeAddr=127.0.0.1
PartitionName=debug Nodes={node.split()[0].removeprefix("NodeName=")} Default=YES MaxTime=INFINITE State=UP
"""
        )
        key = folder / "munge.key"
        run("mungekey", "--create", f"--keyfile={key}")
        key.chmod(0o600)
        # --force: munged refuses to run as root otherwise; every path of its own in the folder.
        run("munged", "--force", f"--key-file={key}", f"--socket={folder / 'munge.socket'}",
            f"--pid-file={folder / 'munged.pid'}", f"--log-file={folder / 'munged.log'}",
            f"--seed-file={folder / 'munged.seed'}")  # fmt: skip
        run("slurmctld", "-i")  # -i: ignore any saved state
        run("slurmd")
        deadline = time.monotonic() + 30
        while "idle" not in run("sinfo", "--noheader", "--format=%t"):
            if time.monotonic() > deadline:
                log = (folder / "slurmd.log").read_text()[-2000:] if (folder / "slurmd.log").exists() else ""
                raise RuntimeError(f"the test cluster's node never became idle: {run('sinfo')}\n{log}")
            time.sleep(0.2)
        monkeypatch.setenv("SLURM_CONF", str(conf))
        yield folder
    finally:
        # Jobs first (scancel lets them hand their cells back), then the daemons, killed outright: the cluster is
        # thrown away, and slurmctld takes over 10 s to stop on SIGTERM. Then anything else that carries the cluster's
        # environment.
        subprocess.run(["scancel", "--full", "--user=root"], env=env, capture_output=True, timeout=60)
        _stop([pid for pid in _our_processes(marker) if _name(pid) not in DAEMON_NAMES])
        _stop(_our_processes(marker), first=signal.SIGKILL, wait_s=5.0)
        left = [pid for pid in _our_processes(marker) if _running(pid)]
        shutil.rmtree(folder, ignore_errors=True)
        assert not left, f"processes of the test cluster survived its teardown: {left}"


@pytest.fixture
def job_imports(monkeypatch):
    """The jobs import the fake objectives by name, as the spawned local workers do: tests/ on their PYTHONPATH."""
    tests = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])))


@pytest.mark.slow
def test_two_slurm_jobs_run_every_cell_exactly_once(tmp_path, slurm_cluster, postgres_url, calls, job_imports, capsys):
    sweep = load_sweep(write_sweep(tmp_path))
    summary = slurm.run_slurm_sweep(sweep, workers=2, storage=postgres_url, objective=sweep_fakes.count_calls,
                                    queue_poll_s=0.5, **FAST)  # fmt: skip
    assert call_counts(calls) == {cell.id: 1 for cell in sweep.cells}
    assert (summary.done, summary.failed, summary.left) == (len(sweep.cells), 0, 0)
    out = capsys.readouterr().out
    assert "2 SLURM jobs" in out and "submitted SLURM jobs" in out and "ended" not in out  # both COMPLETED
    # Both jobs ran, on this node, under SLURM: the cells carry their workers' host:pid, the jobs wrote their logs.
    logs = sorted((tmp_path / "runs/grid/slurm").glob("*/*_0_log.out"))
    assert len(logs) == 2 and all("SLURM job" in log.read_text() for log in logs)


@pytest.mark.slow
def test_an_sqlite_ledger_on_a_one_node_cluster_of_this_machine(tmp_path, slurm_cluster, calls, job_imports):
    sweep = load_sweep(write_sweep(tmp_path, **{"model.conv": {"value": "3d"}}))
    summary = slurm.run_slurm_sweep(sweep, workers=2, objective=sweep_fakes.count_calls, queue_poll_s=0.5, **FAST)
    assert call_counts(calls) == {cell.id: 1 for cell in sweep.cells} and summary.done == len(sweep.cells)


def hang_until_requeued(cell, metric, report=None):
    """The first attempt at the first cell (in job order) leaves a mark naming its SLURM job and hangs; every other
    attempt is counted."""
    folder = Path(os.environ["SWEEP_FAKE_DIR"])
    if cell.name.startswith("conv=3d-residual=false-l1_weight=0.0") and not list(folder.glob("*.started.*")):
        (folder / f"{cell.id}.started.{os.getpid()}.0").write_text(os.environ.get("SLURM_JOB_ID", ""))
        time.sleep(600)
    return sweep_fakes.count_calls(cell, metric, report)


@pytest.mark.slow
def test_a_preempted_job_hands_its_cell_back_and_is_requeued(tmp_path, slurm_cluster, postgres_url, calls,
                                                              job_imports):  # fmt: skip
    sweep = load_sweep(write_sweep(tmp_path))
    events = {}

    def preempt() -> None:
        deadline = time.monotonic() + 90
        while not list(calls.glob("*.started.*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        started = next(iter(calls.glob("*.started.*")))
        job_id = started.read_text()
        events["job"], events["cell"] = job_id, started.name.split(".")[0]
        # What submitit's own test hook (Job._interrupt) and a preempting SLURM with send_user_signal do.
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=30)
        # The other job finishes the handed-back cell; the requeued one waits out SLURM's requeue delay (~2 min),
        # which this test does not: it reads the requeue, then cancels the pending job.
        while call_counts(calls).get(events["cell"], 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        while time.monotonic() < deadline:
            show = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout
            if "Restarts=1" in show and "JobState=PENDING" in show:
                events["requeued"] = True
                break
            time.sleep(0.2)
        subprocess.run(["scancel", job_id], timeout=30)

    thread = threading.Thread(target=preempt, daemon=True)
    thread.start()
    # The jobs need not import this test module (and torch with it): the objective travels by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        summary = slurm.run_slurm_sweep(sweep, workers=2, storage=postgres_url, objective=hang_until_requeued,
                                        queue_poll_s=0.5, **FAST)  # fmt: skip
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    thread.join(timeout=30)
    assert events.get("requeued"), f"job {events.get('job')} was not requeued by submitit"
    assert call_counts(calls) == {cell.id: 1 for cell in sweep.cells}  # the hung cell finished once, elsewhere
    assert (summary.done, summary.failed, summary.left) == (len(sweep.cells), 0, 0)
    hung = next(c for c in summary.cells if c.cell.id == events["cell"])
    assert hung.trials == 2  # handed back at once (interrupted), not left to go stale, then run again
    log = next((tmp_path / "runs/grid/slurm").glob(f"{events['job']}/*_0_log.err")).read_text()
    assert "this job is preempted" in log  # submitit's handler, which pickled the resubmission and requeued the job


def test_submitit_lives_in_the_launcher_alone_and_loads_only_to_submit():
    from test_boundaries import _modules, _uses

    users = [name for name, imports in _modules() if _uses(imports, "submitit")]
    assert users == ["ablations/slurm.py", "ablations/slurm_settings.py"]  # the launcher and its settings' check
    probe = "import sys, ablations.slurm, ablations.sweep; print('submitit' in sys.modules, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=slurm.REPO_ROOT)
    assert done.stdout.split() == ["False", "False"], done.stderr
