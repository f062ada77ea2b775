"""What a sweep would cost before it runs: its cells by stage, each cell's steps and estimated time on one CPU core and
on a GPU, the totals, and where each run would go. ``launch.py sweep FILE --dry-run`` prints it (:func:`plan_sweep`,
:func:`format_plan`) without training, without a ledger and without creating a folder.

A cell's time is its training steps times a per-step cost, plus its evaluations (forward only). The per-step cost comes
from :data:`STEP_COSTS`, measured at the sizes the study trains (``python -m ablations.plan measure``); a size not in
the table is scaled from the measured one nearest in FLOPs by an analytic FLOP count (:func:`analytic_gflop`), and the
plan says so. GPU times are estimates from the FLOP count and the number of operations a step dispatches, under the
stated assumptions of :data:`GPU_ASSUMPTION`: no GPU has been measured for this code yet.

Nothing here imports torch at module level: a dry run only reads the sweep files and their configs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# ---------------------------------------------------------------------------------------------------------------------
# The measured cost of one training step


@dataclass(frozen=True)
class StepCost:
    """One training step (forward, backward, Adam) at one size, measured on the project's CPU."""

    cpu_s: float  # seconds on one core (OMP_NUM_THREADS=1) of the project's CPU machine (AMD EPYC), median
    gflop: float  # forward and backward, torch's flop counter (convolutions and attention, as bench/ counts them)
    ops: int  # aten operations dispatched by forward and backward: what a GPU pays a launch overhead for
    source: str  # how and when it was measured


# Keyed by what sets a step's cost: (image size, patch, frames per sequence, hidden sizes, conv, batch size). Residuals
# and the loss are left out: they add a few elementwise operations to a step of thousands.
StepKey = tuple[int, int, int, tuple[int, ...], str, int]
# Measured 2026-11-29 on the project's CPU machine ("AMD EPYC" in lscpu, 2 cores, no GPU) with
#   OMP_NUM_THREADS=1 taskset -c 0 python -m ablations.plan measure "KEY" [STEPS]
# cpu_s is the process's CPU time for one step after a warm-up (of 2 steps, the slower, at the paper's Moving MNIST
# 3d size): other jobs shared the core, which made the wall time 1.5 to 3 times that. The FLOPs at the study's Moving
# MNIST size agree with bench/RESULTS.md's 2,760 (there 9.99 s a step on 2 threads of a Xeon with AVX-512).
_MEASURED = "AMD EPYC, 1 core, CPU time after a warm-up, 2026-11-29 (python -m ablations.plan measure)"
# The same way on the same CPU kind ("AMD EPYC", family 23 model 49, no AVX-512), 2026-12-06, beside a training on the
# other core: process CPU time 4.0 (3d) and 4.5 (E2D) times batch 4's at Moving MNIST's size, the FLOPs exactly 4 times;
# peak memory (max RSS of the process) 8.8 GB at Moving MNIST's 3d batch 16, 6.8 GB at KTH's 3d batch 8.
_MEASURED_BATCH = "AMD EPYC, 1 core, CPU time after a warm-up, 2026-12-06 (python -m ablations.plan measure)"
STEP_COSTS: dict[StepKey, StepCost] = {
    # Moving MNIST at the paper profile: 64x64, patch 4, 20 frames, 4 x 64, batch 4.
    (64, 4, 20, (64, 64, 64, 64), "3d", 4): StepCost(36.5, 2759.9, 19734, _MEASURED),
    (64, 4, 20, (64, 64, 64, 64), "2d", 4): StepCost(24.6, 2080.6, 15354, _MEASURED),
    # KTH at the paper profile: 128x128, patch 8, 30 frames, 4 x 64, batch 2.
    (128, 8, 30, (64, 64, 64, 64), "3d", 2): StepCost(34.9, 2512.0, 32494, _MEASURED),
    (128, 8, 30, (64, 64, 64, 64), "2d", 2): StepCost(26.5, 1949.3, 25794, _MEASURED),
    # The paper profiles' batches, the study's effective batch (4 GPUs x 4 or x 2 sequences): Moving MNIST 16, KTH 8.
    (64, 4, 20, (64, 64, 64, 64), "3d", 16): StepCost(144.5, 11039.6, 19734, _MEASURED_BATCH),
    (64, 4, 20, (64, 64, 64, 64), "2d", 16): StepCost(110.6, 8322.3, 15354, _MEASURED_BATCH),
    (128, 8, 30, (64, 64, 64, 64), "3d", 8): StepCost(133.6, 10047.8, 32494, _MEASURED_BATCH),
    (128, 8, 30, (64, 64, 64, 64), "2d", 8): StepCost(108.9, 7797.1, 25794, _MEASURED_BATCH),
    # Moving MNIST's demo, pretrain and finetune profiles: 2 x 32, patch 8, batch 4.
    (64, 8, 20, (32, 32), "3d", 4): StepCost(1.30, 91.6, 10006, _MEASURED),
    (64, 8, 20, (32, 32), "2d", 4): StepCost(0.90, 64.9, 7826, _MEASURED),
}


def step_key(cfg) -> StepKey:
    """The table's key for a resolved config."""
    return (cfg.data.image_size, cfg.model.patch_size, cfg.data.total_frames, tuple(cfg.model.hidden), cfg.model.conv,
            cfg.train.batch_size)  # fmt: skip


def measure(key: StepKey, steps: int = 1, channels: int = 1, context_frames: int = 10, family: str = "e3d_lstm",
            window: int = 2) -> dict[str, Any]:  # fmt: skip
    """Time ``steps`` training steps (after a warm-up) of the model at ``key`` (of ``family``, its cells seeing
    ``window`` frames) on random frames, on the threads torch has (run it under OMP_NUM_THREADS=1 for the table), then
    count one step's FLOPs and dispatched operations."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from core.config import ModelConfig
    from core.flops import flop_counter  # bench/ counts with it too: the figures agree with bench/RESULTS.md
    from core.losses import prediction_loss
    from core.models import build_model

    image_size, patch, frames_per_sequence, hidden, conv, batch = key
    torch.set_flush_denormal(True)  # as every run (the release's unscaled recall makes subnormal floats)
    torch.manual_seed(0)
    model_cfg = ModelConfig(name=family, hidden=tuple(hidden), patch_size=patch, conv=conv, window=window)
    model = build_model(model_cfg, channels, image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.95, 0.9995))
    frames = torch.rand(batch, frames_per_sequence, channels, image_size, image_size)  # (B, T, C, H, W)
    mask = torch.zeros(batch, frames_per_sequence - context_frames - 1)  # the model's own predictions fed back

    def step() -> None:
        loss = prediction_loss(model(frames, context_frames, mask), frames[:, 1:], 2 / 3)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    class CountOps(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += 1
            return func(*args, **(kwargs or {}))

    step()  # warm-up
    times, cpu_times = [], []
    for _ in range(steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    ops = CountOps()
    with flop_counter() as counter, ops:
        loss = prediction_loss(model(frames, context_frames, mask), frames[:, 1:], 2 / 3)["loss"]
        loss.backward()  # forward and backward only: a GPU's Adam is a few fused multi-tensor kernels
    return {"cpu_s": sorted(times)[len(times) // 2], "process_s": sorted(cpu_times)[len(times) // 2],
            "gflop": counter.get_total_flops() / 1e9, "ops": ops.count,
            "threads": torch.get_num_threads()}  # fmt: skip


WINDOW = 2  # frames a cell sees at once (model.window; the study's and the release's)
KERNEL_TAPS = {"3d": 1.5, "2d": 1.0}  # temporal taps per output frame: 'same' padding over 2 frames gives 1 and 2


def analytic_gflop(key: StepKey, channels: int = 1, family: str = "e3d_lstm", window: int = WINDOW,
                   filter_size: int = 5) -> float:  # fmt: skip
    """A training step's FLOPs from the shapes alone: the cell's convolutions and the recall's two matmuls, backward
    counted as twice the forward (2.5 times for the fused attention). Only used to scale a measured step to a size the
    table lacks, or the E3D-LSTM's to another family (:func:`family_gflop`); within 10% of the flop counter at the
    table's sizes (tests/test_plan.py)."""
    if family != "e3d_lstm":
        return family_gflop(key, family, channels, window, filter_size)
    image_size, patch, frames, hidden, conv, batch = key
    side = image_size // patch
    positions = batch * WINDOW * side * side  # one conv's output positions per time step: (B, window, H', W')
    memory = hidden[-1]  # the spatiotemporal memory's channels
    conv_macs = recall_macs = 0.0
    for layer, width in enumerate(hidden):
        inputs = channels * patch * patch if layer == 0 else hidden[layer - 1]
        # conv_x (7 slices), conv_h (4), conv_m (4), conv_oc and conv_om (1 each), then the 1x1 conv over [C', M'].
        per_position = 25 * KERNEL_TAPS[conv] * (inputs * 7 * width + width * 4 * width + memory * 4 * width
                                                 + 2 * width * width) + 2 * width * width  # fmt: skip
        conv_macs += (frames - 1) * positions * per_position
        # Recall at step t: every query position against the (t + 1) windows of history, twice (Q K^T, then V).
        recall_macs += sum(2 * positions * (t + 1) * WINDOW * side * side * width for t in range(frames - 1))
    return 2 * (3 * conv_macs + 3.5 * recall_macs) / 1e9


def family_gflop(key: StepKey, family: str, channels: int = 1, window: int = WINDOW, filter_size: int = 5,
                 context_frames: int = 10) -> float:  # fmt: skip
    """:func:`analytic_gflop` for the families without recall (ConvLSTM, PredRNN, PredRNN++): their cells'
    convolutions over a window of ``window`` frames with ``filter_size`` kernels, backward counted as twice the
    forward, except the first layer's convolution of the ``context_frames`` true frames alone, which needs no gradient
    of its input (a fed-back prediction does); elementwise gates and peepholes are not counted, as the flop counter
    counts none."""
    image_size, patch, frames, hidden, conv, batch = key
    side = image_size // patch
    positions = batch * window * side * side  # one conv's output positions per time step: (B, window, H', W')
    taps = (2 * window - 1) / window if conv == "3d" else 1.0  # 'same' in time: the last output frame sees one tap
    k2 = filter_size**2 * taps
    macs = frames_macs = 0.0
    for layer, width in enumerate(hidden):
        inputs = channels * patch * patch if layer == 0 else hidden[layer - 1]
        below = hidden[layer - 1]  # the memory a PredRNN++ layer reads: the layer below's (layer 0: the top's)
        per_position = {
            "convlstm": k2 * (inputs + width) * 4 * width,  # one conv over [X, H] to 4 gates
            # conv_x (7 gates), conv_h (4), conv_m (3), conv_o over [C, M]; then the 1x1 over [C, M].
            "predrnn": k2 * (inputs * 7 + width * 4 + width * 3 + 2 * width) * width + 2 * width * width,
            # conv_x (7), conv over [H, C] (3), over C' (4), over M from below (4), over M' (1); the 1x1 over [C, M];
            # the gradient highway before layer 1 (its X and Z, 2 gates each).
            "predrnnpp": k2 * (inputs * 7 + 2 * width * 3 + width * 4 + below * 4 + width) * width
            + 2 * width * width + (k2 * 4 * hidden[0] * hidden[0] if layer == 1 else 0),
        }[family]  # fmt: skip
        macs += (frames - 1) * positions * per_position
        if layer == 0 and family != "convlstm":  # the convolution over the frames alone (ConvLSTM's also reads H)
            frames_macs = positions * k2 * inputs * width * 7
    return 2 * (3 * macs - context_frames * frames_macs) / 1e9


# Dispatched operations of one training step of each family against the E3D-LSTM's at the same sizes (which has recall
# over the history and layer norms): counted as measure() counts, 32x32 frames, patch 4, 20 frames, batch 2, 2 and 3
# layers of 8, 2026-12-06: 0.32-0.35 (ConvLSTM), 0.47-0.54 (PredRNN), 0.62-0.74 (PredRNN++), the lower at 2D
# kernels over one frame. Scales a measured E3D-LSTM step's count to another family's, for the GPU estimate.
FAMILY_OPS = {"e3d_lstm": 1.0, "convlstm": 0.33, "predrnn": 0.5, "predrnnpp": 0.7}
# The FLOP scaling checked against measured steps at the demo size (64px, patch 8, 2 x 32, batch 4), process CPU time
# on one core beside a training (python -m ablations.plan measure KEY 5 FAMILY WINDOW, 2026-12-06; the E3D-LSTM's 3d
# and 2d steps measured 1.52 and 1.01 s there against the table's 1.30 and 0.90): 2d over 1 frame (the families'
# variants) ConvLSTM 0.21 s, PredRNN 0.40 s, PredRNN++ 0.57 s, estimated 0.19, 0.34 and 0.49; 3d over 2 frames 0.61,
# 1.17 and 1.64 s, estimated 0.56, 1.03 and 1.49. So the table needs no entry of theirs at these sizes.


# How the GPU figures are estimated: no GPU has run this code for the table yet. A step costs its FLOPs at an
# achieved rate plus a fixed host-side cost per dispatched operation (eager PyTorch launches every small kernel of the
# recurrence from Python; at 16x16 maps and batch 2 to 4 that cost dominates).
GPU_NAME = "H100 SXM"
# Assumed: the convolutions run in TF32 (PyTorch's default for cuDNN convolutions), whose dense peak on an H100 SXM is
# 495 TFLOP/s (NVIDIA's datasheet); the recall attends in float32 (67 TFLOP/s peak). Small maps and batches reach a
# small share of either: we assume 50 TFLOP/s achieved overall.
GPU_TFLOPS = 50.0
# Assumed: 10 us per dispatched aten operation (Python dispatch plus kernel launch; PyTorch's own guidance puts a kernel
# launch at several microseconds, and views cost dispatch without a kernel).
GPU_OP_S = 10e-6
GPU_ASSUMPTION = (
    f"estimated, not measured: FLOPs at {GPU_TFLOPS:g} TFLOP/s achieved plus {GPU_OP_S * 1e6:g} us per dispatched "
    "operation (ablations/plan.py says why)"
)
# For scale, one published figure: a user of the release (TensorFlow, its attention written out) reports about a week
# for Moving MNIST's 80k steps on one GTX 1080 Ti (google/e3d_lstm issue 5), about 7.5 s a step.
# An evaluation (forward only, batch train.eval_batch_size) costs this share of a training step per sequence: bench/
# RESULTS.md measured 1.3 sequences/s evaluating against 9.99 s per 4-sequence training step at the study size
# (0.77 s against 2.50 s a sequence). Applied to the GPU figure too, where larger evaluation batches make it an
# overestimate.
EVAL_FRACTION = 0.31
# KTH's test set is every window of the test persons' frames (data.test_size 100000 caps nothing); its size is only
# known once the frames are read. Assumed for the plan: 9 persons x 6 actions x 4 scenarios = 216 clips, a window every
# 30 frames for four actions and every 3 for jogging and running: a few thousand windows.
KTH_TEST_WINDOWS = 4000


def gpu_step_s(cost: StepCost) -> float:
    """The estimated seconds of one training step on the GPU of :data:`GPU_ASSUMPTION`."""
    return cost.gflop / (GPU_TFLOPS * 1e3) + cost.ops * GPU_OP_S


def step_cost(key: StepKey) -> tuple[StepCost, str]:
    """The measured cost at ``key``, or one scaled from the measured size of the same conv nearest in FLOPs (by
    :func:`analytic_gflop`; operations scale with layers and frames); the second value says which."""
    if key in STEP_COSTS:
        return STEP_COSTS[key], "measured"
    same = [k for k in STEP_COSTS if k[4] == key[4]] or list(STEP_COSTS)
    flops = analytic_gflop(key)
    nearest = min(same, key=lambda k: abs(math.log(analytic_gflop(k) / flops)))
    ref, ratio = STEP_COSTS[nearest], flops / analytic_gflop(nearest)
    ops = ref.ops * (len(key[3]) * (key[2] - 1)) / (len(nearest[3]) * (nearest[2] - 1))
    scaled = StepCost(ref.cpu_s * ratio, ref.gflop * ratio, round(ops), f"scaled from {nearest} by FLOPs")
    return scaled, f"scaled from {_key_text(nearest)}"


def family_step_cost(key: StepKey, family: str, window: int = WINDOW, filter_size: int = 5) -> tuple[StepCost, str]:
    """:func:`step_cost` for any family: the E3D-LSTM's (:data:`STEP_COSTS` is measured on it) as it is, another
    family's the E3D-LSTM's at the same key scaled by the two FLOP counts (:func:`analytic_gflop`), its dispatched
    operations by :data:`FAMILY_OPS`; the second value says which."""
    cost, basis = step_cost(key)
    if family == "e3d_lstm":
        return cost, basis
    ratio = analytic_gflop(key, family=family, window=window, filter_size=filter_size) / analytic_gflop(key)
    scaled = StepCost(cost.cpu_s * ratio, cost.gflop * ratio, round(cost.ops * FAMILY_OPS[family]),
                      f"{family}: the E3D-LSTM's step scaled by FLOPs")  # fmt: skip
    return scaled, f"{family}: the E3D-LSTM's step ({basis}) scaled by FLOPs"


def _key_text(key: StepKey) -> str:
    image_size, patch, frames, hidden, conv, batch = key
    return f"{image_size}px/p{patch}, {frames} frames, {'x'.join(map(str, hidden))}, {conv}, batch {batch}"


# ---------------------------------------------------------------------------------------------------------------------
# The plan


@dataclass(frozen=True)
class CellPlan:
    stage: int  # 1 for a stage-1 sweep's cells, 2 for the finetune that starts from one of them (a plain sweep: 1)
    sweep: str  # the sweep's name
    name: str  # the cell's name (a search: its trial slot, the values still to be sampled)
    run_dir: str  # where its run would go
    steps: int
    sequences_evaluated: int  # validation sequences over all evaluations, plus the test set
    cpu_h: float  # on one core of the project's CPU
    gpu_h: float  # estimated, on one GPU
    basis: str  # "measured", or what the step cost was scaled from
    status: str  # its run's status if it has a run folder, else "not started"
    missing: tuple[tuple[str, str], ...] = ()  # data files it names that do not exist here


@dataclass(frozen=True)
class StagePlan:
    stage: int
    path: str
    name: str
    method: str
    ledger: str  # where its ledger would be (the default; --storage puts it elsewhere)
    cells: tuple[CellPlan, ...]
    note: str = ""  # a stage-2 sweep: which stage-1 cell it finetunes from


@dataclass(frozen=True)
class Plan:
    stages: tuple[StagePlan, ...]
    workers: int

    @property
    def cells(self) -> list[CellPlan]:
        return [cell for stage in self.stages for cell in stage.cells]

    @property
    def cpu_h(self) -> float:
        return sum(c.cpu_h for c in self.cells if c.status != "finished")

    @property
    def gpu_h(self) -> float:
        return sum(c.gpu_h for c in self.cells if c.status != "finished")

    def wall_h(self, device: str) -> float:
        """Hours from start to end with ``workers`` workers (one core or one GPU each): each stage's cells shared out
        longest first, stage after stage."""
        total = 0.0
        for stage in self.stages:
            loads = [0.0] * self.workers
            hours = [c.cpu_h if device == "cpu" else c.gpu_h for c in stage.cells if c.status != "finished"]
            for h in sorted(hours, reverse=True):
                loads[loads.index(min(loads))] += h
            total += max(loads)
        return total


def plan_sweep(sweep, workers: int = 1) -> Plan:
    """The plan of a loaded sweep (:func:`ablations.sweep_file.load_sweep`, ``check_files=False`` for a plan that
    lists missing data instead of refusing): its stage 1 first when it has one, each cell costed. Reads the sweep
    files, configs and run folders; writes nothing."""
    from ablations.sweep_file import load_sweep, stage1_file

    chain = [sweep]
    while stage1_file(chain[0]) is not None:
        chain.insert(0, load_sweep(stage1_file(chain[0]), check_files=False))
    stages = []
    for number, part in enumerate(chain, start=1):
        note = ""
        if number > 1:
            names = next(p.values for p in part.parameters if p.name == "init_from_cell")
            note = f"finetunes from {', '.join(names)} of stage {number - 1}"
        stages.append(StagePlan(number, part.path, part.name, part.method, _default_ledger(part), _cells(part, number),
                                note))  # fmt: skip
    return Plan(tuple(stages), workers)


def _default_ledger(sweep) -> str:
    return str(Path(sweep.folder) / "study.db")


def _cells(sweep, stage: int) -> tuple[CellPlan, ...]:
    from ablations.sweep_file import SEARCH_METHODS, search_cell

    if sweep.method not in SEARCH_METHODS:
        return tuple(_cell_plan(cell, cell.config, sweep.name, stage) for cell in sweep.cells)
    # A search's trials are sampled as it runs: each is costed as trial 0 (the searched values change no shape unless
    # the search is over sizes, where this is the first trial's), and named by its slot.
    first = search_cell(sweep, 0, sweep.first)
    cfg = first.config
    plans = []
    for slot in range(sweep.run_cap):
        plan = _cell_plan(first, cfg, sweep.name, stage)
        if slot:
            pattern = str(Path(sweep.folder) / f"trial={slot}-<sampled values>-seed={cfg.train.seed}-<id>")
            plan = dataclasses.replace(plan, name=f"trial={slot}-<sampled>", run_dir=pattern, status="not started")
        plans.append(plan)
    return tuple(plans)


def _cell_plan(cell, cfg, sweep_name: str, stage: int) -> CellPlan:
    from ablations.sweep_file import missing_files

    cost, basis = family_step_cost(step_key(cfg), cfg.model.name, cfg.model.window, cfg.model.filter_size)
    steps, batch = cfg.train.steps, cfg.train.batch_size
    test = min(cfg.data.test_size, KTH_TEST_WINDOWS) if cfg.data.dataset == "kth" else cfg.data.test_size
    sequences = (steps // cfg.train.eval_every) * cfg.data.val_size + test if steps else test
    eval_share = 1 + EVAL_FRACTION * sequences / (batch * steps) if steps else EVAL_FRACTION * sequences / batch
    cpu_h = max(steps, 1) * cost.cpu_s * eval_share / 3600
    gpu_h = max(steps, 1) * gpu_step_s(cost) * eval_share / 3600
    summary = Path(cell.run_dir) / "summary.json"
    status = json.loads(summary.read_text()).get("status", "unknown") if summary.is_file() else "not started"
    return CellPlan(stage, sweep_name, cell.name, cell.run_dir, steps, sequences, cpu_h, gpu_h, basis, status,
                    tuple(missing_files(cfg)))  # fmt: skip


def format_plan(plan: Plan) -> str:
    """The plan as text: per stage, its cells with steps, hours and run folder; then the totals and what is missing."""
    lines = []
    name_width = max(len(c.name) for c in plan.cells)
    for stage in plan.stages:
        count = len(stage.cells)
        what = f"stage {stage.stage}: " if len(plan.stages) > 1 else ""
        note = f"; {stage.note}" if stage.note else ""
        lines.append(f"{what}{stage.path} ({stage.name}: {stage.method}, {count} cell{'s' * (count != 1)}{note}); "
                     f"ledger {stage.ledger}")  # fmt: skip
        lines.append(f"  {'stage':<6}{'cell':<{name_width}}  {'steps':>8}  {'CPU h':>8}  {'GPU h':>7}  "
                     f"{'status':<12}  run folder")  # fmt: skip
        for c in stage.cells:
            mark = "" if c.basis == "measured" else "~"
            lines.append(f"  {c.stage:<6}{c.name:<{name_width}}  {c.steps:>8}  {mark + _hours(c.cpu_h):>8}  "
                         f"{mark + _hours(c.gpu_h):>7}  {c.status:<12}  {c.run_dir}")  # fmt: skip
    left = [c for c in plan.cells if c.status != "finished"]
    workers = f"{plan.workers} worker{'s' * (plan.workers != 1)}"
    lines += [
        f"total: {len(plan.cells)} cells, {len(left)} to run",
        f"  CPU: {_hours(plan.cpu_h)} CPU-hours, one core a cell of the project's AMD EPYC (measured step times); "
        f"{_hours(plan.wall_h('cpu'))} h from start to end with {workers}, stage after stage",
        f"  GPU: {_hours(plan.gpu_h)} GPU-hours, one {GPU_NAME} a cell; {_hours(plan.wall_h('gpu'))} h from start to "
        f"end with {workers}; {GPU_ASSUMPTION}",
    ]
    scaled = sorted({c.basis for c in plan.cells if c.basis != "measured"})
    if scaled:
        lines.append(
            f"~: no step time measured at that size or for that family; {'; '.join(scaled)} "
            "(ablations/plan.py STEP_COSTS)"
        )
    for key, path in sorted({m for c in plan.cells for m in c.missing}):
        lines.append(
            f"warning: {key} names {path}, which does not exist here: the sweep refuses to start until it does"
        )
    lines.append("dry run: nothing was trained and nothing was written")
    return "\n".join(lines)


def _hours(hours: float) -> str:
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.1f}" if hours >= 0.1 else f"{hours:.2f}"


if __name__ == "__main__" and sys.argv[1:2] == ["measure"]:
    import ast
    import json

    # python -m ablations.plan measure KEY [STEPS [FAMILY [WINDOW]]]
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    family = sys.argv[4] if len(sys.argv) > 4 else "e3d_lstm"
    window = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    result = measure(ast.literal_eval(sys.argv[2]), steps, family=family, window=window)
    print(json.dumps({**result, "key": sys.argv[2], "family": family, "window": window}), flush=True)
