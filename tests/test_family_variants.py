"""The recurrent families' variant files (ConvLSTM, PredRNN, PredRNN++) on both datasets: each resolves under every
profile its base defines, keeps its paper's cell, and its paper profile has its paper's sizes on the study's schedule
and builds a model that runs."""

import pytest
import torch
from torch import nn

from ablations.variants import ROOT
from core.config import load, profiles_of
from core.models import build_model
from core.variants import load_variant

DATASETS = {"moving_mnist": ("mmnist", []), "kth": ("kth", ["--data.root=/kth"])}
PAPER_SIZES = {  # hidden, spatial kernel, patch on (Moving MNIST, KTH)
    "convlstm": ((256, 128, 128), 5, (4, 8)),  # Shi et al. 2015
    "predrnn": ((128, 128, 128, 128), 5, (4, 8)),  # Wang et al. 2017
    "predrnnpp": ((128, 64, 64, 64), 5, (4, 8)),  # Wang et al. 2018
}


def _path(dataset: str, family: str):
    return ROOT / dataset / f"{family}.yaml"


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("family", PAPER_SIZES)
def test_every_profile_resolves_to_the_papers_cell(family, dataset):
    prefix, overrides = DATASETS[dataset]
    profiles = profiles_of(_path(dataset, family))
    assert set(profiles) == set(profiles_of(ROOT / dataset / "base.yaml")) and "paper" in profiles
    for profile in profiles:
        # load, not load_variant: the score profile names shipped weights that exist only once make pretrain wrote them.
        cfg = load(_path(dataset, family), overrides, profile)
        assert cfg.variant == f"{prefix}_{family}"
        assert (cfg.model.name, cfg.model.conv, cfg.model.window, cfg.model.residual) == (family, "2d", 1, False)


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("family", PAPER_SIZES)
def test_paper_profile_has_the_papers_sizes_on_the_studys_schedule(family, dataset):
    _, overrides = DATASETS[dataset]
    hidden, kernel, patches = PAPER_SIZES[family]
    cfg = load_variant(_path(dataset, family), overrides, "paper")
    patch = patches[list(DATASETS).index(dataset)]
    assert (cfg.model.hidden, cfg.model.filter_size, cfg.model.patch_size) == (hidden, kernel, patch)
    study = load_variant(ROOT / dataset / "e3d_baseline.yaml", overrides, "paper")
    assert cfg.train == study.train and cfg.data == study.data and cfg.loss == study.loss  # only the model differs


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("family", PAPER_SIZES)
def test_paper_profile_builds_a_model_that_runs(family, dataset):
    _, overrides = DATASETS[dataset]
    cfg = load_variant(_path(dataset, family), overrides, "paper")
    model = build_model(cfg.model, cfg.data.channels, cfg.data.image_size)
    hidden, side = cfg.model.hidden, cfg.data.image_size
    assert len(model.cells) == len(hidden) and model.decoder.in_channels == hidden[-1]
    assert model.decoder.out_channels == cfg.data.channels * cfg.model.patch_size**2
    kernels = {m.kernel_size for cell in model.cells for m in cell.modules() if isinstance(m, nn.Conv3d)}
    assert kernels == {(1, 5, 5), (1, 1, 1)} or kernels == {(1, 5, 5)}  # the paper's 5x5, per frame (and 1x1 ones)
    frames = torch.rand(1, 3, cfg.data.channels, side, side)  # batch 1, 2 frames in, 1 out: (B, T, C, H, W)
    with torch.no_grad():
        predictions = model(frames, context_frames=2)
    assert predictions.shape == (1, 2, cfg.data.channels, side, side) and torch.isfinite(predictions).all()
