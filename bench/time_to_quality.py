"""Time to quality: validation MSE against CPU time of training, for named demo-scale candidates.

A candidate is a config file, a profile and dotted overrides (the same ones the CLI takes), plus optionally a learning
rate schedule implemented here with a torch scheduler (warm-up then cosine decay to ``lr_floor`` of the peak over
``train.steps``, which is the schedule's horizon; the budget, not ``train.steps``, ends the run). Training runs the
core library's pieces (``build_data``, ``build_model``, ``prediction_loss``, scheduled sampling, ``evaluate_model``)
in a loop of its own, without W&B, checkpoints of the trainer or the CLI.

Only training is timed: ``time.process_time()`` of this process around data generation, forward, backward and the
optimiser step. Evaluations on the fixed validation set (``data.val_size=128``, training digits, ``val_seed``) run at
every ``--eval-every-min`` CPU-minutes and at the end, outside the clock. Each evaluation appends one row
``{candidate, run, step, cpu_s, val_mse, val_ssim, train_loss, sec_per_step, ...}`` to ``bench/ttq_results.jsonl``.

Pin it to one core for comparable numbers::

    OMP_NUM_THREADS=1 taskset -c 1 python -m bench.time_to_quality --candidate demo --budget-min 6

``--resume`` continues a candidate's last run (its state is kept under ``runs/ttq/``) up to a larger budget, so a
successive-halving rung is the same run continued. ``--report`` only prints the table and redraws the curves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from core.config import Config, load
from core.data.sources import build_data
from core.evaluation import evaluate_model, precision_context
from core.losses import prediction_loss
from core.models import build_model
from core.schedule import learning_rate, sampling_eta, true_frame_mask
from core.trainer import seed_everything

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "ttq_results.jsonl"
CURVES = HERE / "ttq_curves.png"
STATE_DIR = Path("runs/ttq")  # ignored by git: resumable state of each candidate's last run
BASE = "ablations/moving_mnist/base.yaml"
FIXED = ("--data.val_size=128", "--train.eval_batch_size=32", "--train.device=cpu")
"""Overrides every candidate gets: the same validation set, evaluated the same way."""


@dataclass(frozen=True)
class Candidate:
    overrides: tuple[str, ...] = ()
    config: str = BASE
    profile: str = "demo"
    schedule: str = "constant"  # constant | cosine (linear warm-up, cosine decay over train.steps)
    warmup: int = 0  # warm-up steps of the cosine schedule
    lr_floor: float = 0.05  # the cosine schedule's last lr, as a fraction of train.lr
    note: str = ""

    def config_for(self) -> Config:
        return load(self.config, [*self.overrides, *FIXED], self.profile)

    def command(self, name: str) -> str:
        return f"OMP_NUM_THREADS=1 taskset -c 1 python -m bench.time_to_quality --candidate {name} --budget-min M"


# Sized from the measured seconds per step (TIME_TO_QUALITY.md): the demo model takes ~1.15 CPU-s per step on one core,
# so a 6 CPU-minute rung is ~310 steps and a 24 CPU-minute one ~1250.


def _tf(stop: int) -> tuple[str, ...]:
    """Teacher forcing: eta falls linearly from 1 at step 0 to 0 at step ``stop``."""
    return ("--train.sampling_start=1.0", f"--train.sampling_rate={1 / stop:.6g}", f"--train.sampling_stop={stop}")


CANDIDATES: dict[str, Candidate] = {
    "demo": Candidate(note="today's demo profile as is (control): 2x32, patch 8, lr 2e-3, batch 4, no TF, l2, fp32"),
    "demo_tf": Candidate(_tf(300), note="demo + teacher forcing, eta 1 -> 0 over the first 300 steps"),
    "lr5e-3_cos": Candidate(
        ("--train.lr=0.005", "--train.steps=1250"),
        schedule="cosine",
        warmup=50,
        note="demo at lr 5e-3: 50 warm-up steps, cosine to 2.5e-4 at step 1250",
    ),  # fmt: skip
    "b8_lr4e-3": Candidate(("--train.batch_size=8", "--train.lr=0.004"), note="demo at batch 8, lr 4e-3"),
    "deep_4x32": Candidate(("--model.hidden=32,32,32,32",), note="demo with 4x32 layers"),
    "wide_2x64": Candidate(("--model.hidden=64,64",), note="demo with 2x64 layers"),
    "p4_2x32": Candidate(("--model.patch_size=4",), note="demo at patch 4 (16x16 grid of 16 channels)"),
    "p4_4x16": Candidate(("--model.patch_size=4", "--model.hidden=16,16,16,16"), note="demo at patch 4, 4x16"),
    "demo_bf16": Candidate(("--train.precision=bf16",), note="demo under bf16 autocast"),
    "pretrain": Candidate(
        profile="pretrain",
        schedule="cosine",
        lr_floor=0.05,
        note="make pretrain's recipe: demo_tf with the lr's "
        "cosine decay from 2e-3 to 1e-4 over 4,500 steps (the trainer's train.lr_schedule, replayed here)",
    ),  # fmt: skip
}


# ---------------------------------------------------------------------------------------------------------------------
# Training


def lr_scheduler(optimizer: torch.optim.Optimizer, cand: Candidate, horizon: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The candidate's learning-rate multiplier per step: the trainer's schedule (:func:`core.schedule.learning_rate`)
    at peak 1: constant, or linear warm-up then cosine decay to ``lr_floor`` at step ``horizon`` (and after it)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate(step, 1.0, cand.schedule, horizon, cand.warmup, cand.lr_floor)
    )


@dataclass
class Run:
    """A candidate's model, optimiser, schedule and data, and how far it got."""

    name: str
    cand: Candidate
    cfg: Config
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data: object
    run_id: str
    step: int = 0
    cpu_s: float = 0.0
    keep_state: bool = True  # save the state at each evaluation, so --resume can continue it

    @property
    def state_path(self) -> Path:
        return STATE_DIR / f"{self.name}.pt"

    def save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "step": self.step, "cpu_s": self.cpu_s,
                 "run_id": self.run_id}  # fmt: skip
        torch.save(state, self.state_path)

    def restore(self) -> None:
        state = torch.load(self.state_path, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.cpu_s, self.run_id = int(state["step"]), float(state["cpu_s"]), state["run_id"]


def start_run(name: str, resume: bool = False, cand: Candidate | None = None) -> Run:
    cand = cand or CANDIDATES[name]
    cfg = cand.config_for()
    torch.set_flush_denormal(True)  # as the trainer: the unscaled recall makes subnormal floats, which crawl on CPUs
    seed_everything(cfg.train.seed)
    data = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size)
    t = cfg.train
    optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2))
    run = Run(name, cand, cfg, model, optimizer, lr_scheduler(optimizer, cand, t.steps), data,
              run_id=time.strftime("%Y%m%d-%H%M%S"))  # fmt: skip
    if resume:
        run.restore()
    return run


def evaluate(run: Run) -> tuple[float, float]:
    scores = evaluate_model(run.model, run.data.val, run.data.context_frames, run.cfg.train.eval_batch_size,
                            torch.device("cpu"), precision=run.cfg.train.precision).scores  # fmt: skip
    return float(scores.mse), float(scores.ssim)


def train_for(
    run: Run, budget_s: float, eval_every_s: float, results: Path = RESULTS, stop_at: float | None = None
) -> list[dict]:
    """Train ``run`` until its training CPU time reaches ``budget_s`` (or, with ``stop_at``, until an evaluation's
    val MSE is at most that), evaluating at each multiple of ``eval_every_s`` and at the end; returns the rows it
    appended to ``results``."""
    t, device = run.cfg.train, torch.device("cpu")
    context = run.data.context_frames
    past_context = run.cfg.data.total_frames - context - 1
    rows: list[dict] = []
    next_mark = (math.floor(run.cpu_s / eval_every_s + 1e-9) + 1) * eval_every_s
    loss_sum, loss_steps, mark_cpu, mark_step = 0.0, 0, run.cpu_s, run.step
    batches = run.data.train_batches(run.step)
    run.model.train()
    while run.cpu_s < budget_s:
        tick = time.process_time()
        frames = next(batches).to(device)
        eta = sampling_eta(run.step, t.sampling_start, t.sampling_rate, t.sampling_stop)
        mask = true_frame_mask(run.step, t.seed, eta, len(frames), past_context, device)
        with precision_context(t.precision, device):
            pred = run.model(frames, context, mask)
            loss = prediction_loss(pred.float(), frames[:, 1:], run.cfg.loss.l1_weight)["loss"]
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        value = float(loss.detach())
        run.step += 1
        run.cpu_s += time.process_time() - tick
        if not math.isfinite(value):
            print(f"{run.name}: loss {value} at step {run.step}; stopping")
            break
        loss_sum, loss_steps = loss_sum + value, loss_steps + 1
        if run.cpu_s >= next_mark or run.cpu_s >= budget_s:
            wall = time.perf_counter()
            mse, ssim = evaluate(run)
            row = {
                "candidate": run.name, "run": run.run_id, "step": run.step, "cpu_s": round(run.cpu_s, 2),
                "val_mse": round(mse, 3), "val_ssim": round(ssim, 4), "train_loss": loss_sum / loss_steps,
                "sec_per_step": round((run.cpu_s - mark_cpu) / (run.step - mark_step), 4),
                "lr": run.optimizer.param_groups[0]["lr"], "eta": eta,
                "eval_wall_s": round(time.perf_counter() - wall, 1),
            }  # fmt: skip
            with results.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            rows.append(row)
            print(f"{run.name} step {run.step:5d} cpu {run.cpu_s / 60:5.2f} min  val mse {mse:7.2f} ssim {ssim:.3f}  "
                  f"train loss {row['train_loss']:.5f}  {row['sec_per_step']:.3f} s/step  eta {eta:.2f}  "
                  f"lr {row['lr']:.2e}", flush=True)  # fmt: skip
            loss_sum, loss_steps, mark_cpu, mark_step = 0.0, 0, run.cpu_s, run.step
            next_mark = (math.floor(run.cpu_s / eval_every_s + 1e-9) + 1) * eval_every_s
            if run.keep_state:
                run.save()
            if stop_at is not None and mse <= stop_at:
                break
    return rows


def time_steps(name: str, steps: int) -> float:
    """Median CPU seconds of one training step (after 2 warm-up steps), no evaluation, nothing recorded."""
    run = start_run(name)
    t = run.cfg.train
    batches = run.data.train_batches(0)
    times = []
    for step in range(steps + 2):
        tick = time.process_time()
        frames = next(batches)
        mask = true_frame_mask(step, t.seed, 0.0, len(frames), run.cfg.data.total_frames - run.data.context_frames - 1)
        with precision_context(t.precision, torch.device("cpu")):
            loss = prediction_loss(run.model(frames, run.data.context_frames, mask).float(), frames[:, 1:], 0.0)["loss"]
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        times.append(time.process_time() - tick)
    times = sorted(times[2:])
    return times[len(times) // 2]


def save_predictions(name: str, path: Path, sequences: int = 2) -> Path:
    """Context, target and predicted frames of the first validation sequences from the candidate's last state."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = start_run(name, resume=True)
    ev = evaluate_model(run.model, run.data.val, run.data.context_frames, run.cfg.train.eval_batch_size,
                        torch.device("cpu"), keep=sequences, precision=run.cfg.train.precision)  # fmt: skip
    target, pred = ev.pictures["target"], ev.pictures["pred"]  # (n, T', 1, H, W)
    frames = target.shape[1]
    fig, axes = plt.subplots(2 * sequences, frames, figsize=(frames * 0.9, 2 * sequences * 0.95))
    for s in range(sequences):
        for k in range(frames):
            for r, (label, images) in enumerate((("target", target), ("pred", pred))):
                ax = axes[2 * s + r, k]
                ax.imshow(images[s, k, 0], cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([]), ax.set_yticks([])
                if k == 0:
                    ax.set_ylabel(f"{label} {s}", fontsize=7)
    fig.suptitle(f"{name}: step {run.step}, {run.cpu_s / 60:.1f} CPU-min, val MSE {ev.scores.mse:.1f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# A race: minutes to a fixed validation MSE, candidates side by side


def _race_one(name: str, cand: Candidate, threshold: float, budget_s: float, eval_s: float, results: str, core: int):
    """One racer (a spawned process): one core, one thread, fresh weights, until an evaluation reaches the threshold
    or the budget is spent. Its state is not kept (the study's resumable runs stay as they are)."""
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    run = start_run(name, cand=cand)
    run.keep_state = False
    train_for(run, budget_s, eval_s, Path(results), stop_at=threshold)


def race(
    names: tuple[str, ...] = ("demo", "pretrain"),
    threshold: float = 145.0,
    budget_min: float = 12.0,
    eval_every_min: float = 1.0,
    candidates: dict[str, Candidate] | None = None,
) -> dict[str, float | None]:
    """CPU-minutes each candidate takes to reach validation MSE ``threshold`` (None: not within ``budget_min``),
    trained side by side in one run, one process and one core each (round-robin over the cores this process may
    use), so the machine's noise falls on all of them alike. Rows go to a temporary file, not the study's."""
    import multiprocessing
    import tempfile

    candidates = candidates or CANDIDATES
    cores = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as folder:
        results = str(Path(folder) / "race.jsonl")
        context = multiprocessing.get_context("spawn")
        racers = [
            context.Process(target=_race_one, args=(name, candidates[name], threshold, budget_min * 60,
                                                   eval_every_min * 60, results, cores[i % len(cores)]))
            for i, name in enumerate(names)
        ]  # fmt: skip
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        rows = read_rows(Path(results))
    return {name: minutes_to(rows.get(name, []), threshold) for name in names}


# ---------------------------------------------------------------------------------------------------------------------
# Reporting


def read_rows(results: Path = RESULTS) -> dict[str, list[dict]]:
    """Each candidate's rows of its latest run, in CPU-time order."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()] if results.exists() else []
    latest: dict[str, str] = {}
    for row in rows:
        latest[row["candidate"]] = max(latest.get(row["candidate"], ""), row["run"])
    out: dict[str, list[dict]] = {}
    for row in rows:
        if row["run"] == latest[row["candidate"]]:
            out.setdefault(row["candidate"], []).append(row)
    return {name: sorted(r, key=lambda row: row["cpu_s"]) for name, r in out.items()}


def minutes_to(rows: list[dict], threshold: float) -> float | None:
    """CPU-minutes at the first evaluation with val MSE <= threshold, linearly interpolated from the one before."""
    previous = None
    for row in rows:
        if row["val_mse"] <= threshold:
            if previous is None:
                return row["cpu_s"] / 60
            x0, y0, x1, y1 = previous["cpu_s"], previous["val_mse"], row["cpu_s"], row["val_mse"]
            return (x0 + (x1 - x0) * (y0 - threshold) / (y0 - y1)) / 60
        previous = row
    return None


def table(results: Path = RESULTS, thresholds: tuple[float, ...] = (140, 120, 110)) -> str:
    """Val MSE at each evaluation (rows: candidates; columns: CPU-minute marks), seconds per step, minutes to reach
    each threshold."""
    data = read_rows(results)
    marks = sorted({round(row["cpu_s"] / 60) for rows in data.values() for row in rows})
    head = ["candidate", "s/step", "steps", *[f"{m}m" for m in marks], "best", *[f"min<={t:g}" for t in thresholds]]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for name, rows in sorted(data.items(), key=lambda item: min(r["val_mse"] for r in item[1])):
        by_mark = {round(row["cpu_s"] / 60): row["val_mse"] for row in rows}
        rate = rows[-1]["cpu_s"] / rows[-1]["step"]
        cells = [name, f"{rate:.3f}", str(rows[-1]["step"])]
        cells += [f"{by_mark[m]:.1f}" if m in by_mark else "" for m in marks]
        cells.append(f"{min(r['val_mse'] for r in rows):.1f}")
        cells += [f"{v:.1f}" if (v := minutes_to(rows, t)) is not None else "-" for t in thresholds]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def plot(results: Path = RESULTS, path: Path = CURVES) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, rows in sorted(read_rows(results).items()):
        ax.plot([r["cpu_s"] / 60 for r in rows], [r["val_mse"] for r in rows], marker="o", ms=3, label=name)
    ax.axhline(171, color="grey", ls=":", lw=1, label="blank frame (~171)")
    ax.axhline(110, color="black", ls="--", lw=1, label="goal 110")
    ax.set_xlabel("training CPU-minutes (one core)")
    ax.set_ylabel("validation MSE per frame")
    ax.set_title("Moving MNIST time to quality (val 128 seq)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.time_to_quality", description=__doc__.split("\n")[0])
    parser.add_argument("--candidate", choices=sorted(CANDIDATES), help="the candidate to train")
    parser.add_argument("--budget-min", type=float, default=6.0, help="training CPU-minutes (total, with --resume)")
    parser.add_argument("--eval-every-min", type=float, default=2.0, help="evaluate every this many CPU-minutes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time is the core's time)")
    parser.add_argument("--resume", action="store_true", help="continue the candidate's last run to --budget-min")
    parser.add_argument("--time-steps", type=int, metavar="N", help="only time N steps (of --candidate, or of all)")
    parser.add_argument("--predictions", action="store_true", help="save a frame grid of the candidate's last state")
    parser.add_argument("--report", action="store_true", help="print the table and redraw the curves, nothing else")
    parser.add_argument("--list", action="store_true", help="list the candidates and their commands")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.list:
        for name, cand in CANDIDATES.items():
            print(f"{name:12s} {cand.note}\n{'':12s} overrides: {' '.join(cand.overrides) or '-'}; "
                  f"schedule {cand.schedule}")  # fmt: skip
        return
    if args.time_steps:
        names = [args.candidate] if args.candidate else list(CANDIDATES)
        for name in names:
            print(f"{name:12s} {time_steps(name, args.time_steps):.3f} CPU s/step", flush=True)
        return
    if args.predictions:
        print(save_predictions(args.candidate, HERE / f"ttq_pred_{args.candidate}.png"))
        return
    if not args.report:
        if not args.candidate:
            parser.error("--candidate is required")
        threads = os.environ.get("OMP_NUM_THREADS")
        print(f"{args.candidate}: {CANDIDATES[args.candidate].note}; {torch.get_num_threads()} torch threads "
              f"(OMP_NUM_THREADS={threads}), affinity {sorted(os.sched_getaffinity(0))}", flush=True)  # fmt: skip
        run = start_run(args.candidate, resume=args.resume)
        train_for(run, args.budget_min * 60, args.eval_every_min * 60)
    print(table())
    print(f"curves: {plot()}")


if __name__ == "__main__":
    main()
