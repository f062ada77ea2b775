"""Video prediction models and their registry.

Every model module is imported here, explicitly: importing a module is what registers its models.
"""

from core.models.e3d_lstm import E3DLSTM, patch_fold, patch_unfold
from core.models.registry import build_model, model_names, register_model

__all__ = ["E3DLSTM", "build_model", "model_names", "patch_fold", "patch_unfold", "register_model"]
