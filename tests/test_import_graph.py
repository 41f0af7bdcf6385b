"""The package's import graph keeps the architecture of ``DESIGN.md``: no circles, no upward edge.

The layer order is written once, here. A module may import from its own package or from a
package in a lower layer; packages in one layer are peers and do not import each other; an
import from another package takes only names that package's module lists in ``__all__``.
Every import counts: module-level, function-level and ``if TYPE_CHECKING:`` ones.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "seethrough"

#: Lowest first. ``<root>`` is ``seethrough/__init__.py``: the public face, imported by nobody.
LAYERS: tuple[frozenset[str], ...] = tuple(
    frozenset(layer.split())
    for layer in (
        "errors _version",
        "data words",
        "models",
        "core",
        "attribution",
        "trust inside anatomy decompose scale",  # scale: dataset runs and SpRAy
        "robust",  # its comparison study composes trust's checks and inside's visualisations
        "viz",
        "reporting",
        "jobs tensorboard",
        "cli",
        "<root>",
    )
)
LEVEL = {package: i for i, layer in enumerate(LAYERS) for package in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def package_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":  # `python -m seethrough`: the root's own
        return "<root>"
    return parts[1]


def imports(module: str, path: Path | None = None) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """``(target module, imported names, line)`` for every import of a seethrough module."""
    path = MODULES[module] if path is None else path
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base[: len(base) - (node.level - 1)]
                target = ".".join(parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "seethrough":
                continue
            names = tuple(a.name for a in node.names)
            submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            if submodules:  # ``from . import x`` where x is a module
                for sub in submodules:
                    yield sub, (), node.lineno
                rest = tuple(n for n in names if f"{target}.{n}" not in MODULES)
                if rest:
                    yield target, rest, node.lineno
            else:
                yield target, names, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "seethrough":
                    yield alias.name, (), node.lineno


def exported(module: str) -> set[str] | None:
    """The names in ``module``'s ``__all__``, or ``None`` when it has none."""
    path = MODULES.get(module)
    if path is None:
        return None
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            value = node.value
            assert isinstance(value, (ast.List, ast.Tuple)), f"{module}: __all__ is not a literal"
            return {ast.literal_eval(e) for e in value.elts}
    return None


def violations() -> list[str]:
    found = []
    for module, path in MODULES.items():
        own = package_of(module)
        for target, names, line in imports(module):
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if target not in MODULES:
                found.append(f"{where} imports {target}, which does not exist")
                continue
            other = package_of(target)
            if other == own:
                continue
            if other not in LEVEL or own not in LEVEL:
                found.append(
                    f"{where}: package {other if other not in LEVEL else own} has no layer"
                )
            elif LEVEL[other] >= LEVEL[own]:
                kind = "a peer" if LEVEL[other] == LEVEL[own] else "an upper layer"
                found.append(f"{where}: {own} imports {target} ({kind})")
            else:
                public = exported(target)
                private = [n for n in names if public is None or n not in public]
                if private:
                    found.append(
                        f"{where}: {own} imports {private} from {target}, not in its __all__"
                    )
    return found


def cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    edges = {m: {t for t, _, _ in imports(m) if t in MODULES and t != m} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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
                found.append(sorted(component))

    for v in MODULES:
        if v not in index:
            visit(v)
    return found


def test_every_package_has_a_layer() -> None:
    packages = {package_of(m) for m in MODULES}
    assert packages <= set(LEVEL), f"packages without a layer: {sorted(packages - set(LEVEL))}"


def test_no_import_goes_up_sideways_or_into_internals() -> None:
    found = violations()
    assert not found, "\n".join(found)


def test_no_import_cycles() -> None:
    found = cycles()
    assert not found, "\n".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..viz import plot\n", ("seethrough.viz", ("plot",))),
        ("from .. import __version__\n", ("seethrough", ("__version__",))),
        ("from ..core import guard\n", ("seethrough.core.guard", ())),
        (
            "def f():\n    from .method import Method\n",
            ("seethrough.attribution.method", ("Method",)),
        ),
    ],
)
def test_the_walker_resolves_relative_imports(
    source: str, expected: tuple[str, tuple[str, ...]], tmp_path: Path
) -> None:
    """The checker itself: a relative import in ``seethrough.attribution.x`` resolves as
    Python would."""
    path = tmp_path / "x.py"
    path.write_text(source, encoding="utf-8")
    assert [(t, n) for t, n, _ in imports("seethrough.attribution.x", path)] == [expected]
