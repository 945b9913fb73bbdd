"""Architecture checks that run with the tests: one-way layering, no import cycles, no copied code.

Layers, lowest first: crossrec_core <- crossrec_datasets <- retrieval <- recsys <- generation <-
streaming <- crossrec. A module may import its own layer and those below, also inside functions
(a lazy upward import is still an upward dependency). No cycles among modules, lazy imports
included: a cycle hidden in a function is still two modules that need each other.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("crossrec_core", "crossrec_datasets", "retrieval", "recsys", "generation", "streaming", "crossrec")
PACKAGE_DIRS = {name: ROOT / ("datasets/crossrec_datasets" if name == "crossrec_datasets" else name) for name in LAYERS}


def _modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts[:-1])) if parts[-1] == "__init__" else ".".join((package, *parts))
            out[name] = path
    return out


MODULES = _modules()


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    """(imported module, line) for every import in ``path``, inside functions too."""
    tree = ast.parse(path.read_text("utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:  # ``from pkg import submodule`` imports the submodule
                target = f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                out.append((target, node.lineno))
    return out


def _layer(module: str) -> int | None:
    top = module.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else None


def test_every_package_is_found():
    assert all(any(m.split(".")[0] == p for m in MODULES) for p in LAYERS)


def test_no_upward_imports():
    upward = []
    for module, path in MODULES.items():
        own = _layer(module)
        for target, line in _imports(path, module):
            layer = _layer(target)
            if layer is not None and layer > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[own]}) imports {target} ({LAYERS[layer]})")
    assert not upward, "imports against the layering " + " <- ".join(LAYERS) + ":\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {m: sorted({t for t, _ in _imports(p, m) if t in MODULES and t != m}) for m, p in MODULES.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_layering_check_catches_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import numpy\n\ndef f():\n    from crossrec.cli import main\n")
    assert [t for t, _ in _imports(bad, "retrieval.bad") if _layer(t) is not None] == ["crossrec.cli"]


DUPLICATES = shutil.which("duplicates") or (p if (p := Path("/work/.library/duplicates/duplicates")).is_file() else None)


def _copied(line: str) -> bool:
    """A row ``D1 a.py:10-24 ~ b.py:40-54`` of identical runs (not ``shape``) in two places; a
    pattern repeating within one stretch of a file (overlapping ranges: a run of properties) is not
    a copy."""
    match = re.match(r"D\d+ (\S+):(\d+)-(\d+) ~ (\S+):(\d+)-(\d+)(.*)", line)
    if not match or " shape" in match.group(7):
        return False
    a, a0, a1, b, b0, b1 = match.group(1), *map(int, match.group(2, 3)), match.group(4), *map(int, match.group(5, 6))
    return a != b or a1 < b0 or b1 < a0


def test_copied_rows_parsed():
    assert _copied("D1 a.py:10-24 ~ b.py:40-54") and _copied("D2 a.py:10-20 ~ a.py:30-40 (+1 more runs)")
    assert not _copied("D3 a.py:75-89 ~ a.py:87-98") and not _copied("D4 a.py:1-9 ~ b.py:1-9 shape boilerplate")


@pytest.mark.skipif(DUPLICATES is None, reason="the duplicates tool is not installed here (it exists only on the "
                                              "development machines); the check is skipped, not passed")
def test_no_copied_code():
    """No run of 6+ identical lines in two places of the tree (same-shape pairs are listed, not failed:
    they are places to look, often dataclass or argparse boilerplate)."""
    out = subprocess.run([str(DUPLICATES), "--repo", str(ROOT), "--most", "200", "--seconds", "120"],
                         capture_output=True, text=True, timeout=300).stdout
    assert "incomplete:" not in out, out
    copied = [line for line in out.splitlines() if _copied(line)]
    assert not copied, "copied code (make one home for it):\n" + "\n".join(copied)
