"""The layering rules of the code base, checked by parsing every module's imports."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "ablations", "analysis", "bench")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), _imports(path)


def _uses(imports: set[str], top: str) -> bool:
    return any(name == top or name.startswith(top + ".") for name in imports)


def test_modules_are_found():
    assert any(name.startswith("core/") for name, _ in _modules())


def test_wandb_only_in_core_tracking():
    offenders = [name for name, imports in _modules() if _uses(imports, "wandb") and name != "core/tracking.py"]
    assert offenders == []


def test_optuna_only_in_ablations():
    offenders = [name for name, imports in _modules() if _uses(imports, "optuna") and not name.startswith("ablations/")]
    assert offenders == []


def test_core_knows_nothing_of_the_edges():
    edges = ("ablations", "analysis", "launch", "argparse")
    offenders = [
        (name, top) for name, imports in _modules() if name.startswith("core/") for top in edges if _uses(imports, top)
    ]
    assert offenders == []


def test_analysis_never_imports_the_trainer():
    offenders = [
        name for name, imports in _modules() if name.startswith("analysis/") and _uses(imports, "core.trainer")
    ]
    assert offenders == []
