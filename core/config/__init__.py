"""One typed config for a run, built once where YAML or the command line comes in.

Merge order (later wins): the defaults (:mod:`core.config.schema`), then each file of the ``extends:`` chain, base
first, each file's body followed by its own ``profiles.<name>`` patch (so a file's profile refines that file, and a
file that extends it is more specific than both), then command-line overrides (``--model.residual=true``, or the
release's flag names such as ``--num_hidden 64,64,64,64``). Keys are checked everywhere: an unknown key fails with the
file, the dotted key and the closest valid key. Values are coerced from their annotations (an int is a fine float; a
lossy conversion is an error), and cross-field rules are checked in one place, :func:`validate`.

Each field's one-line doc is the string literal under it; ``python launch.py config FILE --show`` prints them.

Its modules, each importing only those above it (none imports torch):

- :mod:`core.config.schema`: the sections as dataclasses, with defaults and field docs; the release's flag names; the
  config as dicts, YAML and commented text;
- :mod:`core.config.names`: the check for a name that becomes a folder or file;
- :mod:`core.config.safe_yaml`: YAML read safely;
- :mod:`core.config.building`: keys checked, values coerced, the cross-field rules (:func:`validate`);
- :mod:`core.config.loading`: files (``extends``, profiles) and command-line overrides (:func:`load`);
- :mod:`core.config.hashing`: a run's id (:func:`config_hash`) and a recorded config read back (:func:`from_dict`).

Import from here: ``from core.config import Config, load``.
"""

from core.config.building import cls_section, coerce, validate
from core.config.hashing import BEFORE_FIELD, UNHASHED, config_hash, from_dict, hashed_fields, inert_fields
from core.config.loading import config_files, load, parse_overrides, profiles_of
from core.config.names import NAME_MAX_BYTES, is_plain_name, name_problem
from core.config.safe_yaml import MAX_YAML_DEPTH, MAX_YAML_NODES, read_yaml
from core.config.schema import (
    ALIASES,
    E3D_ONLY,
    FIDELITY,
    FILE_KEYS,
    MODEL_FAMILIES,
    RELEASE_L1_WEIGHT,
    SECTIONS,
    UNUSED_FIELDS,
    Config,
    ConfigError,
    DataConfig,
    LossConfig,
    ModelConfig,
    TrackingConfig,
    TrainConfig,
    describe,
    field_docs,
    to_dict,
    to_yaml,
    valid_keys,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RELEASE_L1_WEIGHT",
    "LossConfig",
    "TrainConfig",
    "TrackingConfig",
    "FIDELITY",
    "Config",
    "SECTIONS",
    "ALIASES",
    "FILE_KEYS",
    "E3D_ONLY",
    "MODEL_FAMILIES",
    "UNUSED_FIELDS",
    "field_docs",
    "valid_keys",
    "coerce",
    "MAX_YAML_NODES",
    "MAX_YAML_DEPTH",
    "read_yaml",
    "NAME_MAX_BYTES",
    "name_problem",
    "is_plain_name",
    "profiles_of",
    "config_files",
    "load",
    "parse_overrides",
    "cls_section",
    "validate",
    "to_dict",
    "from_dict",
    "to_yaml",
    "UNHASHED",
    "BEFORE_FIELD",
    "inert_fields",
    "hashed_fields",
    "config_hash",
    "describe",
]
