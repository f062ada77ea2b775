"""analysis.collect and analysis.tables on run records written by the real tracker (W&B disabled)."""

import json
import math
import re
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.collect import COLUMNS, collect, find_run_dirs
from analysis.labels import PUBLISHED
from analysis.rows import row_axes
from analysis.tables import IncomparableRunsError, study_table
from core.axes import axis_values, recorded_axes, variant_name
from core.config import load, to_dict
from core.tracking import Tracker

MNIST_TEST = "generated Moving MNIST test set (test digits, seed 1, 2000 sequences)"
KTH_TEST = "KTH test persons 17-25 under /data/kth (120 windows of 30)"
BASELINE_SCORES = {
    "copy_last_frame": {"mse": 160.5, "mae": 300.25, "psnr": 14.5, "ssim": 0.61},
    "blank": {"mse": 110.0, "mae": 250.0, "psnr": 15.25, "ssim": 0.42},
}


def record_run(
    root: Path,
    name: str,
    overrides: tuple[str, ...] = (),
    scores: dict[str, float] | None = None,
    status: str = "finished",
    test_set: str = MNIST_TEST,
    convention: str = "ours",
    losses: tuple[tuple[int, float], ...] = ((10, 0.9), (20, 0.5)),
    by_sequence: dict[str, np.ndarray] | None = None,
) -> Path:
    """A run record as the trainer leaves it: config, loss rows, and a summary with test metrics when finished (and
    per-sequence test scores when given)."""
    cfg = load(None, ["--variant=test_variant", *overrides])
    run_dir = root / name
    try:
        with Tracker(run_dir, cfg, mode="disabled") as tracker:
            tracker.summary("running", test_set=test_set)
            for step, loss in losses:
                tracker.log({"train/loss": loss, "train/loss_l1": loss / 2}, step=step)
            if status == "finished":
                scores = scores or {"mse": 50.0, "mae": 100.0, "psnr": 20.0, "ssim": 0.8}
                metrics = {f"test/{k}": v for k, v in scores.items()}
                metrics |= {f"test/{k}_by_frame": [v * 0.9, v * 1.1] for k, v in scores.items()}
                metrics |= {"test/num_sequences": 2000, "test/ssim_convention": convention}
                step = losses[-1][0]
                tracker.log(metrics, step=step)
                if by_sequence is not None:
                    tracker.log_by_sequence(test_set, by_sequence)
                tracker.summary(
                    "finished",
                    metrics=metrics,
                    baselines=BASELINE_SCORES,
                    test_set=test_set,
                    step=step,
                    best_val_mse=scores["mse"] + 1,
                )
            elif status == "failed":
                raise RuntimeError("out of memory")
            else:
                tracker.summary(status, reason=f"{status} at step {losses[-1][0]}")
    except RuntimeError:
        pass
    return run_dir


def mmnist_study(root: Path) -> dict[str, Path]:
    """A small sweep: the baseline over 3 seeds, E2D over 2 (one diverged), residuals finetuned (failed), l1 only."""
    runs = {}
    for seed, (mse, ssim) in enumerate([(40.0, 0.90), (44.0, 0.92), (45.5, 0.88)]):
        runs[f"base{seed}"] = record_run(
            root, f"e3d_seed{seed}", (f"--train.seed={seed}",), {"mse": mse, "mae": 2 * mse, "psnr": 21.0, "ssim": ssim}
        )
    runs["e2d0"] = record_run(
        root, "e2d_seed0", ("--model.conv=2d",), {"mse": 60.0, "mae": 70.0, "psnr": 19.5, "ssim": 0.95}
    )
    runs["e2d1"] = record_run(root, "e2d_seed1", ("--model.conv=2d", "--train.seed=1"), status="diverged")
    runs["res"] = record_run(
        root,
        "res_ft_seed0",
        ("--model.residual=true", "--train.init_from=runs/base/checkpoints/best.pt"),
        status="failed",
    )
    runs["l1"] = record_run(
        root, "l1_seed0", ("--loss.l1_weight=1",), {"mse": 52.0, "mae": 95.0, "psnr": 22.5, "ssim": 0.7}
    )
    return runs


# ---------------------------------------------------------------------------------------------------------------------
# collect


def test_collect_reads_the_tracker_records(tmp_path):
    runs = mmnist_study(tmp_path / "runs" / "sweep")
    (runs["base0"] / "frames").mkdir()
    (runs["base0"] / "frames" / "summary.json").write_text("{}")  # inside a run folder: not a run of its own
    frame = collect(tmp_path / "runs")
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 7
    assert frame["run_dir"].tolist() == sorted(str(p) for p in runs.values())

    base = frame.set_index("run_name").loc["e3d_seed1"]
    assert base["status"] == "finished"
    axes = ("dataset", "conv", "residual", "init", "seed")
    assert tuple(base[axis] for axis in axes) == ("moving_mnist", "3d", False, "scratch", 1)
    assert base["l1_weight"] == pytest.approx(2 / 3)
    assert (base["mse"], base["mae"], base["psnr"], base["ssim"]) == (44.0, 88.0, 21.0, 0.92)
    assert base["mse_by_frame"] == pytest.approx([44.0 * 0.9, 44.0 * 1.1])
    assert base["loss_history"] == [(10, 0.9), (20, 0.5)]
    assert base["best_val_mse"] == 45.0
    assert base["test_set"] == MNIST_TEST and base["ssim_convention"] == "ours" and base["num_sequences"] == 2000
    assert base["blank_mse"] == 110.0 and base["copy_last_frame_ssim"] == 0.61
    rows = [json.loads(line) for line in (runs["base1"] / "metrics.jsonl").read_text().splitlines()]
    assert base["run_time_s"] == max(row["time"] for row in rows)
    assert base["command"] == f"python launch.py train {runs['base1'] / 'config.yaml'}"
    summary = json.loads((runs["base1"] / "summary.json").read_text())
    assert base["config_hash"] == summary["config_hash"]


def test_collect_keeps_runs_that_did_not_finish(tmp_path):
    runs = mmnist_study(tmp_path)
    killed = tmp_path / "killed_early"
    killed.mkdir()
    (runs["base0"] / "config.yaml").rename(killed / "config.yaml")  # died before its first summary
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "summary.json").write_text('{"status": "fini')
    frame = collect(tmp_path).set_index("run_name")
    assert len(frame) == 9
    assert frame.loc["e2d_seed1", "status"] == "diverged"
    assert frame.loc["e2d_seed1", "status_reason"] == "diverged at step 20"
    assert frame.loc["res_ft_seed0", "status"] == "failed"
    assert "out of memory" in frame.loc["res_ft_seed0", "status_reason"]
    assert frame.loc["res_ft_seed0", "init"] == "finetuned"
    assert frame.loc["res_ft_seed0", "loss_history"] == [(10, 0.9), (20, 0.5)]
    assert frame.loc["killed_early", "status"] == "no summary"
    assert frame.loc["killed_early", "dataset"] == "moving_mnist"
    assert frame.loc["broken", "status"] == "unreadable"
    for name in ("e2d_seed1", "res_ft_seed0", "killed_early", "broken"):
        assert all(math.isnan(frame.loc[name, metric]) for metric in ("mse", "mae", "psnr", "ssim"))


def test_find_run_dirs_needs_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_run_dirs(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------------------------
# names


@pytest.mark.parametrize(
    "axes, name",
    [
        ({"conv": "3d", "residual": False, "l1_weight": 2 / 3, "init": "scratch"}, "E3D-LSTM"),
        ({"conv": "2d", "residual": False, "l1_weight": 2 / 3, "init": "scratch"}, "E2D-LSTM"),
        ({"conv": "3d", "residual": True, "l1_weight": 2 / 3, "init": "scratch"}, "E3D-LSTM + residuals"),
        ({"conv": "3d", "residual": True, "l1_weight": 2 / 3, "init": "finetuned"}, "E3D-LSTM + residuals, finetuned"),
        ({"conv": "3d", "residual": False, "l1_weight": 1.0, "init": "scratch"}, "E3D-LSTM, l1 only"),
        ({"conv": "3d", "residual": False, "l1_weight": 0.0, "init": "scratch"}, "E3D-LSTM, l2 only"),
        ({"conv": "3d", "residual": False, "l1_weight": 0.25, "init": "scratch"}, "E3D-LSTM, l1+l2 (w=0.25)"),
        ({"conv": "3d", "recall": "off", "memory_flow": "zigzag"}, "E3D-LSTM, zigzag memory flow, no recall"),
        (
            {"conv": "3d", "residual": "gated", "l1_weight": 0.0, "init": "finetuned"},
            "E3D-LSTM + gated residuals, l2 only, finetuned",
        ),
    ],
)
def test_variant_name(axes, name):
    assert variant_name(axes) == name


def test_the_residual_axis_has_a_level_per_kind_of_skip():
    """None, the study's fixed skips, zero-started gated ones: one axis, so each kind is compared with none; the
    gate's own key is no separate row axis."""

    def recorded(*overrides):
        return recorded_axes(to_dict(load(None, list(overrides))))["residual"]

    assert recorded() is False and recorded("--model.residual=true") is True
    assert recorded("--model.residual=true", "--model.residual_gate=zero") == "gated"
    configs = [to_dict(load(None, o)) for o in ([], ["--model.residual=true", "--model.residual_gate=zero"])]
    runs = pd.DataFrame({"config": [dict(axis_values(c)) for c in configs]})
    assert "model.residual_gate" not in {each.key for each in row_axes(runs)}


# ---------------------------------------------------------------------------------------------------------------------
# tables


@pytest.fixture
def study(tmp_path):
    mmnist_study(tmp_path)
    return collect(tmp_path)


def test_table_values_are_the_records_mean_and_std(study):
    table = study_table(study)
    cell = table.cell("E3D-LSTM", "moving_mnist", "mse")
    mse = [40.0, 44.0, 45.5]
    mean = sum(mse) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in mse) / 2)  # sample std over seeds
    assert cell.mean == pytest.approx(mean) and cell.std == pytest.approx(std) and cell.n == 3
    assert cell.text == f"{mean:.1f} ± {std:.1f}"
    ssim = table.cell("E3D-LSTM", "moving_mnist", "ssim")
    assert ssim.text == f"{np.mean([0.90, 0.92, 0.88]):.3f} ± {np.std([0.90, 0.92, 0.88], ddof=1):.3f}"
    assert table.cell("E3D-LSTM", "moving_mnist", "seeds").text == "3"
    # One seed: the mean alone, exactly the record.
    l1 = table.cell("E3D-LSTM, l1 only", "moving_mnist", "psnr")
    assert (l1.mean, l1.text, l1.n) == (22.5, "22.50", 1)
    assert [row.name for row in table.rows] == [
        "E3D-LSTM",
        "E2D-LSTM",
        "E3D-LSTM, l1 only",
        "E3D-LSTM + residuals, finetuned",
        "copy last frame",
        "blank frame",
    ]
    assert table.cell("blank frame", "moving_mnist", "mse").text == "110.0"
    assert table.cell("copy last frame", "moving_mnist", "ssim").mean == pytest.approx(0.61)


def test_no_bold_where_a_single_seed_decides(study):
    """The study's best cells all compare a row with one finished seed, whose noise is unmeasured: nothing is bold."""
    table = study_table(study)
    assert not any(cell.bold for row in table.rows for cell in row.cells.values())
    assert "beyond seed noise" in table.caption


def _seeds(root, name, overrides, mses):
    for seed, mse in enumerate(mses):
        record_run(root, f"{name}{seed}", (*overrides, f"--train.seed={seed}"),
                   {"mse": mse, "mae": 2 * mse, "psnr": 20.0, "ssim": 0.5})  # fmt: skip


def test_bold_only_beyond_seed_noise(tmp_path):
    _seeds(tmp_path / "far", "a", (), [40.0, 41.0, 42.0])
    _seeds(tmp_path / "far", "b", ("--model.conv=2d",), [50.0, 51.0, 52.0])  # 10 worse, spread 1: beyond noise
    table = study_table(collect(tmp_path / "far"))
    assert table.cell("E3D-LSTM", "moving_mnist", "mse").bold and not table.cell("E2D-LSTM", "moving_mnist", "mse").bold
    assert "| E3D-LSTM | **41.0 ± 1.0** | **82.0 ± 2.0** |" in table.to_markdown()
    assert r"\textbf{\meanstd{41.0}{1.0}}" in table.to_latex()
    assert not table.cell("E3D-LSTM", "moving_mnist", "psnr").bold  # every row 20.0: a tie is no best
    _seeds(tmp_path / "near", "a", (), [40.0, 44.0, 38.0])
    _seeds(tmp_path / "near", "b", ("--model.conv=2d",), [42.0, 45.0, 41.0])  # 2 worse, spread 3: within noise
    near = study_table(collect(tmp_path / "near"))
    assert not any(cell.bold for row in near.rows for cell in row.cells.values() if row.kind == "variant")


def test_bold_can_go_to_a_baseline(tmp_path):
    record_run(tmp_path, "a", scores={"mse": 500.0, "mae": 900.0, "psnr": 9.0, "ssim": 0.1})
    table = study_table(collect(tmp_path))
    assert table.cell("blank frame", "moving_mnist", "mse").bold
    assert not table.cell("E3D-LSTM", "moving_mnist", "mse").bold


def test_failed_and_unfinished_runs_appear_as_such(study):
    table = study_table(study)
    failed = table.cell("E3D-LSTM + residuals, finetuned", "moving_mnist", "mse")
    assert failed.text == "failed" and math.isnan(failed.mean) and not failed.bold
    assert table.cell("E3D-LSTM + residuals, finetuned", "moving_mnist", "seeds").text == "0 of 1 (1 failed)"
    e2d = table.cell("E2D-LSTM", "moving_mnist", "mse")
    assert (e2d.mean, e2d.n, e2d.text) == (60.0, 1, "60.0")
    assert "failed" in table.to_latex() and "1 of 2 (1 diverged)" in table.to_csv()


def test_latex_is_booktabs_and_well_formed(study):
    latex = study_table(study, published=True).to_latex()
    assert latex.count("{") == latex.count("}")
    depth = 0
    for char in latex.replace(r"\{", "").replace(r"\}", ""):
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabularx}{\linewidth}", r"X" + "r" * 5 + "@{}}"):
        assert rule in latex
    assert r"\begin{table}[t]" in latex and r"\usepackage{booktabs}" in latex and r"\usepackage{tabularx}" in latex
    assert latex.index(r"\toprule") < latex.index(r"\midrule") < latex.index(r"\bottomrule")
    body = latex[latex.index(r"\toprule") : latex.index(r"\bottomrule")]
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    published = sum(entry.dataset == "moving_mnist" for entry in PUBLISHED)
    assert published == 4 and len(rows) == 1 + 6 + published  # header, our 4 variants and 2 baselines, published
    for line in rows:  # 6 columns, a \multicolumn{k} counting as k
        spans = sum(int(k) - 1 for k in re.findall(r"\\multicolumn\{(\d+)\}", line))
        assert line.count("&") - line.count(r"\&") + spans == 5, line
    mse = [40.0, 44.0, 45.5]
    assert rf"\meanstd{{{np.mean(mse):.1f}}}{{{np.std(mse, ddof=1):.1f}}}" in latex and r"\textbf" not in latex
    assert "data\\_range" in latex and "±" not in latex


def test_latex_caption_is_one_sentence_and_the_conventions_are_notes(study):
    latex = study_table(study, published=True).to_latex()
    caption = re.search(r"\\caption\{(.*)\}$", latex, re.MULTILINE).group(1)
    assert caption == r"E3D-LSTM variants on Moving MNIST (test scores; mean $\pm$ std over seeds)."
    notes = latex[latex.index(r"\end{tabularx}") : latex.index(r"\end{table}")]
    for convention in (MNIST_TEST, "data\\_range=1", "summed over the pixels", "ddof=1", "Welch", "(published)"):
        assert convention in notes, convention
    # a row whose runs all stopped says so once; the Seeds column keeps finished/all, the notes what became of them
    assert r"E3D-LSTM + residuals, finetuned & \multicolumn{4}{c}{failed} & 0/1 \\" in latex
    assert "E2D-LSTM (1 diverged); E3D-LSTM + residuals, finetuned (1 failed)." in notes


def test_latex_with_two_datasets_groups_columns(tmp_path):
    record_run(tmp_path, "m", ())
    record_run(tmp_path, "k", ("--data.dataset=kth", "--data.root=/data/kth"), test_set=KTH_TEST)
    table = study_table(collect(tmp_path))
    latex = table.to_latex()
    assert r"\begin{table*}[t]" in latex and latex.rstrip().endswith(r"\end{table*}")  # both columns of a paper
    assert r"\multicolumn{5}{c}{Moving MNIST} & \multicolumn{5}{c}{KTH} \\" in latex
    assert r"\cmidrule(lr){2-6}\cmidrule(lr){7-11}" in latex
    body = latex[latex.index(r"\midrule") : latex.index(r"\bottomrule")]
    assert all(line.count("&") == 10 for line in body.splitlines() if line.endswith(r"\\"))
    assert "MSE (KTH)" in table.to_markdown()
    assert MNIST_TEST in table.caption and KTH_TEST in table.caption


def test_csv_round_trips_numbers_and_run_folders(study):
    table = study_table(study)
    back = pd.read_csv(StringIO(table.to_csv()), keep_default_na=False)
    cells = back[(back["row"] == "E3D-LSTM") & (back["metric"] == "mse")].iloc[0]
    expected = table.cell("E3D-LSTM", "moving_mnist", "mse")
    assert float(cells["mean"]) == expected.mean and float(cells["std"]) == expected.std and cells["n"] == 3
    finished = study[(study["status"] == "finished") & (study["conv"] == "3d") & (study["l1_weight"] < 0.9)]
    assert sorted(cells["run_dirs"].split(";")) == sorted(finished["run_dir"])
    assert cells["test_set"] == MNIST_TEST and cells["ssim_convention"] == "ours"
    for run_dir in cells["run_dirs"].split(";"):
        assert (Path(run_dir) / "summary.json").is_file()
    failed = back[(back["row"] == "E3D-LSTM + residuals, finetuned") & (back["metric"] == "mse")].iloc[0]
    assert failed["mean"] == "" and failed["text"] == "failed" and failed["status"] == "1 failed"


def test_csv_is_written_to_a_file(study, tmp_path):
    path = tmp_path / "table.csv"
    text = study_table(study).to_csv(path)
    assert path.read_text(encoding="utf-8") == text


def test_mixing_test_sets_raises_or_splits(tmp_path):
    record_run(tmp_path, "a", ())
    record_run(tmp_path, "b", ("--train.seed=1",), test_set="mnist_test_seq.npy (10000 sequences)")
    record_run(tmp_path, "c", ("--train.seed=2",), status="diverged", test_set="mnist_test_seq.npy (10000 sequences)")
    runs = collect(tmp_path)
    with pytest.raises(IncomparableRunsError, match=re.escape("mnist_test_seq.npy")) as error:
        study_table(runs)
    assert MNIST_TEST in str(error.value) and "split_by_test_set" in str(error.value)
    tables = study_table(runs, split_by_test_set=True)
    assert sorted(t.test_sets["moving_mnist"] for t in tables) == sorted(
        [MNIST_TEST, "mnist_test_seq.npy (10000 sequences)"]
    )
    by_test_set = {t.test_sets["moving_mnist"]: t for t in tables}
    assert by_test_set[MNIST_TEST].cell("E3D-LSTM", "moving_mnist", "seeds").text == "1"
    other = by_test_set["mnist_test_seq.npy (10000 sequences)"]
    assert other.cell("E3D-LSTM", "moving_mnist", "seeds").text == "1 of 2 (1 diverged)"
    assert "mnist_test_seq.npy" in other.to_markdown().splitlines()[0]


def test_mixing_ssim_conventions_raises(tmp_path):
    record_run(tmp_path, "a", ())
    record_run(tmp_path, "b", ("--train.seed=1",), convention="release")
    with pytest.raises(IncomparableRunsError, match="SSIM convention release"):
        study_table(collect(tmp_path))
    tables = study_table(collect(tmp_path), split_by_test_set=True)
    assert sorted(t.ssim_conventions["moving_mnist"] for t in tables) == ["ours", "release"]


def test_runs_that_differ_outside_the_study_axes_are_rows_of_their_own(tmp_path):
    """Any config key is an axis: two profiles' runs are two rows, never averaged as if they were seeds."""
    record_run(tmp_path / "demo", "a", ("--train.steps=10",), {"mse": 60.0, "mae": 1.0, "psnr": 1.0, "ssim": 0.5})
    record_run(tmp_path / "paper", "a", ("--train.steps=20",), {"mse": 40.0, "mae": 1.0, "psnr": 1.0, "ssim": 0.5})
    table = study_table(collect(tmp_path), baselines=False)
    assert [row.name for row in table.rows] == ["E3D-LSTM, steps=10", "E3D-LSTM, steps=20"]
    assert table.cell("E3D-LSTM, steps=20", "moving_mnist", "mse").mean == 40.0


def test_the_same_run_twice_is_not_averaged(tmp_path):
    record_run(tmp_path / "demo", "a")
    record_run(tmp_path / "search", "a")
    with pytest.raises(IncomparableRunsError, match="share their axes and seed"):
        study_table(collect(tmp_path))


def test_published_rows_are_marked_and_never_bold(tmp_path):
    record_run(
        tmp_path,
        "k",
        ("--data.dataset=kth", "--data.root=/data/kth"),
        test_set=KTH_TEST,
        scores={"mse": 300.0, "mae": 600.0, "psnr": 25.0, "ssim": 0.7},
    )
    record_run(
        tmp_path,
        "k1",
        ("--data.dataset=kth", "--data.root=/data/kth", "--train.seed=1"),
        test_set=KTH_TEST,
        scores={"mse": 310.0, "mae": 610.0, "psnr": 25.5, "ssim": 0.71},
    )
    table = study_table(collect(tmp_path), published=True)
    published = [row for row in table.rows if row.kind == "published"]
    assert len(published) == 8  # design.md section 1's KTH rows
    assert all(row.name.endswith("(published)") for row in published)
    assert all(not cell.bold for row in published for cell in row.cells.values())
    paper = table.cell("E3D-LSTM (paper) (published)", "kth", "psnr")
    assert (paper.mean, paper.text) == (29.31, "29.31")
    assert table.cell("E3D-LSTM (paper) (published)", "kth", "ssim").text == "0.879†"  # release convention, not ours
    assert table.cell("E3D-LSTM", "kth", "psnr").bold  # ours is bold although a published number is higher
    assert "release convention" in table.caption and "(published)" in table.caption
    assert table.rows[-1].kind == "published"
    assert "Moving MNIST" not in table.to_markdown()  # only the table's datasets' published rows


def test_published_ssim_unmarked_under_the_release_convention(tmp_path):
    record_run(tmp_path, "m", (), convention="release")
    table = study_table(collect(tmp_path), published=True)
    assert table.cell("E3D-LSTM (paper) (published)", "moving_mnist", "ssim").text == "0.910"
    assert table.cell("E3D-LSTM (paper) (published)", "moving_mnist", "mse").text == "41.3"
    assert "†" not in table.to_markdown()


def test_unknown_metric_and_empty_runs_are_errors(study):
    with pytest.raises(ValueError, match="unknown metrics"):
        study_table(study, metrics=("mse", "lpips"))
    with pytest.raises(ValueError, match="no runs"):
        study_table(study.iloc[:0])


def test_the_caption_names_the_models_the_table_holds(tmp_path):
    mmnist_study(tmp_path / "runs")
    runs = collect(tmp_path / "runs")
    assert study_table(runs).caption.startswith("E3D-LSTM variants.")
    runs.loc[runs.index[0], "family"] = "convlstm"  # one row of another family
    assert study_table(runs).caption.startswith("Recurrent model variants.")
    assert study_table(runs, title="Mine").caption.startswith("Mine.")


def test_families_are_compared_as_their_papers_built_them(tmp_path):
    """E3D-LSTM (2x5x5 kernels over 2 frames) against ConvLSTM (5x5 over 1 frame): their kernel and window differ
    with the family, so pairing on them finds no pair; each family at its paper's cell pairs by seed instead, and the
    rows are named by the family alone. Where runs at equal kernels and windows exist, those pairs are the effect."""
    from analysis.effects import axis_effects

    def family_effect() -> pd.Series:
        effects = axis_effects(collect(tmp_path), metrics=("mse",))
        return effects[effects["axis"] == "family"].iloc[0]

    _seeds(tmp_path, "e3d", (), [100.0, 102.0])
    _seeds(tmp_path, "convlstm", ("--model.name=convlstm", "--model.conv=2d", "--model.window=1"), [90.0, 91.0])
    effect = family_effect()
    assert effect["value"] == "convlstm" and effect["pairs"] == 2 and effect["effect"] == pytest.approx(-10.5)
    assert effect["change"] == "model: E3D-LSTM → ConvLSTM"
    _seeds(tmp_path, "convlstm3d", ("--model.name=convlstm", "--model.conv=3d", "--model.window=2"), [95.0, 97.0])
    assert family_effect()["effect"] == pytest.approx(-5.0)  # E3D-LSTM's own kernel and window, in ConvLSTM
    names = {row.name for row in study_table(collect(tmp_path)).rows if row.kind == "variant"}
    assert names == {"E3D-LSTM", "ConvLSTM", "ConvLSTM, 3D kernels, window=2"}
