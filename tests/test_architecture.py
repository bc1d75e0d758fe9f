"""The layout holds: every module imports on its own, and imports follow the layers.

The layer table is read from docs/architecture.md, so the document and the code
cannot drift apart.
"""

from __future__ import annotations

import ast
import json
import random
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "slamon"
DOC = ROOT / "docs" / "architecture.md"


def all_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def unit_of(module: str) -> str:
    """The layer unit: a top-level module or subpackage of slamon, or the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "slamon"


def layer_table() -> dict[str, int]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## The layer rule", 1)[1]
    layers: dict[str, int] = {}
    for match in re.finditer(r"^\| (\d+) \| (.+) \|$", section, flags=re.M):
        for unit in re.findall(r"`([\w]+)`", match.group(2)):
            layers[unit] = int(match.group(1))
    return layers


def imports_of(path: Path, module: str) -> list[tuple[str, int]]:
    """Every slamon module `path` imports (top level, lazy and TYPE_CHECKING alike)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                target = ".".join(base[: len(base) - node.level + 1])
                target = f"{target}.{node.module}" if node.module else target
            else:
                target = node.module or ""
            if target == "slamon" or target.startswith("slamon."):
                out.append((target, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names
                    if a.name == "slamon" or a.name.startswith("slamon.")]
    return out


def unit_graph() -> dict[str, dict[str, str]]:
    """unit -> {imported unit: one place that imports it}."""
    graph: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for target, line in imports_of(path, module):
            a, b = unit_of(module), unit_of(target)
            if a != b:
                graph[a].setdefault(b, f"{path.relative_to(ROOT)}:{line}")
    return graph


def test_layer_table_names_every_unit() -> None:
    layers = layer_table()
    units = {unit_of(m) for m in all_modules()} | {"__main__"}
    assert units - set(layers) == set(), "units missing from docs/architecture.md"
    assert set(layers) - units == set(), "docs/architecture.md names units that do not exist"


def test_imports_follow_the_layers() -> None:
    layers = layer_table()
    upward = [
        f"{where}: {a} (layer {layers[a]}) imports {b} (layer {layers[b]})"
        for a, targets in unit_graph().items()
        for b, where in targets.items()
        if layers[b] > layers[a]
    ]
    assert upward == []


def test_no_cycle_between_units() -> None:
    graph = unit_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, {}):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            assert cycle is None, " -> ".join(cycle or [])


def test_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The import scan finds lazy imports too (they would hide an upward edge)."""
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from slamon.app import daemon\n    import slamon.cli\n")
    assert [t for t, _ in imports_of(source, "slamon.sla.mod")] == ["slamon.app", "slamon.cli"]


#: run in a fresh interpreter: loads the third-party packages once (to save time; no
#: slamon module), then imports each module in a process forked from that state
IMPORT_EACH = """
import importlib, json, multiprocessing, sys
for heavy in ("pydantic", "aiohttp", "prometheus_client", "structlog", "yaml"):
    importlib.import_module(heavy)
assert not [m for m in sys.modules if m == "slamon" or m.startswith("slamon.")]

def alone(module):
    try:
        importlib.import_module(module)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None

modules = json.loads(sys.argv[1])
with multiprocessing.get_context("fork").Pool(2, maxtasksperchild=1) as pool:
    results = pool.map(alone, modules, chunksize=1)
print(json.dumps({m: r for m, r in zip(modules, results) if r is not None}))
"""


def test_every_module_imports_on_its_own() -> None:
    """Each module in a process of its own that has loaded no other slamon module, in a
    shuffled order: an import cycle or an import-order dependence shows here."""
    modules = all_modules()
    random.Random(len(modules)).shuffle(modules)
    res = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, json.dumps(modules)],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout) == {}


@pytest.mark.parametrize("unit", ["wallclock", "util"])
def test_leaf_units_import_nothing_else(unit: str) -> None:
    assert set(unit_graph().get(unit, {})) <= {"slamon", "wallclock", "util"}


def test_probe_command_imports_no_whole_schema() -> None:
    """`slamon probe` loads the target models and the prober only: importing a config
    submodule must not pull in the whole schema (notification channels, aiohttp's
    client), which doubled the command's start-up CPU."""
    code = ("import sys\n"
            "import slamon.cli, slamon.config.probe_urls, slamon.config.targets\n"
            "import slamon.probers.http, slamon.probers.tcp\n"
            "heavy = [m for m in ('slamon.config.root', 'slamon.channels', 'aiohttp')\n"
            "         if m in sys.modules]\n"
            "print(heavy)\n"
            "from slamon.config import Config, Target  # the package names still resolve\n"
            "assert Config.__name__ == 'Config' and Target.__name__ == 'Target'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "[]", res.stdout
