"""The training loop: scheduled sampling, evaluation, atomic checkpoints, exact resume, finetuning, a NaN guard.

A run lives in one folder (``runs/<name>/``): the tracker's record (config.yaml, metrics.jsonl, summary.json,
frames/, W&B's offline folder) and ``checkpoints/last.pt`` and ``checkpoints/best.pt`` (best validation MSE). Each
checkpoint holds the model, the optimiser, the step, the RNG states and the resolved config, and is written under a
temporary name and renamed, so a kill at any moment leaves the previous one whole (:mod:`core.checkpoints` writes
and reads them; :mod:`core.evaluation` scores a model).

Resume is exact on the CPU: training batch ``k`` and the scheduled-sampling draw at step ``k`` are pure functions of
``(seed, k)``, so a run killed at any point and started again from its last checkpoint ends with the same weights as
an uninterrupted run.

``train.precision=bf16`` runs the forward pass, the loss and every evaluation under bfloat16 autocast (CUDA or CPU);
weights, gradients, the optimiser and the metrics stay float32. ``train.compile`` runs the model through
``torch.compile``; the plain module keeps the weights, so checkpoints are the same either way. Both, and the device,
are recorded in the run's summary.

The trainer reports to a tracker and to an optional evaluation callback (the search's pruning hook); it knows
nothing of W&B, Optuna or the command line.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from core.checkpoints import (
    FIDELITY_CHANGES,
    checkpoint_fidelity,
    load_checkpoint,
    load_weights,
    restore_optimizer,
    save_checkpoint,
)
from core.config import FIDELITY, Config, config_hash, from_dict
from core.data.formats import SequenceSet, read_sequences
from core.data.loaders import SequenceDataset
from core.data.sources import RunData, build_data
from core.evaluation import check_precision, evaluate_model, precision_context, torch_threads
from core.io import CheckpointError, DataError, atomic_write, folder_lock, remove_leftovers
from core.losses import prediction_loss
from core.metrics import Scores
from core.models import build_model
from core.pictures import save_frames
from core.records import read_config, read_summary, run_dir_for
from core.release_checkpoint import import_release, is_release_checkpoint
from core.schedule import learning_rate, sampling_eta, true_frame_mask
from core.tracking import Tracker

EvalCallback = Callable[[int, Scores], bool]
"""Called after each validation with (step, scores); returning True stops the run as ``pruned``."""


@dataclass
class TrainResult:
    run_dir: Path
    status: str  # finished | diverged | pruned
    step: int
    best_val_mse: float | None  # best validation MSE seen, None before the first evaluation
    test: dict | None = None  # the final test metrics, keys "test/mse", "test/mse_by_frame", ...
    baselines: dict | None = None  # {"copy_last_frame": {"mse": ..., "mse_by_frame": [...]}, "blank": ...}


# ---------------------------------------------------------------------------------------------------------------------
# Set-up


def seed_everything(seed: int) -> None:
    """The one seeding block: Python, numpy and torch (every device)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (seeds code that uses numpy's global generator)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is cuda but no CUDA device is available")
    return torch.device(name)


def compiled(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """The module that runs forward passes: ``torch.compile(model)`` when ``enabled``, else ``model``. The compiled
    wrapper shares ``model``'s weights; save and load through ``model``, whose keys have no ``_orig_mod.`` prefix.

    The default mode: CUDA graphs ("reduce-overhead") are untested, and would be split into small pieces on a GPU,
    where the recall's autograd Function (whose backward recomputes attention through ``torch.autograd.grad``) is a
    graph break and runs eagerly, once per layer and step. On the CPU the whole model compiles as one graph.
    """
    return torch.compile(model) if enabled else model


# ---------------------------------------------------------------------------------------------------------------------
# Starting points


def load_init_from(cfg: Config, device: torch.device | str = "cpu") -> dict:
    """``train.init_from``'s checkpoint: one of ours (:func:`load_checkpoint`), or the release's TensorFlow checkpoint,
    a path ending in ``.ckpt-N``, imported onto ``cfg``'s model (:func:`core.release_checkpoint.import_release`)."""
    if is_release_checkpoint(cfg.train.init_from):
        return {**import_release(cfg.train.init_from, cfg), "path": str(cfg.train.init_from)}
    return load_checkpoint(cfg.train.init_from, device)


# ---------------------------------------------------------------------------------------------------------------------
# Training


def train(
    cfg: Config,
    run_dir: str | Path | None = None,
    on_eval: EvalCallback | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train (or resume, or skip if already finished) the run that ``cfg`` describes, then test it, with
    ``train.threads`` torch threads. The run folder is locked while it trains: a second process on it gets
    :class:`core.io.FolderBusy`. A run refused before it records anything (a data file or an ``init_from``
    checkpoint that cannot be read) leaves no folder behind, unless the folder was there before."""
    run_dir = Path(run_dir) if run_dir is not None else run_dir_for(cfg)
    created = not run_dir.exists()
    with folder_lock(run_dir), torch_threads(cfg.train.threads):  # one writer per run folder
        try:
            remove_leftovers(run_dir)  # of a writer killed mid-write: the lock says it is gone
            return _train(cfg, run_dir, on_eval, progress)
        except BaseException:
            if created:
                _remove_if_only_its_lock(run_dir)
            raise


def _remove_if_only_its_lock(run_dir: Path) -> None:
    """Remove a run folder that this call made and that holds nothing but its lock (still held: no other process can
    have started writing to it), so a refused run leaves no empty folder that looks like a run; anything else in it
    keeps it, and a failure to remove it leaves it as it is."""
    with contextlib.suppress(OSError):
        if [path.name for path in run_dir.iterdir()] == [".lock"]:
            (run_dir / ".lock").unlink()
            run_dir.rmdir()  # fails, and keeps the folder, if another process put its own lock there meanwhile


def _train(cfg: Config, run_dir: Path, on_eval: EvalCallback | None, progress: bool) -> TrainResult:
    torch.set_flush_denormal(True)  # the release's unscaled recall makes subnormal floats, which crawl on CPUs
    if cfg.fidelity != FIDELITY:
        raise ValueError(
            f"this config was recorded by fidelity-{cfg.fidelity} code; this code trains fidelity {FIDELITY}"
        )
    _check_same_run(run_dir, cfg)
    finished = _finished_result(run_dir)
    if finished is not None:
        return finished
    device = pick_device(cfg.train.device)
    check_precision(cfg.train.precision, device)
    seed_everything(cfg.train.seed)
    data = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2))

    start, best_val_mse, initialised = 0, math.inf, None
    last = run_dir / "checkpoints" / "last.pt"
    if last.is_file():
        state = load_checkpoint(last, device)
        load_weights(model, state)
        optimizer.load_state_dict(state["optimizer"])
        start, best_val_mse = int(state["step"]), float(state["best_val_mse"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
    elif cfg.train.init_from:
        source = load_init_from(cfg, device)
        fresh = load_weights(model, source, finetune=True)
        initialised = {
            "checkpoint": source["path"],
            "step": int(source["step"]),
            "fidelity": checkpoint_fidelity(source),
            **({"fresh_weights": fresh} if fresh else {}),
        }
        if cfg.train.init_optimizer == "restore":
            initialised["optimizer_restored"] = restore_optimizer(optimizer, model, source)
        if initialised["fidelity"] < FIDELITY:
            warnings.warn(
                f"{source['path']}: trained by fidelity-{initialised['fidelity']} code, before the release fixes "
                f"(fidelity {FIDELITY}: {FIDELITY_CHANGES}); finetuning from its weights as they are",
                stacklevel=2,
            )
    with Tracker(run_dir, cfg, mode=cfg.tracking.wandb, resume=start > 0, console=not progress) as tracker:
        if start > 0:
            tracker.truncate_after(start)
        started_from = {"init_from": initialised} if initialised else {}
        if initialised:
            tracker.use_checkpoint(initialised["checkpoint"])
        tracker.summary("running", test_set=data.test_name, **_execution(cfg, device), **started_from)
        runner = compiled(model, cfg.train.compile)
        training = _Training(cfg, model, runner, optimizer, data, device, tracker, run_dir)
        status, step, best_val_mse = _loop(training, start, best_val_mse, on_eval, progress)
        result = TrainResult(run_dir, status, step, best_val_mse if math.isfinite(best_val_mse) else None)
        if status == "finished":
            result.test, result.baselines = _final_test(
                cfg, runner, data, device, tracker, step, result.best_val_mse, progress
            )
        tracker.finish(status)
    return result


def _execution(cfg: Config, device: torch.device) -> dict[str, str | bool | int]:
    """How the run executes, for its summary: device (and the GPU's name), threads, precision, compile."""
    where: dict[str, str | bool | int] = {"device": str(device)}
    if device.type == "cuda":
        where["gpu"] = torch.cuda.get_device_name(device)
        if os.environ.get("CUDA_VISIBLE_DEVICES"):  # which of the machine's GPUs `cuda` is (a sweep worker's own)
            where["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    return {**where, "threads": torch.get_num_threads(), "precision": cfg.train.precision, "compile": cfg.train.compile}


def _finished_result(run_dir: Path) -> TrainResult | None:
    """The stored result of a run that already finished (re-running it does nothing)."""
    try:
        record = read_summary(run_dir / "summary.json")
    except DataError as error:
        raise _damaged(run_dir, error) from None
    if record is None or record.get("status") != "finished":
        return None
    return TrainResult(run_dir, "finished", record.get("step", 0), record.get("best_val_mse"),
                       record.get("metrics"), record.get("baselines"))  # fmt: skip


def _check_same_run(run_dir: Path, cfg: Config) -> None:
    saved = run_dir / "config.yaml"
    try:
        config = read_config(saved)
        previous = from_dict(config, str(saved)) if config is not None else None
    except ValueError as error:  # a damaged file (DataError), or keys and values this code does not take
        raise _damaged(run_dir, error) from None
    if previous is not None and config_hash(previous) != config_hash(cfg):
        raise ValueError(
            f"{run_dir} holds a run of a different config (hash {config_hash(previous)}, this one "
            f"{config_hash(cfg)}); pick another train.run_name or remove the folder"
        )


def _damaged(run_dir: Path, error: Exception) -> DataError:
    """A run folder whose record cannot be read is left as it is: the user moves it aside, nothing is deleted."""
    return DataError(
        f"{error}\n{run_dir} can be neither resumed nor skipped, and nothing in it was changed: move the damaged "
        f"folder aside (mv {run_dir} {run_dir}.damaged) and start again"
    )


@dataclass(frozen=True)
class _Training:
    """What one run trains with, set up by :func:`train` for :func:`_loop`."""

    cfg: Config
    model: torch.nn.Module  # what checkpoints save
    runner: torch.nn.Module  # ``model`` or its compiled wrapper: runs the forward passes
    optimizer: torch.optim.Optimizer
    data: RunData
    device: torch.device
    tracker: Tracker
    run_dir: Path


def _loop(
    training: _Training, start: int, best_val_mse: float, on_eval: EvalCallback | None, progress: bool
) -> tuple[str, int, float]:
    """Train from step ``start``; returns the status (finished, diverged or pruned), the last step and the best
    validation MSE (inf before the first evaluation)."""
    cfg, model, runner, optimizer = training.cfg, training.model, training.runner, training.optimizer
    data, device, tracker, run_dir = training.data, training.device, training.tracker, training.run_dir
    t = cfg.train
    context = data.context_frames
    steps_past_context = cfg.data.total_frames - context - 1
    checkpoints = run_dir / "checkpoints"
    sums = dict.fromkeys(("loss", "l1", "l2"), 0.0)  # detached tensors between logs: summed on the device, no sync
    interval_start, interval_steps = time.perf_counter(), 0
    bar = tqdm(total=t.steps, initial=start, desc=run_dir.name, disable=not progress, dynamic_ncols=True)
    postfix: dict[str, str] = {}
    runner.train()
    # On CUDA the batches come in page-locked memory, so the copy below returns at once and overlaps compute.
    batches = data.train_batches(start, pin_memory=device.type == "cuda") if start < t.steps else iter(())
    if t.steps == 0:  # a checkpoint scored as it is: validated too, so it ranks with trained runs
        scores = _validate(training, 0)
        tracker.mark_best(scores.to_dict("val/"), step=0)
        best_val_mse = scores.mse
        for name in ("best.pt", "last.pt"):
            save_checkpoint(checkpoints / name, model, optimizer, 0, cfg, best_val_mse)
    for step, frames in zip(range(start, t.steps), batches, strict=False):
        frames = frames.to(device, non_blocking=True)
        eta = sampling_eta(step, t.sampling_start, t.sampling_rate, t.sampling_stop)
        mask = true_frame_mask(step, t.seed, eta, len(frames), steps_past_context, device)
        with precision_context(t.precision, device):
            pred = runner(frames, context, mask)  # (B, T-1, C, H, W): every next frame; bfloat16 under bf16
            losses = prediction_loss(pred.float(), frames[:, 1:], cfg.loss.l1_weight)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if t.lr_schedule != "constant":
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, t.lr, t.lr_schedule, t.steps, t.lr_warmup, t.lr_min)
        optimizer.step()

        done = step + 1
        logging = done % t.log_every == 0 or done == t.steps
        evaluating = done % t.eval_every == 0 or done == t.steps
        checkpointing = evaluating or done % t.checkpoint_every == 0
        for name in sums:
            sums[name] = sums[name] + losses[name].detach()
        interval_steps += 1
        # A NaN anywhere in the interval makes the sum NaN. Checked every step on the CPU, where the sync is free;
        # on a GPU only where it matters: before anything is logged, evaluated or saved.
        if device.type == "cpu" or logging or checkpointing:
            total = float(sums["loss"])
            if not math.isfinite(total):
                bar.close()
                tracker.log({"train/loss": total}, step=done)
                tracker.summary("diverged", reason=f"loss became {total} by step {done}", step=done)
                return "diverged", done, best_val_mse
        bar.update(1)
        if logging:
            elapsed = time.perf_counter() - interval_start
            means = {f"train/loss{'' if k == 'loss' else '_' + k}": float(v) / interval_steps for k, v in sums.items()}
            # The probability of feeding the true frame (the release calls it eta; not a time left).
            rates = {"train/true_frame_prob": eta, "train/steps_per_s": interval_steps / elapsed}
            tracker.log({**means, **rates}, step=done)
            postfix["loss"] = f"{means['train/loss']:.4g}"
            bar.set_postfix(postfix)
            sums = dict.fromkeys(sums, 0.0)
            interval_start, interval_steps = time.perf_counter(), 0
        if evaluating:
            scores = _validate(training, done)
            if scores.mse < best_val_mse:
                best_val_mse = scores.mse
                tracker.mark_best(scores.to_dict("val/"), step=done)
                save_checkpoint(checkpoints / "best.pt", model, optimizer, done, cfg, best_val_mse)
            postfix["val_mse"] = f"{scores.mse:.1f}"
            bar.set_postfix(postfix)
            if not progress:  # one line per evaluation instead of a bar: readable in a log, and W&B's console
                print(f"{run_dir.name}: step {done}/{t.steps}, val MSE {scores.mse:.2f}, SSIM {scores.ssim:.3f}",
                      flush=True)  # fmt: skip
            if on_eval is not None and on_eval(done, scores):
                save_checkpoint(checkpoints / "last.pt", model, optimizer, done, cfg, best_val_mse)
                bar.close()
                tracker.summary(
                    "pruned", reason=f"stopped by the evaluation callback at step {done}", step=done,
                    best_val_mse=best_val_mse if math.isfinite(best_val_mse) else None,
                )  # fmt: skip
                return "pruned", done, best_val_mse
        if checkpointing:
            save_checkpoint(checkpoints / "last.pt", model, optimizer, done, cfg, best_val_mse)
    bar.close()
    return "finished", max(start, t.steps), best_val_mse


def _validate(training: _Training, step: int):
    """Score the validation set at ``step`` and record it; a run that reports to W&B also gets the first
    ``tracking.frames`` sequences' predictions there at every evaluation (``val/frames``, ``val/video``), so the
    dashboard's step slider shows the model learning (they are written under frames/ too, as ``val_step<step>``)."""
    cfg, tracker = training.cfg, training.tracker
    t = cfg.train
    keep = cfg.tracking.frames if tracker.reports_to_wandb else 0
    result = evaluate_model(training.runner, training.data.val, training.data.context_frames, t.eval_batch_size,
                            training.device, keep=keep, precision=t.precision)  # fmt: skip
    tracker.log(result.scores.to_dict("val/"), step=step)
    if result.pictures:
        pictures = result.pictures
        tracker.log_frames("val", pictures["target"], pictures["pred"], pictures["context"], step=step)
    return result.scores


def _final_test(cfg, runner, data, device, tracker, step, best_val_mse, progress) -> tuple[dict, dict]:
    """Test the final weights, and the trivial baselines on the same sequences; record both."""
    result = evaluate_model(
        runner, data.test, data.context_frames, cfg.train.eval_batch_size, device, keep=cfg.tracking.frames,
        progress=progress, baselines=True, precision=cfg.train.precision,
    )  # fmt: skip
    pictures, baselines = result.pictures, result.baselines
    metrics = result.scores.to_dict("test/")
    tracker.log(metrics, step=step)
    drawn = tracker.log_frames("test", pictures["target"], pictures["pred"], pictures["context"], step=step) if (
        pictures) else None  # fmt: skip
    frames = [*drawn, drawn[0].with_suffix(".npz")] if drawn else []
    if frames and cfg.tracking.frames_dir:  # the release's gen_frm_dir: a copy outside the run folder
        for path in frames:
            with atomic_write(Path(cfg.tracking.frames_dir) / path.name) as handle:
                handle.write(path.read_bytes())
    # The final weights (last.pt, which this test scored) and the best validation's (best.pt).
    tracker.log_artifacts([tracker.run_dir / "checkpoints" / name for name in ("last.pt", "best.pt")], frames)
    tracker.log_by_sequence(data.test_name, result.scores.by_sequence)  # before the summary says finished
    if not progress:
        print(f"{tracker.run_dir.name}: test MSE {metrics['test/mse']:.2f}, SSIM {metrics['test/ssim']:.3f} on "
              f"{data.test_name}", flush=True)  # fmt: skip
    flag = worse_than_blank(metrics["test/mse"], baselines["blank"]["mse"])
    tracker.summary(
        "finished", metrics=metrics, baselines=baselines, test_set=data.test_name, step=step, best_val_mse=best_val_mse,
        **({"reason": flag} if flag else {}),
    )  # fmt: skip
    return metrics, baselines


WORSE_THAN_BLANK = 1.1
"""A finished model whose test MSE exceeds the blank frame's by this factor is flagged: it learned nothing useful."""


def worse_than_blank(mse: float, blank_mse: float) -> str | None:
    """The flag a finished run's summary carries (as its ``reason``) when its test MSE is clearly worse than predicting
    a blank frame; its numbers stay as they are."""
    if not mse > WORSE_THAN_BLANK * blank_mse:
        return None
    margin = f"{(WORSE_THAN_BLANK - 1) * 100:.0f}%"
    return (f"test MSE {mse:.2f} is worse than the blank frame's {blank_mse:.2f} by over {margin}: the model predicts "
            "worse than nothing (too high a learning rate?)")  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------------
# Evaluating a trained model


def evaluate_checkpoint(
    source: str | Path,
    data_path: str | Path | None = None,
    ssim_convention: str = "ours",
    out_dir: str | Path | None = None,
    device: str = "auto",
    precision: str | None = None,
) -> dict:
    """Evaluate a checkpoint (or a run folder's best) on its config's test set or on ``data_path``, in ``precision``
    (default: the run's own ``train.precision``, so a run's test numbers are reproduced).

    Writes ``eval-<test set>-<convention>.json`` (metrics, per-frame curves, baselines, the test set and conventions)
    and a frame grid and GIF into ``out_dir`` (default: the run folder's ``eval/``); returns the JSON's content.
    """
    torch.set_flush_denormal(True)
    state = load_checkpoint(source, "cpu")
    cfg = from_dict(state["config"], state["path"])
    if cfg.fidelity < FIDELITY and cfg.model.residual and len(cfg.model.hidden) % 2:
        raise CheckpointError(
            f"{state['path']}: a {len(cfg.model.hidden)}-layer residual model trained by fidelity-{cfg.fidelity} code, "
            "whose decoder skipped the residual at odd depth; this code wires it as the study did, so the weights "
            "would compute something else"
        )
    device = pick_device(device)
    precision = precision or cfg.train.precision
    check_precision(precision, device)
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size).to(device)
    load_weights(model, {**state, "model": {k: v.to(device) for k, v in state["model"].items()}})
    note = None
    if data_path is not None:
        sequences, note = _fitted_to_model(data_path, cfg, state["path"])
        dataset, context, test_name = SequenceDataset(sequences), sequences.context_frames, str(data_path)
    else:
        data = build_data(cfg.data, cfg.train.batch_size, cfg.train.seed)
        dataset, context, test_name = data.test, data.context_frames, data.test_name
    result = evaluate_model(
        model, dataset, context, cfg.train.eval_batch_size, device, ssim_convention, keep=cfg.tracking.frames,
        progress=True, baselines=True, precision=precision,
    )  # fmt: skip
    scores, pictures, baselines = result.scores, result.pictures, result.baselines
    checkpoint = Path(state["path"])
    if out_dir is None:  # a run's checkpoints/x.pt -> the run's eval/; a loose checkpoint -> eval/ beside it
        home = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        out_dir = home / "eval"
    out_dir = Path(out_dir)
    stem = f"eval-{Path(test_name).stem if data_path else 'test'}-{ssim_convention}"
    report = {
        "checkpoint": str(checkpoint),
        "step": state["step"],
        "test_set": test_name,
        "ssim_convention": ssim_convention,
        "precision": precision,
        "metrics": scores.to_dict("test/"),
        "baselines": baselines,
        **({"note": note} if note else {}),
    }
    with atomic_write(out_dir / f"{stem}.json", "w") as handle:
        json.dump(report, handle, indent=2)
    if pictures:
        save_frames(out_dir, stem, pictures["target"], pictures["pred"], pictures["context"])
    report["written"] = str(out_dir / f"{stem}.json")
    return report


def _fitted_to_model(data_path: str | Path, cfg: Config, checkpoint: str) -> tuple[SequenceSet, str | None]:
    """The sequences of ``data_path`` as the checkpoint's model was trained on them, and a note when they were cut.

    Longer sequences are cut to the model's ``data.total_frames`` (the note says so); frames of another size or
    channels, another context length or shorter sequences are refused: the scores would not be the model's task.
    """
    d = cfg.data
    # A time-major .npy records no context length: the model's own is meant.
    sequences = read_sequences(data_path, d.context_frames if str(data_path).endswith(".npy") else None)
    num, length, channels, height, width = sequences.frames.shape  # (N, T, C, H, W)
    problems = []
    if (channels, height, width) != (d.channels, d.image_size, d.image_size):
        problems.append(f"frames of {channels}x{height}x{width}, not {d.channels}x{d.image_size}x{d.image_size}")
    if sequences.context_frames != d.context_frames:
        problems.append(f"{sequences.context_frames} context frames, not {d.context_frames}")
    if length < d.total_frames:
        problems.append(f"{length} frames, fewer than the model's {d.total_frames}")
    if problems:
        raise DataError(
            f"{data_path}: {num} sequences of {length} frames ({sequences.context_frames} context) of "
            f"{channels}x{height}x{width} (C x H x W) do not fit the model of {checkpoint}, trained on "
            f"{d.total_frames} frames ({d.context_frames} context) of {d.channels}x{d.image_size}x{d.image_size} (its "
            f"config's data.total_frames, data.context_frames, data.channels, data.image_size): {'; '.join(problems)}. "
            f"Evaluate it on a file of the model's shape (Moving MNIST: python launch.py data moving-mnist --split "
            f"test --length {d.total_frames} --context-frames {d.context_frames} --canvas {d.image_size} --out FILE)"
        )
    if length == d.total_frames:
        return sequences, None
    note = (
        f"{data_path}: scored on the first {d.total_frames} of its {length} frames ({d.context_frames} context), the "
        "sequence length the model was trained on"
    )
    return SequenceSet(sequences.frames[:, : d.total_frames], d.context_frames, sequences.source), note
