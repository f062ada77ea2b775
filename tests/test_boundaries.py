"""The layering rules of the code base, checked by parsing every module's imports (module-level and inside functions
alike), and, for what a command imports when it runs, by running it."""

import ast
import functools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "ablations", "analysis", "bench")
SCRIPTS = ("launch.py",)


def _files() -> list[Path]:
    return [*(p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))), *(ROOT / s for s in SCRIPTS)]


def _dotted(path: Path) -> str:
    """``core/data/formats.py`` -> ``core.data.formats``; a package's ``__init__.py`` is the package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


@functools.cache
def _project_modules() -> frozenset[str]:
    return frozenset(_dotted(path) for path in _files())


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    """The module a ``from ... import`` names, a relative one resolved against ``path``'s package."""
    if node.level == 0:
        return node.module or ""
    package = _dotted(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports anywhere in it, as written (absolute)."""
    names = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(_absolute(node, path))
    return names


def _modules() -> Iterator[tuple[str, set[str]]]:
    for path in _files():
        yield path.relative_to(ROOT).as_posix(), _imports(path)


def _uses(imports: set[str], top: str) -> bool:
    return any(name == top or name.startswith(top + ".") for name in imports)


def _own(name: str) -> str | None:
    """The project module that importing ``name`` runs last (``core.models.registry`` for itself, ``core.models`` for
    ``core.models.build_model``), None outside the project."""
    modules = _project_modules()
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _edges(path: Path) -> Iterator[tuple[str, str | None]]:
    """``(module, name)`` for each project module ``path`` imports anywhere in it, and each name it takes from one
    (None for ``import module``). ``from package import module`` is an import of the module."""
    modules = _project_modules()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (module := _own(alias.name)) is not None:
                    yield module, None
        elif isinstance(node, ast.ImportFrom) and (source := _own(_absolute(node, path))) is not None:
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield (submodule, None) if submodule in modules else (source, alias.name)


def _graph() -> dict[str, set[str]]:
    """Each project module -> the project modules it imports (a package's ``__init__`` that Python runs on the way to
    a submodule is left out: none of ours imports anything that imports back)."""
    graph = {}
    for path in _files():
        name = _dotted(path)
        graph[name] = {module for module, _ in _edges(path) if module != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected sets of more than one module (Tarjan's algorithm), and any module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.add(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _private_imports() -> set[tuple[str, str, str]]:
    """``(importer, module, name)`` for each private name one project module takes from another: ``from m import _x``,
    or ``m._x`` after ``import m``."""
    found = set()
    for path in _files():
        importer = _dotted(path)
        bound: dict[str, str] = {}  # a local name -> the project module it names
        for module, name in _edges(path):
            if name is not None and name.startswith("_") and not name.startswith("__") and module != importer:
                found.add((importer, module, name))
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _own(alias.name) is not None and alias.asname:
                        bound[alias.asname] = alias.name  # import a.b as x: x is a.b
                    elif _own(alias.name) is not None:
                        bound[alias.name.split(".")[0]] = alias.name.split(".")[0]  # import a.b: a is a
            elif isinstance(node, ast.ImportFrom) and (source := _own(_absolute(node, path))) is not None:
                for alias in node.names:
                    if f"{source}.{alias.name}" in _project_modules():
                        bound[alias.asname or alias.name] = f"{source}.{alias.name}"
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = _expression_module(node.value, bound)
                if owner is not None and owner != importer:
                    found.add((importer, owner, node.attr))
    return found


def _expression_module(node: ast.expr, bound: dict[str, str]) -> str | None:
    """The project module an expression such as ``ledger`` or ``ablations.ledger`` names, None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in bound:
        return None
    dotted = ".".join([bound[node.id], *reversed(parts)])
    return dotted if dotted in _project_modules() else None


def _imports_torch(*command: str) -> list[str]:
    """Run ``python -X importtime launch.py COMMAND`` from the repository's root; the torch modules it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "launch.py", *command], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    # importtime's lines: "import time: <self us> | <cumulative us> | <indent><module>"
    imported = [
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")
    ]
    assert "core.config" in imported or command == ("--help",), "importtime printed nothing the test can read"
    return [name for name in imported if name == "torch" or name.startswith("torch.")]


def test_modules_are_found():
    names = [name for name, _ in _modules()]
    assert any(name.startswith("core/") for name in names) and "launch.py" in names


def test_wandb_only_in_core_tracking():
    """One module imports wandb: the tracker; W&B's conventions that need no wandb live in core/wandb_env.py."""
    offenders = [name for name, imports in _modules() if _uses(imports, "wandb") and name != "core/tracking.py"]
    assert offenders == []


def test_optuna_only_behind_the_ledger():
    """The ledger and its sampling half are the only modules that talk to Optuna; the runner, the launchers and the
    rest of the sweep path go through the ledger."""
    allowed = ("ablations/ledger.py", "ablations/search_space.py")
    offenders = [name for name, imports in _modules() if _uses(imports, "optuna") and name not in allowed]
    assert offenders == []


def test_core_knows_nothing_of_the_edges():
    edges = ("ablations", "analysis", "bench", "launch", "argparse")
    offenders = [
        (name, top) for name, imports in _modules() if name.startswith("core/") for top in edges if _uses(imports, top)
    ]
    assert offenders == []


def test_the_product_never_leans_on_the_benchmarks():
    offenders = [name for name, imports in _modules() if not name.startswith("bench/") and _uses(imports, "bench")]
    assert offenders == []


def test_analysis_never_imports_the_trainer():
    offenders = [
        name for name, imports in _modules() if name.startswith("analysis/") and _uses(imports, "core.trainer")
    ]
    assert offenders == []


def test_no_import_cycle():
    cycles = [sorted(cycle) for cycle in _cycles(_graph())]
    assert cycles == [], f"modules that import each other (directly or round a loop, at any depth): {cycles}"


def test_no_source_file_over_600_lines():
    long = {str(path.relative_to(ROOT)): n for path in _files() if (n := len(path.read_text().splitlines())) > 600}
    assert long == {}, "split these along a seam a reader can name"


def test_cycles_are_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "d"}, "e": set()}
    assert _cycles(graph) == {frozenset("abc"), frozenset("d")}


def test_no_private_name_crosses_a_module():
    found = sorted(_private_imports())
    assert found == [], f"private names taken from another module (importer, module, name): make them public {found}"


def test_resolving_a_config_imports_no_torch():
    assert _imports_torch("--help") == []
    assert _imports_torch("config", "ablations/moving_mnist/e3d_baseline.yaml", "--profile", "demo") == []


def test_a_dry_run_imports_no_torch():
    assert _imports_torch("sweep", "sweeps/demo.yaml", "--dry-run") == []
