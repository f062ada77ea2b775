import pytest

from ablations.variants import ROOT, variant_files
from core.config import ConfigError, config_hash, profiles_of
from core.records import run_dir_for
from core.variants import load_variant

STUDY_ROWS = {"e3d_baseline", "e2d", "residual", "residual_finetuned", "l1_only", "l2_only"}
OUR_ROWS = {"residual_gated"}  # beyond the study: its skips behind gates that start at 0
# The field's other recurrent models (issue 26).
FAMILY_ROWS = {dataset: {"convlstm", "predrnn", "predrnnpp"} for dataset in ("moving_mnist", "kth")}


def test_every_study_row_exists_for_both_datasets():
    for dataset in ("moving_mnist", "kth"):
        rows = {p.stem for p in (ROOT / dataset).glob("*.yaml")} - {"base"}
        assert rows == STUDY_ROWS | OUR_ROWS | FAMILY_ROWS[dataset]


@pytest.mark.parametrize("path", variant_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
@pytest.mark.parametrize("profile", ["paper", "demo"])
def test_every_variant_loads_under_both_profiles(path, profile):
    assert set(profiles_of(path)) >= {"paper", "demo"}
    cfg = load_variant(path, ["--data.root=/kth"] if "kth" in str(path) else [], profile)
    assert cfg.variant == f"{'mmnist' if path.parent.name == 'moving_mnist' else 'kth'}_{path.stem}"


def test_the_axes_are_what_the_study_says():
    mm = {p.stem: load_variant(p, profile="paper") for p in variant_files() if p.parent.name == "moving_mnist"}
    assert mm["e3d_baseline"].model.conv == "3d" and not mm["e3d_baseline"].model.residual
    assert mm["e2d"].model.conv == "2d"
    assert mm["residual"].model.residual and mm["residual"].train.init_from is None
    assert mm["residual"].model.residual_gate == "fixed" and mm["residual_gated"].model.residual_gate == "zero"
    assert mm["l1_only"].loss.l1_weight == 1.0 and mm["l2_only"].loss.l1_weight == 0.0
    assert mm["e3d_baseline"].loss.l1_weight == pytest.approx(2 / 3)
    assert mm["residual_finetuned"].train.lr == 1e-6 and mm["e3d_baseline"].train.steps == 80000
    assert mm["e3d_baseline"].model.hidden == (64, 64, 64, 64)


def test_finetuned_variant_starts_from_the_baselines_run():
    for dataset, lr in (("moving_mnist", 1e-6), ("kth", 1e-5)):
        extra = ["--train.seed=3", "--data.root=/kth", "--train.lr=0.5"]
        tuned = load_variant(ROOT / dataset / "residual_finetuned.yaml", extra, "paper")
        base = load_variant(ROOT / dataset / "e3d_baseline.yaml", extra[:2], "paper")
        assert tuned.train.init_from == str(run_dir_for(base))
        assert config_hash(base).endswith(tuned.train.init_from[-8:]) and tuned.train.lr == 0.5
        assert load_variant(ROOT / dataset / "residual_finetuned.yaml", extra[:2], "paper").train.lr == lr


def test_missing_source_variant_is_an_error(tmp_path):
    (tmp_path / "v.yaml").write_text("train: {init_from: nowhere.yaml}\n")
    with pytest.raises(ConfigError, match=r"v\.yaml: train\.init_from names nowhere\.yaml"):
        load_variant(tmp_path / "v.yaml")
