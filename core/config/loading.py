"""A config from its files and the command line: the ``extends`` chain, profiles, and overrides, merged in the order
:mod:`core.config` describes."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from core.config.building import build, flatten, set_key, validate
from core.config.safe_yaml import read_yaml
from core.config.schema import FIDELITY, FILE_KEYS, SECTIONS, Config, ConfigError


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = read_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc})") from exc
    if not raw:
        raise ConfigError(f"{path}: sets nothing (an empty file would train the paper-scale defaults); a variant "
                          "extends its dataset's base.yaml: `extends: base.yaml`")  # fmt: skip
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections, got {type(raw).__name__}")
    return raw


def _chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """The file and everything it extends, base first."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: extends itself through {' -> '.join(map(str, seen))}")
    raw = _read_yaml(path)
    parents = raw.get("extends") or []
    parents = [parents] if isinstance(parents, str) else parents
    chain = []
    for parent in parents:
        chain += _chain((path.parent / parent), (*seen, path))
    return [*chain, (path, raw)]


def config_files(path: str | Path) -> list[Path]:
    """A config file and every file its ``extends`` chain names, resolved, base first: the files it is built from."""
    return [file for file, _ in _chain(Path(path))]


def profiles_of(path: str | Path) -> list[str]:
    """The profile names a config file (or its ``extends`` chain) defines."""
    names: list[str] = []
    for _, raw in _chain(Path(path)):
        names += [name for name in (raw.get("profiles") or {}) if name not in names]
    return names


def load(path: str | Path | None = None, overrides: list[str] | None = None, profile: str | None = None) -> Config:
    """Build the typed config: defaults <- (each file of the extends chain <- its profile patch) <- overrides."""
    tree: dict = {}
    chain = _chain(Path(path)) if path is not None else []
    if profile is not None and profile not in (available := profiles_of(path) if path is not None else []):
        raise ConfigError(f"{path}: no profile {profile!r}; available: {', '.join(available) or 'none'}")
    for file, raw in chain:
        body = {key: value for key, value in raw.items() if key not in FILE_KEYS}
        for dotted, value in flatten(body, str(file)):
            set_key(tree, dotted, value, str(file))
        patch = (raw.get("profiles") or {}).get(profile) if profile is not None else None
        if patch is not None:
            if not isinstance(patch, dict):
                raise ConfigError(f"{file}: profiles.{profile} must be a mapping")
            for dotted, value in flatten(patch, f"{file} (profile {profile})"):
                set_key(tree, dotted, value, f"{file} (profile {profile})")
    for dotted, value in parse_overrides(overrides or []):
        set_key(tree, dotted, value, "command line")
    cfg = validate(build(Config, tree))
    if cfg.fidelity != FIDELITY:
        raise ConfigError(f"fidelity is set by the code ({FIDELITY}); a config cannot ask for {cfg.fidelity}")
    return cfg


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    """Command-line overrides as (key, text) pairs.

    ``["--model.residual=true", "--num_hidden", "64,64"]`` -> ``[("model.residual", "true"), ("num_hidden", "64,64")]``.
    Keys are returned as given (aliases are resolved when they are set); a bare ``--flag`` means ``true``.
    """
    pairs, index = [], 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"command line: expected --key=value or --key value, got {arg!r}")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            index += 1
        elif index + 1 < len(args) and not args[index + 1].startswith("--"):
            key, value = arg[2:], args[index + 1]
            index += 2
        else:
            key, value = arg[2:], "true"  # a bare flag switches a boolean on
            index += 1
        key = key.replace("-", "_")
        pairs.extend(_nested(key, value) if key in SECTIONS and value.lstrip().startswith("{") else [(key, value)])
    return pairs


def _nested(section: str, text: str) -> list[tuple[str, str]]:
    """``--model={'residual': True, 'hidden': [64, 64]}``, how `wandb agent` passes a sweep's nested parameters
    (Python's str of a dict), as the dotted pairs ``model.residual=true``, ``model.hidden=64,64``."""
    try:
        tree = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        tree = None
    if not isinstance(tree, dict):
        raise ConfigError(f"command line: --{section}={text!r} is not a mapping of {section} keys")

    def flat(prefix: str, value: Any) -> list[tuple[str, str]]:
        if isinstance(value, dict):
            return [pair for key, item in value.items() for pair in flat(f"{prefix}.{key}", item)]
        if isinstance(value, list | tuple):
            return [(prefix, ",".join(str(item) for item in value))]
        return [(prefix, "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value))]

    return flat(section, tree)
