"""analysis.effects, analysis.figures and analysis.report on run records: real tiny training runs for the figures
and the page, records written by the real tracker for exact numbers. The page is rendered in headless Chromium."""

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_analysis import BASELINE_SCORES, KTH_TEST, record_run
from test_latex import compile_table

import launch
from analysis import figures
from analysis.baselines import baseline_losses
from analysis.collect import collect
from analysis.effects import (
    axis_effects,
    axis_interactions,
    best_point,
    effects_and_interactions,
    effects_markdown,
    search_points,
    searched_axes,
    verdicts,
)
from analysis.plateau import plateau_sentences, plateau_step
from analysis.report import write_report
from analysis.stats import levels_differ
from analysis.tables import study_table
from core.axes import axis
from core.config import load
from core.io import DataError
from core.records import read_frames
from core.tracking import Tracker, read_offline_run
from core.trainer import train
from core.wandb_log import read_offline_table


def tiny(mnist: Path, runs_dir: Path, *overrides: str):
    return load(None, [
        f"--data.mnist={mnist}", "--data.image_size=32", "--data.total_frames=6", "--data.context_frames=3",
        "--data.val_size=4", "--data.test_size=4", "--model.hidden=4,4", "--model.filter_size=3",
        "--model.patch_size=4", "--train.batch_size=2", "--train.steps=4", "--train.eval_every=2",
        "--train.log_every=1", "--train.eval_batch_size=4", "--tracking.wandb=disabled", "--tracking.frames=2",
        f"--train.runs_dir={runs_dir}", "--loss.l1_weight=0", *overrides,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, mnist_npz):
    """A small sweep folder: real runs (3d over two seeds, 2d, 3d with l1 weight 0.5), plus a failed 2d l1 0.5 cell
    and a pruned 3d l1 0.25 trial written by the tracker."""
    root = tmp_path_factory.mktemp("sweep")
    mnist = mnist_npz
    runs = root / "runs" / "demo"
    for overrides in ([], ["--train.seed=1"], ["--model.conv=2d"], ["--loss.l1_weight=0.5"]):
        assert train(tiny(mnist, runs, *overrides), progress=False).status == "finished"
    failed = tiny(mnist, runs, "--model.conv=2d", "--loss.l1_weight=0.5")
    with pytest.raises(RuntimeError), Tracker(runs / "failed_2d", failed, "disabled"):
        raise RuntimeError("CUDA out of memory")
    pruned = tiny(mnist, runs, "--loss.l1_weight=0.25")
    with Tracker(runs / "pruned_trial", pruned, "disabled") as tracker:
        tracker.log({"train/loss": 0.5}, step=2)
        tracker.log({"val/mse": 99.0}, step=2)
        tracker.summary("pruned", reason="pruned at step 2", step=2, best_val_mse=99.0)
    return runs


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    return write_report([sweep], tmp_path_factory.mktemp("out") / "report")


# ---------------------------------------------------------------------------------------------------------------------
# Effects


def grid(root: Path, seeds=(0,), missing=()) -> Path:
    """conv x residual x l1 weight records with MSE = 100 + 10 [2d] - 5 [residual] + 20 w + seed."""
    for conv in ("3d", "2d"):
        for residual in (False, True):
            for weight in (0.0, 0.5):
                for seed in seeds:
                    if (conv, residual, weight) in missing:
                        continue
                    mse = 100 + 10 * (conv == "2d") - 5 * residual + 20 * weight + seed
                    record_run(
                        root, f"{conv}-{residual}-{weight}-{seed}",
                        (f"--model.conv={conv}", f"--model.residual={residual}", f"--loss.l1_weight={weight}",
                         f"--train.seed={seed}"),
                        {"mse": mse, "mae": 2 * mse, "psnr": 30 - mse / 10, "ssim": 0.5},
                    )  # fmt: skip
    return root


def effect(effects, axis, metric):
    row = effects[(effects["axis"] == axis) & (effects["metric"] == metric)]
    assert len(row) == 1
    return row.iloc[0]


def test_axis_effects_are_paired_differences(tmp_path):
    effects = axis_effects(collect(grid(tmp_path, seeds=(0, 1))))
    conv = effect(effects, "conv", "mse")
    assert (conv["value"], conv["reference"]) == ("2d", "3d")
    assert conv["effect"] == pytest.approx(10.0) and conv["pairs"] == 8 and not conv["better"]  # 4 cells x 2 seeds
    assert conv["low"] == conv["high"] == pytest.approx(10.0) and conv["verdict"] == "worse"  # no noise here
    residual = effect(effects, "residual", "mse")
    assert (residual["value"], residual["reference"]) == (True, False)
    assert residual["effect"] == pytest.approx(-5.0) and residual["better"]
    psnr = effect(effects, "residual", "psnr")
    assert psnr["effect"] == pytest.approx(0.5) and psnr["better"]  # higher PSNR is better
    weight = effect(effects, "l1_weight", "mse")
    assert (weight["value"], weight["reference"]) == (0.5, 0.0)  # the release's 2/3 was not run: smallest value
    assert weight["effect"] == pytest.approx(10.0)
    assert set(effects["axis"]) == {"conv", "residual", "l1_weight"}  # seed and dataset are not axes here
    text = effects_markdown(effects)
    assert "| convolution: 3d → 2d | +10.00 [+10.00, +10.00] |" in text
    assert "| residual connections: off → on | -5.00 [-5.00, -5.00] |" in text and "| l1 weight: 0 → 0.5 |" in text
    assert "- residual connections: off → on: lowers MSE by 5.00 (95% CI -5.00 to -5.00, 8 pairs): beyond seed " in text


def test_effects_within_seed_noise_say_so(tmp_path):
    for conv, mses in (("3d", (100.0, 104.0, 98.0)), ("2d", (101.0, 99.0, 103.0))):
        for seed, mse in enumerate(mses):
            record_run(tmp_path, f"{conv}-{seed}", (f"--model.conv={conv}", f"--train.seed={seed}"),
                       {"mse": mse, "mae": mse, "psnr": 20.0, "ssim": 0.5})  # fmt: skip
    conv = effect(axis_effects(collect(tmp_path)), "conv", "mse")
    assert conv["pairs"] == 3 and conv["effect"] == pytest.approx(1 / 3) and conv["low"] < 0 < conv["high"]
    assert conv["verdict"] == "noise"
    (line,) = verdicts(axis_effects(collect(tmp_path)))
    assert line.startswith("convolution: 3d → 2d: changes MSE by +0.33 (95% CI ")
    assert line.endswith("3 pairs): not distinguishable from seed noise at this budget.")
    one = effect(axis_effects(collect(grid(tmp_path / "one"))), "conv", "mse")
    assert one["verdict"] == "worse"  # 4 pairs without spread: an exact +10
    single = tmp_path / "single"
    for conv, mse in (("3d", 100.0), ("2d", 90.0)):
        record_run(single, conv, (f"--model.conv={conv}",), {"mse": mse, "mae": mse, "psnr": 20.0, "ssim": 0.5})
    alone = effect(axis_effects(collect(single)), "conv", "mse")
    assert alone["verdict"] == "one pair" and math.isnan(alone["low"])
    assert "on one pair: no interval (run more seeds)" in verdicts(axis_effects(collect(single)))[0]


def test_pairs_of_one_seed_are_not_called_seed_noise(tmp_path):
    """Pairs across the other axes' cells, all of seed 0: their spread is how the effect varies with those axes."""
    for residual, (off, on) in ((False, (100.0, 104.0)), (True, (110.0, 108.0))):
        for l1, mse in ((0.0, off), (0.5, on)):
            record_run(tmp_path, f"{residual}-{l1}", (f"--model.residual={residual}", f"--loss.l1_weight={l1}"),
                       {"mse": mse, "mae": mse, "psnr": 20.0, "ssim": 0.5})  # fmt: skip
    effects = axis_effects(collect(tmp_path))
    weight = effect(effects, "l1_weight", "mse")
    assert weight["pairs"] == 2 and weight["effect"] == pytest.approx(1.0) and weight["interval"] == "cells of one seed"
    line = next(line for line in verdicts(effects) if line.startswith("l1 weight"))
    assert line.endswith("2 pairs of one seed): not distinguishable from its spread across the other axes (one seed: "
                         "seed noise not measured, run more seeds) at this budget.")  # fmt: skip
    assert "seed noise at this budget" not in line and "| 2‡ |" in effects_markdown(effects)
    grid(tmp_path / "seeds", seeds=(0, 1))
    assert set(axis_effects(collect(tmp_path / "seeds"))["interval"]) == {"seeds"}


def test_one_pair_with_per_sequence_scores_gets_an_interval_over_its_test_sequences(tmp_path):
    """One trained model each way (one seed): the interval is over the test sequences both models scored, labelled so,
    and none is given when the two were tested on different sets."""
    reference = np.array([100.0, 104.0, 98.0, 101.0, 97.0])
    changed = reference + np.array([8.0, 12.0, 9.0, 11.0, 10.0])
    for conv, per_sequence in (("3d", reference), ("2d", changed)):
        mse = float(per_sequence.mean())
        per_metric = {"mse": per_sequence, "mae": per_sequence, "psnr": np.full(5, 20.0), "ssim": np.full(5, 0.5)}
        scores = {"mse": mse, "mae": mse, "psnr": 20.0, "ssim": 0.5}
        record_run(tmp_path, conv, (f"--model.conv={conv}",), scores, test_set="five", by_sequence=per_metric)
    effects = axis_effects(collect(tmp_path))
    conv = effect(effects, "conv", "mse")
    half = 2.776445105 * np.std([8.0, 12.0, 9.0, 11.0, 10.0], ddof=1) / math.sqrt(5)  # t(0.975, 4 dof)
    assert conv["pairs"] == 1 and conv["effect"] == pytest.approx(10.0) and conv["interval"] == "5 test sequences"
    assert (conv["low"], conv["high"]) == pytest.approx((10.0 - half, 10.0 + half)) and conv["verdict"] == "worse"
    assert effect(effects, "conv", "psnr")["verdict"] == "noise"  # equal on every sequence: no change, no spread
    text = effects_markdown(effects)
    assert f"| convolution: 3d → 2d | +10.00 [{10 - half:+.2f}, {10 + half:+.2f}] |" in text and "| 1† |" in text
    line = verdicts(effects)[0]
    assert "over 5 test sequences): beyond the test set's noise (one trained pair: seed noise not measured" in line
    (tmp_path / "2d" / "test_by_sequence.json").write_text(
        (tmp_path / "2d" / "test_by_sequence.json").read_text().replace('"five"', '"another test set"')
    )
    assert effect(axis_effects(collect(tmp_path)), "conv", "mse")["verdict"] == "one pair"


def test_axis_effects_compare_only_cells_run_both_ways(tmp_path):
    root = grid(tmp_path, missing={("2d", True, 0.0)})
    (tmp_path / "2d-False-0.5-0" / "summary.json").unlink()  # a run killed before its summary: not finished
    effects = axis_effects(collect(root))
    conv = effect(effects, "conv", "mse")
    assert conv["pairs"] == 2 and conv["effect"] == pytest.approx(10.0)
    spread = effect(effects, "residual", "mse")
    assert spread["pairs"] == 2 and math.isfinite(spread["std"])


# The showcase's finetune grid, as `make sweep` measured it (residuals off/on x l1 weight 0 / 2/3 x 2 seeds): test MSE
# and MAE per seed. Without residuals l1+l2 raises MSE by about 22, with them it lowers it by about 6: averaged over
# all four pairs, the l1 weight's effect on MSE looks like noise.
SHOWCASE = {
    (False, 0.0): ((107.0, 240.0), (107.2, 253.4)),
    (False, 2 / 3): ((127.9, 197.3), (130.7, 197.7)),
    (True, 0.0): ((194.5, 553.2), (201.5, 578.4)),
    (True, 2 / 3): ((188.6, 518.4), (195.2, 552.0)),
}


def showcase(root: Path, seeds=(0, 1)) -> Path:
    for (residual, weight), per_seed in SHOWCASE.items():
        for seed in seeds:
            mse, mae = per_seed[seed]
            record_run(
                root, f"{residual}-{weight:.2f}-{seed}",
                (f"--model.residual={residual}", f"--loss.l1_weight={weight}", f"--train.seed={seed}"),
                {"mse": mse, "mae": mae, "psnr": 30 - mse / 10, "ssim": 0.5},
            )  # fmt: skip
    return root


def rows_of(effects, axis, metric):
    return effects[(effects["axis"] == axis) & (effects["metric"] == metric)]


def test_an_effect_that_differs_between_levels_of_another_axis_gets_no_pooled_verdict(tmp_path):
    effects, interactions = effects_and_interactions(collect(showcase(tmp_path)))
    weight = rows_of(effects, "l1_weight", "mse")
    assert list(weight["within"]) == ["", "residual connections off", "residual connections on"]
    pooled, off, on = (row for _, row in weight.iterrows())
    assert pooled["verdict"] == "depends" and pooled["better"] is None
    assert pooled["interaction"] == "residual connections" and pooled["pairs"] == 4
    assert pooled["effect"] == pytest.approx(-8.05)  # still the mean over the 4 pairs, in the CSV, but no verdict
    assert off["change"] == "l1 weight: 0.666667 → 0, with residual connections off" and off["pairs"] == 2
    assert off["effect"] == pytest.approx(-22.2) and off["high"] < 0 and off["verdict"] == "better"
    assert on["change"] == "l1 weight: 0.666667 → 0, with residual connections on" and on["pairs"] == 2
    assert on["effect"] == pytest.approx(6.1) and on["low"] > 0 and on["verdict"] == "worse"
    assert off["interaction"] == on["interaction"] == "residual connections"

    test = interactions[(interactions["axis"] == "l1_weight") & (interactions["metric"] == "mse")].iloc[0]
    assert (test["by"], test["levels"], test["pairs"], test["test"]) == ("residual", "off, on", "2, 2", "welch t")
    _, low, high = gap_interval_of([194.5 - 188.6, 201.5 - 195.2], [107.0 - 127.9, 107.2 - 130.7])
    assert test["difference"] == pytest.approx(28.3) and test["verdict"] == "differs" and 0 < test["low"]
    assert (test["low"], test["high"]) == pytest.approx((low, high))

    # MAE: the l1 weight's effect does not differ beyond noise between the levels: the pooled row keeps its verdict
    mae = rows_of(effects, "l1_weight", "mae")
    assert mae.iloc[0]["verdict"] == "worse" and mae.iloc[0]["interaction"] == ""  # l2 alone: MAE +39.9
    assert list(mae["within"]) == ["", "residual connections off", "residual connections on"]  # shown, not decisive
    assert set(mae["interaction"]) == {""}

    text = effects_markdown(effects, interactions)
    assert "| l1 weight: 0.666667 → 0 | depends on residual connections | +39.90 [" in text
    assert "| l1 weight: 0.666667 → 0, with residual connections off | -22.20 [" in text
    assert "| l1 weight: 0.666667 → 0, with residual connections on | +6.10 [" in text
    lines = verdicts(effects, interactions=interactions)
    at = next(i for i, line in enumerate(lines) if line.startswith("l1 weight: 0.666667 → 0:"))
    assert lines[at].startswith(
        "l1 weight: 0.666667 → 0: its effect on MSE depends on residual connections (with residual connections on "
        f"minus off: +28.30, 95% CI {low:+.2f} to {high:+.2f}, Welch's t over 2 and 2 pairs): "
    )
    assert "so no pooled verdict" in lines[at] and "not distinguishable" not in lines[at]
    assert lines[at + 1].startswith("l1 weight: 0.666667 → 0, with residual connections off: lowers MSE by 22.20 (")
    assert lines[at + 2].startswith("l1 weight: 0.666667 → 0, with residual connections on: raises MSE by 6.10 (")
    # In a 2 x 2 grid the interaction is one number: the residual's effect depends on the l1 weight as much.
    assert rows_of(effects, "residual", "mse").iloc[0]["interaction"] == "l1 weight"


def gap_interval_of(second: list[float], first: list[float]) -> tuple[float, float, float]:
    """Welch's interval of mean(second) - mean(first), by scipy's own t test (the reference for analysis.stats)."""
    from scipy import stats

    result = stats.ttest_ind(second, first, equal_var=False)
    low, high = result.confidence_interval(0.95)
    return float(np.mean(second) - np.mean(first)), float(low), float(high)


def test_an_effect_the_same_at_every_level_keeps_its_pooled_row(tmp_path):
    noise = {0: (0.8, -1.1, 0.3, 1.9), 1: (-0.6, 1.4, -0.9, -0.2), 2: (0.1, 0.7, -1.3, 0.5)}
    for seed, jitter in noise.items():
        for k, (residual, weight) in enumerate(((False, 0.0), (False, 0.5), (True, 0.0), (True, 0.5))):
            mse = 100 + 10 * residual + 4 * weight * 2 + seed + jitter[k]
            record_run(tmp_path, f"{residual}-{weight}-{seed}",
                       (f"--model.residual={residual}", f"--loss.l1_weight={weight}", f"--train.seed={seed}"),
                       {"mse": mse, "mae": mse, "psnr": 20.0, "ssim": 0.5})  # fmt: skip
    effects, interactions = effects_and_interactions(collect(tmp_path))
    assert set(effects["within"]) == {""} and set(effects["interaction"]) == {""}  # one row per axis and metric
    assert len(rows_of(effects, "l1_weight", "mse")) == 1 and len(rows_of(effects, "residual", "mse")) == 1
    assert set(interactions["verdict"]) == {"same"} and set(interactions["by"]) == {"residual", "l1_weight"}
    residual = rows_of(effects, "residual", "mse").iloc[0]
    assert residual["verdict"] == "worse" and residual["pairs"] == 6
    assert verdicts(effects, interactions=interactions) == verdicts(effects)  # today's sentences, nothing added
    assert "depends" not in effects_markdown(effects, interactions).split("**\n", 1)[1]
    assert "§" not in effects_markdown(effects, interactions).split("**\n", 1)[1]


def test_with_one_seed_per_cell_the_interaction_cannot_be_tested_and_says_so(tmp_path):
    effects, interactions = effects_and_interactions(collect(showcase(tmp_path, seeds=(0,))))
    assert set(interactions["verdict"]) == {"untestable"} and set(interactions["pairs"]) == {"1, 1"}
    weight = rows_of(effects, "l1_weight", "mse")
    assert len(weight) == 1 and weight.iloc[0]["interval"] == "cells of one seed"  # the pooled row, as before
    line = next(line for line in verdicts(effects, interactions=interactions) if line.startswith("l1 weight"))
    assert line.endswith(
        "Whether it depends on residual connections cannot be tested: one pair at a level of it (no replication "
        "within a level; run more seeds)."
    )
    assert "| l1 weight: 0.666667 → 0 | " in effects_markdown(effects, interactions)
    assert "| 2‡§ |" in effects_markdown(effects, interactions)


def test_an_interaction_with_an_axis_of_three_levels_uses_welchs_one_way_test(tmp_path):
    """The l1 weight helps at lr 0.001, does nothing at 0.002 and hurts at 0.004 (other config keys are axes too)."""
    for lr, slope in ((0.001, -10.0), (0.002, 0.0), (0.004, 10.0)):
        for seed, jitter in enumerate((0.4, -0.3, 0.1)):
            for weight in (0.0, 1.0):
                mse = 100 + slope * weight + jitter * (1 + weight)
                record_run(tmp_path, f"{lr}-{weight}-{seed}",
                           (f"--train.lr={lr}", f"--loss.l1_weight={weight}", f"--train.seed={seed}"),
                           {"mse": mse, "mae": mse, "psnr": 20.0, "ssim": 0.5})  # fmt: skip
    effects, interactions = effects_and_interactions(collect(tmp_path))
    test = interactions[(interactions["axis"] == "l1_weight") & (interactions["metric"] == "mse")].iloc[0]
    assert (test["by"], test["test"], test["levels"], test["verdict"]) == ("lr", "welch anova", "0.001, 0.002, 0.004",
                                                                            "differs")  # fmt: skip
    assert test["p"] < 0.05 and test["statistic"] > 0
    weight = rows_of(effects, "l1_weight", "mse")
    assert list(weight["within"]) == ["", "lr 0.001", "lr 0.002", "lr 0.004"]
    assert weight.iloc[0]["verdict"] == "depends" and weight.iloc[0]["interaction"] == "lr"
    assert weight.iloc[1]["effect"] == pytest.approx(-10 + 0.2 / 3) and weight.iloc[1]["verdict"] == "better"
    assert weight.iloc[3]["effect"] == pytest.approx(10 + 0.2 / 3) and weight.iloc[3]["verdict"] == "worse"
    line = next(line for line in verdicts(effects, interactions=interactions) if line.startswith("l1 weight: 0 → 1:"))
    assert "depends on lr (Welch's one-way test over its 3 levels, 3 / 3 / 3 pairs: F = " in line


def test_levels_differ_is_welchs_test():
    from scipy import stats

    first, second = [1.0, 2.0, 4.0], [5.0, 7.0, 6.5, 9.0]
    result = levels_differ([first, second])
    reference = stats.ttest_ind(second, first, equal_var=False)
    assert result.test == "welch t" and result.differs and result.testable
    assert (result.statistic, result.dof, result.p) == pytest.approx((reference.statistic, reference.df,
                                                                      reference.pvalue))  # fmt: skip
    assert (result.low, result.high) == pytest.approx(tuple(reference.confidence_interval(0.95)))
    assert not levels_differ([[1.0, 3.0], [2.0, 2.5]]).differs
    # Three groups: Welch's F for two groups is t squared on the same degrees of freedom; here one lies apart.
    three = levels_differ([[1.0, 1.5, 0.5], [1.2, 0.9, 1.4], [6.0, 7.5, 6.8]])
    assert three.test == "welch anova" and three.differs and three.p < 0.01
    assert not levels_differ([[1.0, 1.5, 0.5], [1.2, 0.9, 1.4], [1.1, 0.6, 1.3]]).differs
    assert not levels_differ([[1.0], [2.0, 3.0]]).testable  # one value: no spread known, no test
    assert levels_differ([[2.0, 2.0], [3.0, 3.0]]).differs and not levels_differ([[2.0, 2.0], [2.0, 2.0]]).differs
    assert not levels_differ([[0.1 + 0.2, 0.1 + 0.2], [0.3, 0.3]]).differs  # float rounding is no difference


def test_a_seed_is_never_an_axis_of_an_effect(tmp_path):
    for seed, mse in enumerate((100.0, 104.0, 98.0)):  # only the seed varies: nothing to compare
        record_run(tmp_path / "seeds", f"s{seed}", (f"--train.seed={seed}",), {"mse": mse, "mae": mse, "psnr": 20.0,
                   "ssim": 0.5})  # fmt: skip
    effects, interactions = effects_and_interactions(collect(tmp_path / "seeds"))
    assert effects.empty and interactions.empty
    effects, interactions = effects_and_interactions(collect(showcase(tmp_path / "grid")))
    assert set(effects["axis"]) == {"residual", "l1_weight"} and set(interactions["by"]) == {"residual", "l1_weight"}
    assert not any("seed" in text for text in effects["within"])
    assert axis_effects(collect(tmp_path / "grid")).equals(effects)
    assert axis_interactions(collect(tmp_path / "grid")).equals(interactions)


def test_the_report_writes_within_level_rows_and_the_interaction_tests(tmp_path):
    result = write_report([showcase(tmp_path / "runs")], tmp_path / "out", published=False)
    section = result.sections[0]
    text = (tmp_path / "out" / "effects.md").read_text()
    assert "| l1 weight: 0.666667 → 0, with residual connections on | +6.10 [" in text
    assert "its effect on MSE depends on residual connections (with residual connections on minus off: +28.30" in text
    csv = (tmp_path / "out" / "effects.csv").read_text().splitlines()
    assert csv[0].endswith(",verdict,within,interaction")
    tests = (tmp_path / "out" / "interactions.csv").read_text()
    assert tests.startswith("dataset,axis,value,reference,change,metric,by,") and "differs" in tests
    page = result.html.read_text()
    assert "l1 weight: 0.666667 → 0, with residual connections off" in page
    assert "depends on residual connections" in page
    assert section.interactions is not None and len(section.interactions) == 8  # 2 axes x 4 metrics, one other axis


def test_weight_points_include_pruned_trials_and_pick_the_best(tmp_path):
    for name, weight, status, val in (
        ("a", 0.0, "finished", 120.0),
        ("b", 0.3, "pruned", 110.0),
        ("c", 0.9, "failed", None),
    ):
        run = record_run(tmp_path, name, (f"--loss.l1_weight={weight}",), status=status)
        if val is not None:
            summary = json.loads((run / "summary.json").read_text())
            summary["best_val_mse"] = val
            (run / "summary.json").write_text(json.dumps(summary))
    runs = collect(tmp_path)
    assert [a.name for a in searched_axes(runs)] == ["l1_weight"]
    points = search_points(runs, axis("loss.l1_weight"))
    assert list(points["l1_weight"]) == [0.0, 0.3, 0.9]
    assert list(points["status"]) == ["finished", "pruned", "failed"]
    best = best_point(points)
    assert best["l1_weight"] == 0.3 and best["best_val_mse"] == 110.0


# ---------------------------------------------------------------------------------------------------------------------
# Frames and figures


def test_trainer_saves_the_final_test_frames(sweep):
    runs = collect(sweep)
    finished = runs[runs["status"] == "finished"]
    assert len(finished) == 4 and finished["frames_file"].notna().all() and finished["frames_gif"].notna().all()
    frames = read_frames(finished["frames_file"].iloc[0])
    assert frames["target"].shape == (2, 3, 1, 32, 32) and frames["context"].shape == (2, 3, 1, 32, 32)
    assert frames["pred"].dtype == np.uint8 and frames["target"].max() > 0
    for other in finished["frames_file"]:  # the same test sequences for every run
        np.testing.assert_array_equal(read_frames(other)["target"], frames["target"])


def test_read_frames_refuses_pickles_and_bad_files(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros(3))
    with pytest.raises(DataError, match="not a frames file"):
        read_frames(tmp_path / "x.npy")
    np.savez(tmp_path / "obj.npz", target=np.array([{"a": 1}], dtype=object), pred=np.zeros((1, 1, 1, 2, 2), np.uint8))
    with pytest.raises(DataError, match="obj.npz"):
        read_frames(tmp_path / "obj.npz")
    np.savez(tmp_path / "float.npz", target=np.zeros((1, 1, 1, 2, 2)), pred=np.zeros((1, 1, 1, 2, 2), np.uint8))
    with pytest.raises(DataError, match="'target' must be uint8"):
        read_frames(tmp_path / "float.npz")


def _image(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=float)


def test_every_figure_is_written_and_not_empty(report):
    folder = report.out_dir / "figures"
    for stem in ("loss", "per_frame", "qualitative", "l1_weight"):
        png, pdf = folder / f"{stem}.png", folder / f"{stem}.pdf"
        pixels = _image(png)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300, stem
        assert pixels.std() > 10 and (pixels < 100).mean() > 0.001, f"{stem}.png looks blank"
        assert pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5000, stem
    assert report.sections[0].figure_problems == {}


def test_per_frame_figure_draws_the_baselines_per_frame(sweep):
    runs = collect(sweep)
    finished = runs[runs["status"] == "finished"]
    curves = finished["baseline_curves"].iloc[0]
    assert set(curves) == {"copy_last_frame", "blank"} and len(curves["blank"]["mse"]) == 3
    mse_axis = figures.per_frame_figure(runs).axes[0]
    copy_last = [line for line in mse_axis.lines if line.get_label() == "copy last frame"]
    expected = np.mean([c["copy_last_frame"]["mse"] for c in finished["baseline_curves"]], axis=0)
    assert len(copy_last) == 1 and list(copy_last[0].get_xdata()) == [1, 2, 3]
    np.testing.assert_allclose(copy_last[0].get_ydata(), expected)


def with_baseline_curves(run: Path, curves: dict[str, dict[str, list[float]]]) -> Path:
    """A fake record given per-frame curves of its trivial baselines, as the trainer stores them."""
    summary = json.loads((run / "summary.json").read_text())
    for baseline, by_metric in curves.items():
        summary["baselines"][baseline].update({f"{metric}_by_frame": curve for metric, curve in by_metric.items()})
    (run / "summary.json").write_text(json.dumps(summary))
    return run


BASELINE_CURVES = {  # two predicted frames, as record_run's runs predict
    "copy_last_frame": {"mse": [140.0, 181.0], "mae": [280.0, 320.5], "psnr": [15.0, 14.0], "ssim": [0.7, 0.52]},
    "blank": {"mse": [110.0, 110.0], "mae": [250.0, 250.0], "psnr": [15.25, 15.25], "ssim": [0.42, 0.42]},
}


def test_per_frame_figure_draws_both_trivial_baselines_in_every_panel(tmp_path):
    for name, overrides in (("e3d", ()), ("e2d", ("--model.conv=2d",))):
        with_baseline_curves(record_run(tmp_path / "curves", name, overrides), BASELINE_CURVES)
    figure = figures.per_frame_figure(collect(tmp_path / "curves"))
    for panel, metric in zip(figure.axes, ("mse", "ssim"), strict=True):
        drawn = {line.get_label(): line for line in panel.lines}
        for baseline, label in (("copy_last_frame", "copy last frame"), ("blank", "blank frame")):
            line = drawn[label]
            assert line.get_color() == "gray" and line.get_linestyle() in (":", "--"), (metric, label)
            assert list(line.get_xdata()) == [1, 2]
            np.testing.assert_allclose(line.get_ydata(), BASELINE_CURVES[baseline][metric])
        assert drawn["copy last frame"].get_linestyle() != drawn["blank frame"].get_linestyle()
    # Records from before the baselines' curves were stored: both still drawn, as their mean level.
    record_run(tmp_path / "levels", "e3d")
    for panel, metric in zip(figures.per_frame_figure(collect(tmp_path / "levels")).axes, ("mse", "ssim"), strict=True):
        drawn = {line.get_label(): line for line in panel.lines}
        assert list(drawn["blank frame"].get_ydata()) == [BASELINE_SCORES["blank"][metric]] * 2
        assert list(drawn["copy last frame"].get_ydata()) == [BASELINE_SCORES["copy_last_frame"][metric]] * 2


def test_a_model_that_loses_to_a_trivial_baseline_is_said_so_frame_by_frame(tmp_path):
    # record_run's curves are 0.9 and 1.1 times the mean: MSE 150 is [135, 165] (worse than the blank frame's 110 at
    # both frames, than the copied frame's 181 at neither), MSE 60 is [54, 66] (better than both at both).
    scores = {"mse": 150.0, "mae": 240.0, "psnr": 14.8, "ssim": 0.5}
    for seed in (0, 1):
        with_baseline_curves(record_run(tmp_path, f"e2d-{seed}", ("--model.conv=2d", f"--train.seed={seed}"), scores),
                             BASELINE_CURVES)  # fmt: skip
    with_baseline_curves(record_run(tmp_path, "e3d", (), {"mse": 60.0, "mae": 100.0, "psnr": 25.0, "ssim": 0.9}),
                         BASELINE_CURVES)  # fmt: skip
    assert baseline_losses(collect(tmp_path)) == [
        # PSNR [13.32, 16.28] against the copied frame's [15, 14], SSIM [0.45, 0.55] against [0.7, 0.52]: frame 1
        "E2D-LSTM loses to the copied last frame on SSIM and PSNR at predicted frame 1 of 2 (mean of 2 seeds).",
        "E2D-LSTM loses to the blank frame on MSE at every predicted frame (mean of 2 seeds).",  # [135, 165] > 110
        "E2D-LSTM loses to the blank frame on MAE at predicted frame 2 of 2 (mean of 2 seeds).",  # [216, 264], 250
        "E2D-LSTM loses to the blank frame on PSNR at predicted frame 1 of 2 (mean of 2 seeds).",  # [13.32, 16.28]
    ]  # E3D-LSTM is better than both at every frame: no sentence
    losing = tmp_path / "four" / "e3d"
    record_run(tmp_path / "four", "e3d", (), scores)
    summary = json.loads((losing / "summary.json").read_text())
    summary["metrics"]["test/mse_by_frame"] = [100.0, 120.0, 90.0, 130.0]
    for baseline in ("copy_last_frame", "blank"):
        summary["baselines"][baseline]["mse_by_frame"] = [110.0] * 4
    (losing / "summary.json").write_text(json.dumps(summary))
    assert baseline_losses(collect(tmp_path / "four"), metrics=("mse",)) == [
        "E3D-LSTM loses to the copied last frame on MSE at predicted frames 2 and 4 of 4.",
        "E3D-LSTM loses to the blank frame on MSE at predicted frames 2 and 4 of 4.",
    ]
    assert baseline_losses(collect(tmp_path / "four" / "e3d"), metrics=("ssim",)) == []  # no curves of SSIM stored


def test_when_each_model_from_scratch_left_its_plateau_is_said_seed_by_seed(tmp_path):
    """The study's question about its training-loss figure: which model leaves the early plateau first. A run leaves
    it at the first validation 5% below its first; a finetune starts below any plateau and gets no sentence."""
    assert plateau_step([(500, 145.1), (1000, 143.9), (1500, 131.5), (2000, 123.3)]) == 1500  # 137.8 is the bar
    assert plateau_step([(500, 100.0), (1000, 95.0)]) == 1000  # exactly 5% below counts
    assert plateau_step([(500, 100.0), (1000, 96.0)]) is None and plateau_step([(500, 100.0)]) is None
    for seed in (0, 1):
        record_run(tmp_path, f"e3d-{seed}", (f"--train.seed={seed}",))
        record_run(tmp_path, f"res-{seed}", ("--model.residual=true", f"--train.seed={seed}"))
    record_run(tmp_path, "finetuned", ("--train.init_from=pretrained/e3d.pt",))
    runs = collect(tmp_path)
    histories = {
        "e3d-0": [(500, 145.1), (1000, 143.9), (1500, 131.5)],
        "e3d-1": [(500, 142.7), (1000, 141.0), (1500, 139.0)],  # still on it at its last validation
        "res-0": [(500, 140.0), (1000, 120.0)],
        "res-1": [(500, 141.0), (1000, 139.0), (1500, 110.0)],
        "finetuned": [(10, 110.0), (20, 90.0)],
    }
    runs["val_history"] = [histories[name] for name in runs["run_name"]]
    assert plateau_sentences(runs) == [
        "Validation MSE first 5% below its first evaluation's (leaving the plateau):",
        "E3D-LSTM: step 1,500 (seed 0), not by step 1,500 (seed 1).",
        "E3D-LSTM + residuals: step 1,000 (seed 0), step 1,500 (seed 1).",
    ]
    runs["val_history"] = [[(500, 140.0)]] * len(runs)
    assert plateau_sentences(runs) == []  # one validation each: nothing to say


def test_qualitative_grid_has_a_row_per_variant(sweep, tmp_path):
    runs = collect(sweep)
    figure = figures.qualitative_figure(runs, sequences=2)
    # 2 sequences x (ground truth + 3 variants with frames: 3d l2 [2 seeds, first shown], 2d l2, 3d l1 0.5)
    labels = [axis.get_ylabel() for axis in figure.axes]
    assert labels.count("ground truth") == 2 and len(labels) == 8
    assert "E2D-LSTM, l2 only" in labels and "E3D-LSTM, l1+l2 (w=0.5)" in labels
    table_order = [row.name for row in study_table(runs).rows if row.name in labels]
    assert labels[1:4] == table_order == labels[5:8]  # rows in the study table's order
    figures.save_figure(figure, tmp_path / "q")


def test_qualitative_grid_refuses_different_test_sequences(sweep, tmp_path):
    runs = collect(sweep)
    e2d = runs.index[(runs["status"] == "finished") & (runs["conv"] == "2d")][0]
    moved = tmp_path / "other.npz"
    frames = read_frames(runs.loc[e2d, "frames_file"])
    np.savez_compressed(moved, **{**frames, "target": 255 - frames["target"]})
    runs.loc[e2d, "frames_file"] = str(moved)
    with pytest.raises(DataError, match="different ground truths"):
        figures.qualitative_figure(runs)
    with pytest.raises(DataError, match="no finished run saved"):
        figures.qualitative_figure(runs.assign(frames_file=None))


# ---------------------------------------------------------------------------------------------------------------------
# The report


def test_report_writes_tables_effects_points_and_runs(report, sweep):
    out = report.out_dir
    assert {"table.md", "table.tex", "table.csv", "effects.md", "effects.csv", "l1_weight.csv", "runs.csv",
            "report.html"} <= {p.name for p in out.iterdir()}  # fmt: skip
    table = (out / "table.md").read_text()
    assert "| E3D-LSTM, l2 only |" in table and "| E2D-LSTM, l1+l2 (w=0.5) | failed |" in table
    assert "pruned" in table  # the pruned trial's row says so rather than vanishing
    runs_csv = (out / "runs.csv").read_text()
    assert runs_csv.count("\n") == 7  # header + 6 runs
    assert f"python launch.py train {sweep / 'failed_2d' / 'config.yaml'}" in runs_csv
    assert "CUDA out of memory" in runs_csv
    best = report.sections[0].bests["l1_weight"]["moving_mnist"]
    assert best["status"] in ("finished", "pruned")


def test_report_table_tex_compiles_in_one_column(report, tmp_path):
    """The table.tex the report wrote, as written: pdflatex in a two-column article, no line wider than its column."""
    latex = (report.out_dir / "table.tex").read_text()
    assert r"\begin{table}" in latex and "E3D-LSTM, l2 only" in latex
    compile_table(latex, tmp_path / "tex")


def test_report_page_embeds_everything_and_marks_failed_runs(report, sweep):
    page = report.html.read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 4 + 3  # four figures, one GIF per variant with frames
    assert all(src.startswith(("data:image/png;base64,", "data:image/gif;base64,")) for src in images)
    assert 'src="http' not in page and "<link" not in page  # self-contained
    assert page.count('<table class="study">') == 1 and '<table class="effects">' in page
    failed_row = re.search(r'<tr class="stopped"><th scope="row"><a href="([^"]+)">failed_2d</a>', page)
    assert failed_row, "the failed run is listed as stopped, with a link to its folder"
    assert (report.html.parent / failed_row.group(1)).resolve() == (sweep / "failed_2d").resolve()
    for href in re.findall(r'<td><a href="([^"]+)"', page):  # table cells link to the run they came from
        assert (report.html.parent / href / "summary.json").is_file()


def test_report_of_two_sweeps_gets_a_section_each(sweep, tmp_path):
    other = grid(tmp_path / "grid")
    result = write_report([sweep, other], tmp_path / "out")
    assert [s.folder.name for s in result.sections] == ["demo", "grid"]
    assert (tmp_path / "out" / "grid" / "effects.md").is_file() and (tmp_path / "out" / "demo" / "table.md").is_file()
    # the tracker's records have no frames: the qualitative grid is reported as not drawn, the rest is there
    assert "qualitative" in result.sections[1].figure_problems
    assert 'class="problem"' in result.html.read_text()
    assert result.main_table() == (tmp_path / "out" / "demo" / "table.md").read_text()
    printed = result.tables_text()  # what launch.py report prints: every section's table, under its title
    assert printed.index("## ") < printed.index((tmp_path / "out" / "demo" / "table.md").read_text())
    assert (tmp_path / "out" / "grid" / "table.md").read_text() in printed and printed.count("\n## ") == 1


def test_cli_report_prints_the_table_and_the_page(sweep, tmp_path, capsys):
    assert launch.main(["report", str(sweep), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "| E3D-LSTM, l2 only |" in out and f"report: {tmp_path / 'r' / 'report.html'}" in out
    assert "best l1 weight" in out
    assert launch.main(["report"]) == 2
    assert "needs a folder of runs" in capsys.readouterr().err
    assert launch.main(["report", str(tmp_path / "nothing-here")]) == 2


# ---------------------------------------------------------------------------------------------------------------------
# The page in a real browser

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is not installed; .ci/run should have installed Debian's chromium")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    return found


@pytest.mark.slow
def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = _chromium()
    url = report.html.resolve().as_uri()
    common = [browser, *CHROMIUM_FLAGS, "--virtual-time-budget=10000"]
    dom = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    images = len(re.findall(r"<img ", report.html.read_text()))
    assert f'data-images="{images}/{images}"' in dom, "some image did not load"
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile-shot'}", "--window-size=1280,2400", f"--screenshot={shot}",
         url],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    pixels = _image(shot)
    assert pixels.shape == (2400, 1280)
    assert pixels.std() > 20, "the screenshot is blank"
    assert (pixels < 60).mean() > 0.01 and (pixels > 200).mean() > 0.3  # text and figures on a white page


def test_report_from_collected_frames_links_to_wandb_pages(sweep, tmp_path, capsys):
    runs = collect(sweep).assign(url=lambda frame: [f"https://wandb.example/runs/{n}" for n in frame["run_name"]])
    result = write_report(collected=[("W&B mentalsim, group demo", runs)], out_dir=tmp_path / "w")
    page = result.html.read_text()
    assert '<a href="https://wandb.example/runs/failed_2d">failed_2d</a>' in page
    with pytest.raises(ValueError, match="give out_dir"):
        write_report(collected=[("W&B", runs)])
    assert launch.main(["report", "--source", "wandb"]) == 2
    assert "--project" in capsys.readouterr().err


def test_report_logs_its_tables_and_figures_as_a_wandb_run(sweep, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for name in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home" / name.lower()))
    for name in ("WANDB_MODE", "WANDB_ERROR_REPORTING", "WANDB_SILENT", "WANDB_CONSOLE"):
        monkeypatch.delenv(name, raising=False)  # restored afterwards; the report sets what it needs
    monkeypatch.setenv("WANDB_PROJECT", "mentalsim-test")  # the user's project, as for every other run
    try:
        result = write_report([sweep], tmp_path / "out", wandb="offline")
    finally:
        wandb.teardown()
    log = result.sections[0].wandb_log
    run = read_offline_run(log.parent)
    assert (run["project"], run["group"], run["name"]) == ("mentalsim-test", "demo", "report-demo") and run["complete"]
    summary = run["summary"]
    table = read_offline_table(summary["study_table"])
    assert {row["row"] for row in table} >= {"E3D-LSTM, l2 only", "E2D-LSTM, l1+l2 (w=0.5)", "blank frame"}
    runs = read_offline_table(summary["runs"])
    assert len(runs) == 6 and {row["status"] for row in runs} == {"finished", "failed", "pruned"}
    assert len(read_offline_table(summary["axis_effects"])) > 0
    for stem in ("loss", "per_frame", "qualitative", "l1_weight"):
        assert summary[f"figures/{stem}"]["_type"] == "image-file"
        assert Path(summary[f"figures/{stem}"]["local_path"]).stat().st_size > 1000


def test_a_section_with_two_datasets_gets_figures_per_dataset(tmp_path, capsys):
    grid(tmp_path / "runs")
    kth = ("--data.dataset=kth", "--data.root=/data/kth")
    for name, weight, mse in (("k0", 0.0, 90.0), ("k1", 1.0, 80.0)):
        run = record_run(tmp_path / "runs", name, (*kth, f"--loss.l1_weight={weight}"), {"mse": mse, "mae": 1.0,
                         "psnr": 20.0, "ssim": 0.5}, test_set=KTH_TEST)  # fmt: skip
        summary = json.loads((run / "summary.json").read_text())
        for metric in ("mse", "mae", "psnr", "ssim"):  # KTH predicts 20 frames where Moving MNIST predicts 10
            summary["metrics"][f"test/{metric}_by_frame"] = [1.0, 2.0, 3.0]
        summary["best_val_mse"] = mse
        (run / "summary.json").write_text(json.dumps(summary))
    section = write_report([tmp_path / "runs"], tmp_path / "out").sections[0]
    assert {"per_frame-moving_mnist", "per_frame-kth", "loss-kth", "l1_weight-kth", "l1_weight-moving_mnist"} <= set(
        section.figures
    )
    assert section.figure_titles["per_frame-kth"] == "Test MSE and SSIM by predicted frame (KTH)"
    bests = section.bests["l1_weight"]
    assert bests["kth"]["l1_weight"] == 1.0 and bests["moving_mnist"]["l1_weight"] == 0.0
    assert launch.main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "again")]) == 0
    assert "best l1 weight on kth 1 " in capsys.readouterr().out


def test_a_folder_where_nothing_finished_still_reports_every_run(tmp_path):
    record_run(tmp_path / "runs", "a", (), status="failed")
    record_run(tmp_path / "runs", "b", ("--model.conv=2d",), status="diverged")
    (tmp_path / "runs" / "c").mkdir()
    (tmp_path / "runs" / "c" / "summary.json").write_text("{broken")
    result = write_report([tmp_path / "runs"], tmp_path / "out")
    table = result.main_table()
    assert "| E3D-LSTM | failed |" in table and "| E2D-LSTM | diverged |" in table
    assert "| c (unreadable record) | unreadable |" in table  # in the one table, not a table of its own
    assert len(result.sections[0].tables) == 1 and set(result.sections[0].figure_problems) == {"qualitative"}
