"""``--methods``, ``--set``, ``--layer`` and ``--target`` as text → what the library takes.

Parsing only: the library validates the values (:func:`seethrough.attribution.make_method`
is the one validator of method options).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from typing import Any

import click

from ..errors import InvalidOptionError, suggest

_INTEGER = re.compile(r"[+-]?\d+")

target_option = click.option(
    "--target",
    default=None,
    help="'predicted' (default), a class index or name, 'top3', or one per image "
    "separated by commas.",
)
cam_layer_option = click.option(
    "--layer",
    default=None,
    help="Layer for CAM methods (dotted name, see 'seethrough layers'); several, "
    "separated by commas, are fused into one map (each scaled to max |value| 1, then averaged).",
)
set_option = click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="[METHOD.]KEY=VALUE",
    help="A method option, e.g. --set samples=20 or --set smoothgrad.samples=20 "
    "(values are Python literals; anything else is a string).",
)


def method_names(text: str) -> list[str]:
    """``--methods`` → method names; ``all`` means every method (the controls
    ``edge_detector`` and ``random_noise`` only when named)."""
    from ..attribution import method_names as registered
    from ..trust import controls  # noqa: F401  (registers the controls)

    valid = registered(include_controls=True)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(registered())
    if not names:
        raise InvalidOptionError("--methods is empty; name at least one method, or 'all'")
    for name in names:
        if name not in valid:
            raise InvalidOptionError(
                f"unknown method {name!r}{suggest(name, valid)} "
                f"(valid: {', '.join(valid)}, or 'all'; see 'seethrough methods')"
            )
        if names.count(name) > 1:
            raise InvalidOptionError(f"--methods names {name!r} twice; give each method once")
    return names


def parse_value(text: str) -> Any:
    """A ``--set`` value as a Python literal (``true``/``false``/``none`` in any case too);
    anything else stays a string, for the method's validator to judge."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def method_options(
    settings: Sequence[str], names: Sequence[str], layer: str | None = None
) -> dict[str, dict[str, Any]]:
    """``--set KEY=VALUE`` (to every chosen method that has the option), ``--set
    METHOD.KEY=VALUE`` and ``--layer`` (to the chosen methods that take a layer; several,
    separated by commas, as a list) → the options of each method."""
    per_method: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in settings:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidOptionError(
                f"--set {item!r}: expected KEY=VALUE or METHOD.KEY=VALUE, e.g. --set steps=64"
            )
        scope, dot, option = key.rpartition(".")
        if dot and scope not in per_method:
            raise InvalidOptionError(
                f"--set {item!r}: method {scope!r} is not among --methods"
                f"{suggest(scope, names)} (chosen: {', '.join(names)})"
            )
        value = parse_value(text.strip())
        if dot:
            per_method[scope][option] = value  # the method's validator judges the name
            continue
        takers = [m for m in names if option in _options_of(m)]
        if not takers:
            valid = sorted({f for m in names for f in _options_of(m)})
            raise InvalidOptionError(
                f"--set {item!r}: no chosen method has an option {option!r}"
                f"{suggest(option, valid)} (options: {', '.join(valid) or 'none'})"
            )
        for m in takers:
            per_method[m][option] = value
    _add_layer(per_method, layer)
    return per_method


def _add_layer(per_method: dict[str, dict[str, Any]], layer: str | None) -> None:
    if layer is None:
        return
    takers = [m for m in per_method if "layer" in _options_of(m)]
    if not takers:
        from ..attribution import method_names

        cams = [m for m in method_names() if "layer" in _options_of(m)]
        raise InvalidOptionError(
            f"--layer is only used by CAM methods ({', '.join(cams)}), and none is among --methods"
        )
    layers = layer_names(layer)
    for m in takers:
        per_method[m]["layer"] = layers if len(layers) > 1 else layers[0]


def layer_names(layer: str | None) -> list[str]:
    """``--layer`` → its layer names (none when not given)."""
    return [] if layer is None else [part.strip() for part in layer.split(",")]


def _options_of(method: str) -> list[str]:
    """The option names of the registered method ``method``."""
    import dataclasses

    from ..attribution import METHODS

    return [f.name for f in dataclasses.fields(METHODS[method])]


def target(text: str | None) -> Any:
    """``--target`` text → what ``parse_target`` takes (checked once the model is loaded)."""
    if text is None or text.strip() == "predicted":
        return None
    values: list[Any] = [
        int(p) if _INTEGER.fullmatch(p) else p for p in (part.strip() for part in text.split(","))
    ]
    if any(v == "" for v in values):
        raise InvalidOptionError(f"--target {text!r} has an empty item; separate classes by commas")
    return values[0] if len(values) == 1 else values
