"""The analysis side's words and reference numbers: metric, dataset and baseline labels, the conventions every
table states, and the published numbers shown beside ours. (Axis names and labels live in :mod:`core.axes`.)"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TABLE_METRICS = ("mse", "mae", "ssim", "psnr")
"""The study's columns, in its order."""

LOWER_IS_BETTER = {"mse": True, "mae": True, "ssim": False, "psnr": False}
METRIC_LABELS = {"mse": "MSE", "mae": "MAE", "ssim": "SSIM", "psnr": "PSNR"}
DATASET_LABELS = {"moving_mnist": "Moving MNIST", "kth": "KTH"}
BASELINE_LABELS = {"copy_last_frame": "copy last frame", "blank": "blank frame"}
SSIM_CONVENTIONS = {
    "ours": "scikit-image SSIM with data_range=1 on [0,1] frames",
    "release": "scikit-image SSIM with data_range=2, as the release and OpenSTL computed it (higher than ours)",
}

CONVENTIONS_NOTE = (
    "MSE and MAE per frame: squared (absolute) error summed over the pixels of a [0,1] frame, averaged over sequences "
    "and predicted frames; PSNR on frames truncated to uint8, differences in int32; predictions clipped to [0,1]."
)


@dataclass(frozen=True)
class PublishedRow:
    """A number printed in a paper, shown for reference beside ours: not recomputed, never bold."""

    name: str
    dataset: str
    values: Mapping[str, float]
    source: str
    ssim_convention: str = "release"


PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow("E3D-LSTM (paper)", "kth", {"psnr": 29.31, "ssim": 0.879}, "E3D-LSTM paper (Wang et al., ICLR 2019)"),
    PublishedRow("E3D-LSTM baseline (study's rerun)", "kth", {"psnr": 27.73, "ssim": 0.844}, "the study's table"),
    PublishedRow("E2D-LSTM (study)", "kth", {"psnr": 26.30, "ssim": 0.824}, "the study's table"),
    PublishedRow("E3D-LSTM + residuals (study)", "kth", {"psnr": 27.61, "ssim": 0.863}, "the study's table"),
    PublishedRow("E3D-LSTM + residuals, finetuned (study)", "kth", {"psnr": 29.87, "ssim": 0.881}, "the study's table"),
    PublishedRow("ConvLSTM", "kth", {"psnr": 23.58, "ssim": 0.712}, "the study's table"),
    PublishedRow("PredRNN", "kth", {"psnr": 27.55, "ssim": 0.839}, "the study's table"),
    PublishedRow("PredRNN++", "kth", {"psnr": 28.47, "ssim": 0.865}, "the study's table"),
    PublishedRow(
        "E3D-LSTM (paper)", "moving_mnist", {"mse": 41.3, "ssim": 0.910}, "E3D-LSTM paper (Wang et al., ICLR 2019)"
    ),
    PublishedRow("ConvLSTM", "moving_mnist", {"mse": 103.3, "ssim": 0.707}, "E3D-LSTM paper, Table 1"),
    PublishedRow("PredRNN", "moving_mnist", {"mse": 56.8, "ssim": 0.867}, "E3D-LSTM paper, Table 1"),
    PublishedRow("PredRNN++", "moving_mnist", {"mse": 46.5, "ssim": 0.898}, "E3D-LSTM paper, Table 1"),
)
"""design.md section 1: KTH PSNR/SSIM from the study's table, Moving MNIST (10 -> 10) MSE per frame and SSIM from the
E3D-LSTM paper's Table 1 (its own row and three of the recurrent models it compares with); SSIM under the release
convention; measured on their authors' test sets, not ours."""
