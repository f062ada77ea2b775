"""Video prediction models and their registry.

Every model module is imported here, explicitly: importing a module is what registers its models. Each family is a
cell on the shared stack (:mod:`core.models.stack`).
"""

from core.models.convlstm import ConvLSTM
from core.models.e3d_lstm import E3DLSTM
from core.models.predrnn import PredRNN
from core.models.predrnnpp import PredRNNpp
from core.models.registry import build_model, model_names, register_model
from core.models.stack import RecurrentStack, patch_fold, patch_unfold

__all__ = [
    "ConvLSTM",
    "E3DLSTM",
    "PredRNN",
    "PredRNNpp",
    "RecurrentStack",
    "build_model",
    "model_names",
    "patch_fold",
    "patch_unfold",
    "register_model",
]
