"""``seethrough --help`` is instant: neither the CLI nor ``import seethrough`` imports torch
until a command runs or a name is used; the package root's lazy names are its public API."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import seethrough

ROOT = Path(seethrough.__file__)
HEAVY = ("torch", "numpy", "PIL", "matplotlib", "safetensors", "scipy")


def _imported_after(code: str) -> list[str]:
    """The heavy top-level modules a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport sys\nprint([m for m in {HEAVY!r} if m in sys.modules])"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return ast.literal_eval(done.stdout.splitlines()[-1])


def test_help_and_usage_errors_import_no_heavy_module() -> None:
    code = (
        "from seethrough.cli import main\n"
        "assert main(['--help']) == 0\n"
        "assert main(['--version']) == 0\n"
        "for command in (['explain'], ['sanity'], ['features', 'maps'], ['anatomy']):\n"
        "    assert main([*command, '--help']) == 0\n"
        "assert main(['explain', '--no-such-option']) == 2\n"
    )
    assert _imported_after(code) == []


def test_import_seethrough_is_lazy_until_a_name_is_used() -> None:
    assert _imported_after("import seethrough\nseethrough.__version__") == []
    assert "torch" in _imported_after("import seethrough\nseethrough.explain")


def _root_tree() -> ast.Module:
    return ast.parse(ROOT.read_text(encoding="utf-8"))


def test_root_all_is_the_type_checking_imports_and_each_resolves() -> None:
    typed: dict[str, str] = {}  # name → subpackage, from the `if TYPE_CHECKING:` block
    for node in ast.walk(_root_tree()):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.level == 1
                typed.update({alias.name: str(stmt.module) for alias in stmt.names})
    assert typed
    assert sorted(seethrough.__all__) == sorted(["__version__", *typed])
    for name, package in typed.items():
        home = importlib.import_module(f"seethrough.{package}")
        assert getattr(seethrough, name) is getattr(home, name), name
    assert set(seethrough.__all__) <= set(dir(seethrough))
    from seethrough._version import __version__

    assert seethrough.__version__ == __version__


def test_subpackages_are_attributes_and_unknown_names_raise() -> None:
    assert seethrough.inside is importlib.import_module("seethrough.inside")
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        seethrough.no_such_name  # noqa: B018
