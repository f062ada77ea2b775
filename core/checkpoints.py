"""A run's checkpoints: written atomically, read back with torch's weights-only unpickler, and fitted onto a model.

A checkpoint (``checkpoints/last.pt``, ``checkpoints/best.pt``) holds the model, the optimiser, the step, the RNG
states and the resolved config (:data:`CHECKPOINT_FORMAT`). This module imports neither the trainer nor the release's
checkpoint reader: both build on it.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

from core.config import Config, to_dict
from core.io import CheckpointError, atomic_write

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer, step: int, cfg: Config, best_val: float) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "best_val_mse": best_val,
        "config": to_dict(cfg),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    if torch.cuda.is_available():
        state["rng"]["cuda"] = torch.cuda.get_rng_state_all()
    with atomic_write(path) as handle:
        torch.save(state, handle)


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict:
    """Read a checkpoint with torch's weights-only unpickler (tensors and plain containers; no code can run)."""
    path = Path(path)
    if path.is_dir():
        path = checkpoint_in(path)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # truncated, not a checkpoint, or holding objects the safe unpickler refuses
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise CheckpointError(f"{path}: not a mentalsim checkpoint (format {CHECKPOINT_FORMAT})")
    state["path"] = str(path)
    return state


FIDELITY_CHANGES = (
    "layer-norm epsilon 1e-12, KTH windows ending on each clip's last frame and validated on held-out persons, "
    "the study's residual wiring at odd depth, the release's sampling schedule, a training stream apart from the "
    "fixed sets' seeds"
)


def checkpoint_fidelity(state: dict) -> int:
    """The fidelity of the code that trained a checkpoint: its config's, 1 for a checkpoint from before the field."""
    return int(state["config"].get("fidelity", 1))


def checkpoint_in(run_dir: Path) -> Path:
    """A run folder's best checkpoint, else its last."""
    for name in ("best.pt", "last.pt"):
        if (run_dir / "checkpoints" / name).is_file():
            return run_dir / "checkpoints" / name
    raise CheckpointError(f"{run_dir}: no checkpoints/best.pt or checkpoints/last.pt in this folder")


def load_weights(model: torch.nn.Module, state: dict, finetune: bool = False) -> list[str]:
    """Load a checkpoint's weights into ``model``; a missing, extra or differently shaped weight is a clear error.
    With ``finetune``, the weights the model starts fresh (its ``fresh_weights()``, e.g. zero-started skip gates) may
    be missing and keep their initial values; returns those it kept."""
    own, theirs = model.state_dict(), state["model"]
    fresh = sorted(set(getattr(model, "fresh_weights", set)()) - set(theirs)) if finetune else []
    missing = sorted(set(own) - set(theirs) - set(fresh))
    extra = sorted(set(theirs) - set(own))
    shapes = [f"{k}: checkpoint {tuple(theirs[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(theirs)) if own[k].shape != theirs[k].shape]  # fmt: skip
    if missing or extra or shapes:
        details = "; ".join(
            part for part in (
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {extra[:5]}" if extra else "",
                f"shape mismatch {shapes[:5]}" if shapes else "",
            ) if part
        )  # fmt: skip
        raise CheckpointError(f"{state.get('path', 'checkpoint')}: does not fit this model ({details})")
    model.load_state_dict({**{name: own[name] for name in fresh}, **theirs})
    return fresh


def restore_optimizer(optimizer: torch.optim.Optimizer, model: torch.nn.Module, state: dict) -> int:
    """Adam's per-weight state (moments and step count) from a checkpoint's optimizer, for a finetune that goes on
    where the checkpoint's training stopped; returns how many weights got theirs. The learning rate and betas stay
    this run's config's. Weights the checkpoint's model lacked (:meth:`fresh_weights`, registered after every other
    one, so the checkpoint's weights are a prefix of this model's) start with no state, as Adam starts any weight."""
    where = state.get("path", "checkpoint")
    saved = state.get("optimizer")
    if not isinstance(saved, dict) or "state" not in saved:
        raise CheckpointError(
            f"{where}: carries no optimizer state (a shipped file keeps the weights only unless shipped with "
            "--with-optimizer), so train.init_optimizer=restore cannot restore Adam's; use train.init_optimizer=fresh"
        )
    params = list(model.parameters())
    names = [name for name, _ in model.named_parameters()]
    fresh = getattr(model, "fresh_weights", set)()
    kept = [index for index, name in enumerate(names) if name not in fresh or name in state["model"]]
    if kept != list(range(len(kept))):
        raise CheckpointError(f"{where}: this model's fresh weights are not its last; cannot map the optimizer state")
    restored = 0
    for index, value in saved["state"].items():
        index = int(index)
        if index >= len(kept):
            raise CheckpointError(f"{where}: its optimizer state has weight {index}; this model has {len(kept)}")
        for key, tensor in value.items():
            if key != "step" and tuple(tensor.shape) != tuple(params[index].shape):
                raise CheckpointError(
                    f"{where}: optimizer state {key} of {names[index]} has shape {tuple(tensor.shape)}, the weight "
                    f"{tuple(params[index].shape)}"
                )
        # the moments live beside their weight; Adam keeps its step count on the CPU (unless capturable)
        optimizer.state[params[index]] = {k: (v if k == "step" else v.to(params[index].device)).clone()
                                          for k, v in value.items()}  # fmt: skip
        restored += 1
    return restored
