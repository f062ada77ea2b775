"""A small registry of model families: a name in ``ModelConfig.name`` -> the class that builds it.

Models register with the :func:`register_model` decorator; ``core/models/__init__.py`` imports every model module
explicitly, so the registry's content is visible in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from core.config import ModelConfig

ModelFactory = Callable[[ModelConfig, int, int], nn.Module]
F = TypeVar("F", bound=ModelFactory)

_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str) -> Callable[[F], F]:
    """Decorator: register a model class (or factory) taking ``(cfg, channels, image_size)`` under ``name``."""

    def add(factory: F) -> F:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered (by {_MODELS[name]!r})")
        _MODELS[name] = factory
        return factory

    return add


def model_names() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_MODELS)


def build_model(cfg: ModelConfig, channels: int, image_size: int) -> nn.Module:
    """The model ``cfg.name`` for frames of ``channels`` x ``image_size`` x ``image_size`` pixels."""
    if cfg.name not in _MODELS:
        raise ValueError(f"unknown model {cfg.name!r}; valid names: {', '.join(model_names())}")
    return _MODELS[cfg.name](cfg, channels, image_size)
