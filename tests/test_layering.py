"""The seams hold: no table SQL above memstore, no import circle inside a package, the light layers
import no torch, and every package's ``__all__`` names what it exports."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("memstore", "retrieval", "generators", "continuity")
TABLE_ACCESS = re.compile(r"sql_str|sql_in|\.store\.(references|entities|tokens|shots)")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, package: str) -> set[str]:
    """Modules of ``package`` imported at module level (imports inside functions or
    ``if TYPE_CHECKING`` blocks do not run at import time and cannot make a circle)."""
    module = _module_name(path)
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
            name = ".".join(p for p in (base, node.module or "") if p)
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith(package + ".") and m != module}


def _graph(package: str) -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    return {m: {d for d in _top_level_imports(p, package) if d in files} for m, p in files.items()}


@pytest.mark.parametrize("package", ["retrieval", "generators", "continuity"])
def test_no_table_sql_above_memstore(package):
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in (ROOT / package).rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if TABLE_ACCESS.search(line)
    ]
    assert hits == [], "table SQL belongs in memstore (Library / ShotLog query surface)"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle_inside_a_package(package):
    graph = _graph(package)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            # a package's __init__ importing its own modules is the package assembling itself
            if state.get(dep) == 1 and not (dep == package or dep.endswith(".__init__")):
                raise AssertionError(f"import circle: {' -> '.join(path[path.index(dep) :] + [dep])}")
            if not state.get(dep):
                visit(dep, [*path, dep])
        state[node] = 2

    for module in graph:
        if not state.get(module):
            visit(module, [module])


def test_the_light_layers_import_no_torch():
    code = "import sys, memstore, retrieval, generators; print('torch' in sys.modules, 'diffusers' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_is_exported(package):
    module = importlib.import_module(package)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert missing == []


def test_the_public_api_runs_a_shot(tmp_path):
    import continuity as ct

    library = ct.open_library(tmp_path / "db", "default")
    library.register("Aria", "character", description="a red-haired knight")
    result = ct.Retriever(library).retrieve(ct.ShotQuery("Aria draws her sword"))
    assert [h.entity.name for h in result.hits] == ["Aria"]
    assert "generators" not in ct.list_generators() and "animatic" in ct.list_generators()
