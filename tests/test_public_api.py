"""The public API is deliberate and documented (issue 13): every name in ``seethrough.__all__``
and in each public subpackage's ``__all__`` exists and has a docstring, and the package root
exports no private name and no internal helper."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import types
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import seethrough

PUBLIC = [
    "attribution",
    "trust",
    "inside",
    "anatomy",
    "robust",
    "decompose",
    "core",
    "data",
    "models",
    "viz",
]

# Names exempt from needing their own docstring, each with the reason.
EXEMPT = {
    # PEP 8 / PEP 396: the version string a package exposes; its name is its documentation,
    # and a str instance has no docstring of its own.
    ("seethrough", "__version__"): "the package version string",
}

# Helpers that must not be re-exported from the package root: they are building blocks of
# the methods, not what a user calls (issue 13: ``gaussian_blur`` was exported sideways).
INTERNALS = {
    "gaussian_blur",
    "make_baseline",
    "baseline_like",
    "guarded",
    "HookSet",
    "LayerCapture",
    "RectifierRule",
    "trace_layers",
    "check_inputs",
    "logits_of",
    "parse_target",
    "Run",
    "register",
    "METHODS",
    "to_jsonable",
}


def public_names() -> list[tuple[str, str]]:
    pairs = [("seethrough", name) for name in seethrough.__all__]
    for package in PUBLIC:
        module = importlib.import_module(f"seethrough.{package}")
        pairs += [(module.__name__, name) for name in module.__all__]
    return pairs


def _source(module_name: str) -> tuple[ast.Module, bool] | None:
    spec = importlib.util.find_spec(module_name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    is_package = spec.submodule_search_locations is not None
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8")), is_package


def _assigns(node: ast.stmt, name: str) -> bool:
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign):  # also ``X: TypeAlias = ...``
        return isinstance(node.target, ast.Name) and node.target.id == name
    return False


@cache
def constant_documented(module_name: str, name: str) -> bool:
    """Is the module-level assignment of ``name`` (followed through ``from . import``)
    documented, by a string right after it (an attribute docstring, PEP 257) or by ``#:``
    comments right above it (Sphinx autodoc's convention)?"""
    parsed = _source(module_name)
    if parsed is None:
        return False
    tree, is_package = parsed
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin is not None
    lines = Path(spec.origin).read_text(encoding="utf-8").splitlines()
    body = tree.body
    for i, node in enumerate(body):
        if _assigns(node, name):
            after = body[i + 1] if i + 1 < len(body) else None
            docstring = (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            )
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            return docstring or above.startswith("#:")
    for found in ast.walk(tree):  # also imports under ``if TYPE_CHECKING:`` (a lazy root)
        if not isinstance(found, ast.ImportFrom) or found.module is None:
            continue
        for alias in found.names:
            if (alias.asname or alias.name) != name:
                continue
            if found.level == 0:
                return constant_documented(found.module, alias.name)
            package = module_name if is_package else module_name.rpartition(".")[0]
            for _ in range(found.level - 1):
                package = package.rpartition(".")[0]
            return constant_documented(f"{package}.{found.module}", alias.name)
    return False


def _auto_doc(obj: Any) -> bool:
    """Dataclasses and NamedTuples without a docstring get ``"Name(field, ...)"``."""
    doc = obj.__doc__ or ""
    return inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(")


def undocumented(module_name: str, name: str) -> str | None:
    """Why ``module_name.name`` counts as undocumented, or None."""
    module = importlib.import_module(module_name)
    if not hasattr(module, name):
        return "listed in __all__ but missing"
    if (module_name, name) in EXEMPT:
        return None
    obj = getattr(module, name)
    if isinstance(obj, types.ModuleType) or inspect.isclass(obj) or inspect.isroutine(obj):
        doc = (obj.__doc__ or "").strip()
        if not doc or _auto_doc(obj):
            return "no docstring"
        return None
    if not constant_documented(module_name, name):
        return "a constant without an attribute docstring (a string after it, or #: above)"
    return None


@pytest.mark.parametrize(("module_name", "name"), public_names())
def test_every_public_name_exists_and_has_a_docstring(module_name: str, name: str) -> None:
    problem = undocumented(module_name, name)
    assert problem is None, f"{module_name}.{name}: {problem}"


def test_the_root_exports_no_private_name_and_no_internal_helper() -> None:
    private = [n for n in seethrough.__all__ if n.startswith("_") and n != "__version__"]
    internal = sorted(set(seethrough.__all__) & INTERNALS)
    hidden = []
    for name in seethrough.__all__:
        defined_in = getattr(getattr(seethrough, name, None), "__module__", None) or ""
        if any(part.startswith("_") for part in defined_in.split(".")):
            hidden.append(f"{name} (from {defined_in})")
    assert not private, f"private names in seethrough.__all__: {private}"
    assert not internal, f"internal helpers in seethrough.__all__: {internal}"
    assert not hidden, f"seethrough.__all__ re-exports names of private modules: {hidden}"


def test_all_lists_have_no_duplicates() -> None:
    for module_name in ["seethrough", *(f"seethrough.{p}" for p in PUBLIC)]:
        names = importlib.import_module(module_name).__all__
        assert len(names) == len(set(names)), module_name
